"""Load a base LALM and its processor from a hub id or a local folder, as every CLI command does.

``ModelConfig`` is the ``model:`` section of the train / eval / analyze configs. ``create_tiny`` has
:func:`coat.zoo.create_tiny_model` write a tiny random Qwen2-Audio to ``name_or_path`` first (smoke runs,
offline tests); loading then goes through the same ``from_pretrained`` path as a real checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from coat.progress import is_small_model, quiet_hub_bars

DTYPES = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Checkpoints whose text-output part is a sub-model: load just that (Qwen2.5-Omni's talker needs files and
# memory that text output never uses).
_TEXT_OUTPUT_CLASS = {"Qwen2_5OmniForConditionalGeneration": "Qwen2_5OmniThinkerForConditionalGeneration"}


@dataclass
class ModelConfig:
    name_or_path: str = field(default="", metadata={"help": "Hub id or local folder of a supported LALM."})
    dtype: str = field(default="auto", metadata={"help": "auto | float32 | bfloat16 | float16"})
    device_map: str | None = field(default=None, metadata={"help": "Passed to from_pretrained (e.g. 'auto')."})
    attn_implementation: str | None = field(default=None, metadata={"help": "e.g. sdpa, eager, flash_attention_2"})
    create_tiny: bool = field(
        default=False,
        metadata={"help": "Build a tiny random Qwen2-Audio + processor at name_or_path if it does not exist."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of the tiny model's random weights."})

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if not self.name_or_path:
            raise ValueError("model.name_or_path is required (a hub id or a local folder)")


def load_model_and_processor(config: ModelConfig):
    """(model, processor) from ``config.name_or_path``; errors say whether it was a folder or a hub id."""
    import transformers

    from coat.experts.loading import ModelSourceError, check_source, require_hub_source, source_kind

    if config.create_tiny:
        from coat.zoo import create_tiny_model

        create_tiny_model(config.name_or_path, config.seed)
    where = source_kind(config.name_or_path)
    check_source(config.name_or_path, "base model")  # a missing local folder: one clear line
    if where == "hub id":
        require_hub_source("base model", config.name_or_path)
    try:
        model_config = transformers.AutoConfig.from_pretrained(config.name_or_path)
        processor = transformers.AutoProcessor.from_pretrained(config.name_or_path)
    except (OSError, ValueError) as err:
        raise ModelSourceError(f"could not load a model config and processor from {config.name_or_path!r} "
                               f"(treated as a {where}): {err}") from err
    arch = (model_config.architectures or [None])[0]
    arch = _TEXT_OUTPUT_CLASS.get(arch, arch)
    cls = getattr(transformers, arch, None) if arch else None
    if cls is None:
        raise ValueError(f"{config.name_or_path!r} names no model class transformers knows ({arch!r})")
    kwargs = {"dtype": DTYPES[config.dtype]}
    if config.device_map:
        kwargs["device_map"] = config.device_map
    if config.attn_implementation:
        kwargs["attn_implementation"] = config.attn_implementation
    with quiet_hub_bars(is_small_model(config.name_or_path)):  # a bar only where loading takes a while
        model = cls.from_pretrained(config.name_or_path, **kwargs)
    return model, processor
