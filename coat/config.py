"""CoATConfig: everything that defines a CoAT adapter on top of a base LALM."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

THINKING_INITS = ("vocab", "normal")
# Above this K a warning says what it costs: K more prompt positions per audio span and a K x hidden table. The
# paper's scale is tens of positions; thousands are almost always a typo (or an experiment that knows it is one).
MAX_NUM_THINKING = 1024


@dataclass
class CoATConfig:
    """What CoAT adds to a base model. Saved as ``coat_config.json`` next to the adapter weights."""

    num_thinking: int = field(
        default=16,
        metadata={"help": "K: learnable thinking positions inserted after every audio span (0 = off). Values above "
                  f"{MAX_NUM_THINKING} are accepted with a warning."},
    )
    thinking_layer: int = field(
        default=-1,
        metadata={"help": "Decoder layer whose output gives `thinking_states` (Python index; -1 = last layer)."},
    )
    thinking_init: str = field(
        default="vocab",
        metadata={"help": "'vocab': mean of the base embeddings plus noise of their spread; 'normal': N(0, 0.02)."},
    )
    freeze_base: bool = field(default=True, metadata={"help": "Freeze every base weight; only CoAT's own train."})
    audio_token_id: int | None = field(
        default=None, metadata={"help": "Override the adapter's audio placeholder id (e.g. for a custom tokenizer)."}
    )
    audio_end_token_id: int | None = field(
        default=None,
        metadata={"help": "Override the id that closes an audio span (thinking goes after it when it follows)."},
    )

    def __post_init__(self):
        if isinstance(self.num_thinking, bool) or not isinstance(self.num_thinking, int):
            raise ValueError(f"num_thinking must be a non-negative integer, got {self.num_thinking!r}")
        if self.num_thinking < 0:
            raise ValueError(f"num_thinking must be >= 0, got {self.num_thinking}")
        if self.num_thinking > MAX_NUM_THINKING:
            warnings.warn(f"num_thinking={self.num_thinking} is above {MAX_NUM_THINKING}: every audio span gets "
                          f"{self.num_thinking} more prompt positions (prefill time and memory grow with them) and "
                          "the thinking table has that many rows; is that intended?", UserWarning, stacklevel=3)
        if isinstance(self.thinking_layer, bool) or not isinstance(self.thinking_layer, int):
            raise ValueError(f"thinking_layer must be an integer layer index, got {self.thinking_layer!r}")
        if not isinstance(self.freeze_base, bool):  # a string "false" would be true
            raise ValueError(f"freeze_base must be True or False, got {self.freeze_base!r}")
        if self.thinking_init not in THINKING_INITS:
            raise ValueError(f"thinking_init must be one of {THINKING_INITS}, got {self.thinking_init!r}")
        for name in ("audio_token_id", "audio_end_token_id"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative integer token id or None, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
