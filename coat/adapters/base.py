"""The adapter interface and registry: what CoAT needs to know about an LALM family (coat/adapters/__init__.py
registers the built-in families, one file each)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


def _self(model: nn.Module) -> nn.Module:
    return model


def _language_model_layers(model: nn.Module) -> nn.ModuleList:
    """``model.model.language_model.layers``: the layout of every transformers v5 audio-LM family here."""
    return model.model.language_model.layers


def _audio_tower(model: nn.Module) -> nn.Module:
    """``model.model.audio_tower``: the audio encoder of every transformers v5 audio-LM family here."""
    return model.model.audio_tower


def _audio_tower_layers(model: nn.Module) -> nn.ModuleList:
    """``model.model.audio_tower.layers``: the Whisper-style encoder layers of every family here."""
    return model.model.audio_tower.layers


@dataclass(frozen=True)
class Adapter:
    """How CoAT plugs into one model family.

    model_type: the HF ``config.model_type`` this adapter is registered for.
    audio_token_id: config -> the id of the audio placeholder token the processor repeats per audio frame.
    audio_end_token_id: config -> the id that closes an audio span, or None (thinking then follows the
        last placeholder directly).
    text_model: the loaded model -> the module CoAT wraps and generates with (text output).
    decoder_layers: the wrapped module -> its decoder layers (for ``thinking_layer`` and LoRA).
    lora_target_modules: default LoRA targets inside the language model.
    audio_layers: the wrapped module -> its audio encoder's layers (for LoRA in the audio encoder, opt-in).
    audio_tower: the wrapped module -> its audio encoder (targets taken from its output in the forward).
    check_inputs: optional ``(wrapped_module, input_ids, attention_mask, kwargs) -> None`` that raises on
        inputs the base model would silently get wrong (for models whose own forward does not check).
    """

    model_type: str
    audio_token_id: Callable
    audio_end_token_id: Callable = lambda config: None
    text_model: Callable[[nn.Module], nn.Module] = _self
    decoder_layers: Callable[[nn.Module], nn.ModuleList] = _language_model_layers
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    audio_layers: Callable[[nn.Module], nn.ModuleList] = _audio_tower_layers
    audio_tower: Callable[[nn.Module], nn.Module] = _audio_tower
    check_inputs: Callable | None = None


_ADAPTERS: dict[str, Adapter] = {}


def register_adapter(adapter: Adapter) -> None:
    """Register (or replace) the adapter for ``adapter.model_type``."""
    _ADAPTERS[adapter.model_type] = adapter


def supported_model_types() -> list[str]:
    return sorted(_ADAPTERS)


def get_adapter(model: nn.Module) -> Adapter:
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in _ADAPTERS:
        raise ValueError(
            f"CoAT has no adapter for model_type {model_type!r} ({type(model).__name__}). Supported: "
            f"{', '.join(supported_model_types())}. For a model that marks audio with a placeholder id and merges "
            "audio features with masked_scatter, register one in a line: "
            f"coat.register_adapter(coat.adapters.generic_adapter({model_type!r}, audio_token_id=..., "
            "audio_end_token_id=None))"
        )
    return _ADAPTERS[model_type]
