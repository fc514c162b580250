"""Qwen2-Audio (``Qwen2AudioForConditionalGeneration``, e.g. Qwen/Qwen2-Audio-7B-Instruct).

The processor writes ``<|audio_bos|> <|AUDIO|> x N <|audio_eos|>`` per audio. The config names only the
placeholder (``audio_token_index``); the released tokenizer puts ``<|audio_eos|>`` two ids above it.
"""

from coat.adapters.base import Adapter

# Released Qwen2-Audio vocabulary: <|AUDIO|>=151646, <|audio_bos|>=151647, <|audio_eos|>=151648.
_RELEASED_AUDIO_TOKEN, _RELEASED_AUDIO_EOS = 151646, 151648


def _audio_end(config):
    end = getattr(config, "audio_eos_token_id", None)
    if end is None and config.audio_token_index == _RELEASED_AUDIO_TOKEN:
        end = _RELEASED_AUDIO_EOS
    return end


ADAPTER = Adapter(
    model_type="qwen2_audio",
    audio_token_id=lambda config: config.audio_token_index,
    audio_end_token_id=_audio_end,
)
