"""The generic adapter: any model that marks audio with a repeated placeholder id and merges the audio
features into those positions with ``masked_scatter`` (the transformers convention), given its ids.

Registered here for Voxtral and Music Flamingo; users register their own with :func:`generic_adapter`.
"""

from coat.adapters.base import Adapter

_PLACEHOLDER_NAMES = ("audio_token_id", "audio_token_index")
_END_NAMES = ("audio_end_token_id", "audio_eos_token_id")


def _from_config(names, required):
    def read(config):
        for name in names:
            value = getattr(config, name, None)
            if value is not None:
                return value
        if required:
            raise ValueError(
                f"{type(config).__name__} has none of {names}; pass the placeholder id explicitly: "
                "generic_adapter(model_type, audio_token_id=...) or CoATConfig(audio_token_id=...)"
            )
        return None

    return read


def generic_adapter(model_type: str, audio_token_id: int | None = None, audio_end_token_id: int | None = None,
                    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")) -> Adapter:
    """An adapter for ``model_type``; ids not given are read from the config (``audio_token_id`` /
    ``audio_token_index`` and ``audio_end_token_id`` / ``audio_eos_token_id``)."""
    placeholder = _from_config(_PLACEHOLDER_NAMES, True)
    if audio_token_id is not None:
        placeholder = lambda config: audio_token_id  # noqa: E731
    end = _from_config(_END_NAMES, False)
    if audio_end_token_id is not None:
        end = lambda config: audio_end_token_id  # noqa: E731
    return Adapter(model_type=model_type, audio_token_id=placeholder, audio_end_token_id=end,
                   lora_target_modules=lora_target_modules)


ADAPTERS = (generic_adapter("voxtral"), generic_adapter("musicflamingo"))
