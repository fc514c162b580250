"""Adapters: what CoAT needs to know about each LALM family, registered by HF ``config.model_type``.

An adapter answers four questions about a model: which id marks audio placeholders, which id closes an
audio span (if any), which module to wrap (Qwen2.5-Omni: its Thinker), and where its decoder layers are.
One family, one file; :func:`register_adapter` adds your own.
"""

from coat.adapters import audioflamingo3, generic, qwen2_5_omni, qwen2_audio
from coat.adapters.base import Adapter, get_adapter, register_adapter, supported_model_types
from coat.adapters.generic import generic_adapter

register_adapter(qwen2_audio.ADAPTER)
for _adapter in qwen2_5_omni.ADAPTERS:
    register_adapter(_adapter)
register_adapter(audioflamingo3.ADAPTER)
for _adapter in generic.ADAPTERS:
    register_adapter(_adapter)

__all__ = ["Adapter", "generic_adapter", "get_adapter", "register_adapter", "supported_model_types"]
