"""Expert heads: decode the thinking block of one audio span into each expert's timeline (docs/design.md, decision 5).

A head reads the hidden states at the K thinking positions of one audio span, ``(n_spans, K, hidden)``,
and predicts that target's F frames, ``(n_spans, F, dim)`` (F = 1 for clip-level targets). The default
``transformer`` head uses the target frames as queries (sinusoidal time positions plus a learned bias)
that cross-attend to the projected thinking states: the prediction is frame-level, so the K positions
must encode the whole acoustic timeline. ``linear`` and ``mlp`` heads on mean-pooled states are the
ablation alternatives. Heads output raw scores (logits for ``distribution`` and ``multilabel``); the
losses of :mod:`coat.targets` apply the matching normalisation.

Targets are cached at their expert's frame rate with a length that varies per clip; :mod:`coat.targets` brings
them onto the heads' F frames (:func:`prepare_targets`, re-exported here), on the time axis that
``HeadConfig.max_duration`` chooses (relative time by default; see coat/targets.py).

State dict keys (stable; ``coat_model.safetensors`` stores them under the model's ``heads.`` prefix):

- ``transformer``: ``{target}.in_norm.*``, ``{target}.in_proj.*``, ``{target}.query_bias``,
  ``{target}.decoder.layers.{i}.{self_attn,multihead_attn,linear1,linear2,norm1,norm2,norm3}.*``,
  ``{target}.out_norm.*``, ``{target}.out_proj.*``
- ``linear``: ``{target}.in_norm.*``, ``{target}.out_proj.*``
- ``mlp``: ``{target}.in_norm.*``, ``{target}.in_proj.0.*``, ``{target}.out_proj.*``

Sinusoidal positions are recomputed, not stored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from coat.targets import PreparedTargets, TargetSpec, prepare_active_targets, prepare_targets, resample_targets

# Resampling targets onto the heads' frames belongs to the targets' contract (coat/targets.py); its names stay
# importable from here too (coat.heads.prepare_targets).
__all__ = ["HEAD_TYPES", "ExpertHeads", "HeadConfig", "PooledHead", "PreparedTargets", "TransformerHead",
           "build_head", "prepare_active_targets", "prepare_targets", "resample_targets", "sinusoidal_positions"]
HEAD_TYPES: tuple[str, ...] = ("transformer", "linear", "mlp")


@dataclass
class HeadConfig:
    """How every expert head is built (one config for all targets; clip-level targets always get F = 1)."""

    type: str = field(
        default="transformer",
        metadata={"help": "Head type: 'transformer' (frame queries cross-attend to the thinking states), "
                  "'linear' or 'mlp' (on mean-pooled thinking states; ablations)."},
    )
    num_frames: int = field(
        default=64,
        metadata={"help": "F, frames each frame-level head predicts per audio span. 64 over a typical 3-10 s clip "
                  "is 6-20 frames/s, around syllable rate, where pitch contours and emotion change."},
    )
    max_duration: float | None = field(
        default=None,
        metadata={"help": "None: each clip's whole duration is stretched onto the F frames (relative time). "
                  "A number of seconds: the F frames cover that fixed duration from the clip start; frames "
                  "after the clip's end are masked, longer clips are cut."},
    )
    d_model: int = field(
        default=256, metadata={"help": "Width of the transformer head (hidden width of the MLP head)."}
    )
    layers: int = field(default=2, metadata={"help": "Transformer decoder layers of the transformer head."})
    heads: int = field(default=4, metadata={"help": "Attention heads of the transformer head; must divide d_model."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout inside the heads (0 disables)."})

    def __post_init__(self):
        if self.type not in HEAD_TYPES:
            raise ValueError(f"head type must be one of {HEAD_TYPES}, got {self.type!r}")
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        if self.max_duration is not None and self.max_duration <= 0:
            raise ValueError(f"max_duration must be > 0 seconds or None (relative time), got {self.max_duration}")
        if self.d_model < 1 or self.layers < 1 or self.heads < 1:
            raise ValueError(f"d_model, layers, heads must be >= 1, got {self.d_model}, {self.layers}, {self.heads}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def sinusoidal_positions(num_positions: int, dim: int) -> torch.Tensor:
    """Transformer sine/cosine encodings ``(num_positions, dim)`` of positions 0..num_positions-1."""
    position = torch.arange(num_positions, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(num_positions, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq)[:, : dim // 2]
    return table


def _pool(thinking: torch.Tensor, thinking_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the valid thinking positions: ``(n, K, h)`` -> ``(n, h)``."""
    if thinking_mask is None:
        return thinking.mean(dim=1)
    w = thinking_mask.to(thinking.dtype)[..., None]
    return (thinking * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)


class TransformerHead(nn.Module):
    """F frame queries cross-attend to the K projected thinking states through a small Transformer decoder."""

    def __init__(self, hidden_size: int, num_frames: int, dim: int, config: HeadConfig):
        super().__init__()
        self.num_frames = num_frames
        # LALM hidden states carry a few very large outlier channels; normalising before the projection keeps
        # the head's input scale independent of the base model and of the tapped layer.
        self.in_norm = nn.LayerNorm(hidden_size)
        self.in_proj = nn.Linear(hidden_size, config.d_model)
        self.register_buffer("positions", sinusoidal_positions(num_frames, config.d_model), persistent=False)
        # zero init: training starts from pure time positions and learns per-frame offsets
        self.query_bias = nn.Parameter(torch.zeros(num_frames, config.d_model))
        layer = nn.TransformerDecoderLayer(
            config.d_model, config.heads, 4 * config.d_model, config.dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        self.decoder = nn.TransformerDecoder(layer, config.layers)
        self.out_norm = nn.LayerNorm(config.d_model)  # norm_first layers leave the residual stream unnormalised
        self.out_proj = nn.Linear(config.d_model, dim)

    def forward(self, thinking: torch.Tensor, thinking_mask: torch.Tensor | None = None) -> torch.Tensor:
        memory = self.in_proj(self.in_norm(thinking))
        queries = (self.positions + self.query_bias).to(memory.dtype).expand(memory.shape[0], -1, -1)
        padding = None
        if thinking_mask is not None:
            padding = ~thinking_mask.bool()  # PyTorch: True = ignore
            # a span with no valid position would softmax over nothing (NaN, which poisons every gradient);
            # let it attend to everything instead: its prediction is meaningless but finite, and its frames masked
            padding = padding & ~padding.all(dim=1, keepdim=True)
        out = self.decoder(queries, memory, memory_key_padding_mask=padding)
        return self.out_proj(self.out_norm(out))


class PooledHead(nn.Module):
    """Linear (``d_model=None``) or one-hidden-layer MLP from the mean-pooled thinking states to all F frames."""

    def __init__(self, hidden_size: int, num_frames: int, dim: int, d_model: int | None, dropout: float = 0.0):
        super().__init__()
        self.num_frames, self.dim = num_frames, dim
        self.in_norm = nn.LayerNorm(hidden_size)
        if d_model is None:
            self.in_proj = None
            self.out_proj = nn.Linear(hidden_size, num_frames * dim)
        else:
            self.in_proj = nn.Sequential(nn.Linear(hidden_size, d_model), nn.GELU(), nn.Dropout(dropout))
            self.out_proj = nn.Linear(d_model, num_frames * dim)

    def forward(self, thinking: torch.Tensor, thinking_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.in_norm(_pool(thinking, thinking_mask))
        if self.in_proj is not None:
            x = self.in_proj(x)
        return self.out_proj(x).view(-1, self.num_frames, self.dim)


def build_head(spec: TargetSpec, hidden_size: int, config: HeadConfig) -> nn.Module:
    """The head for one target: input ``(n_spans, K, hidden_size)``, output ``(n_spans, F, spec.dim)``."""
    frames = spec.head_frames(config.num_frames)
    if config.type == "transformer":
        return TransformerHead(hidden_size, frames, spec.dim, config)
    if config.type == "mlp":
        return PooledHead(hidden_size, frames, spec.dim, config.d_model, config.dropout)
    return PooledHead(hidden_size, frames, spec.dim, None)


class ExpertHeads(nn.ModuleDict):
    """One head per target, keyed by target name; ``forward`` runs them all (or ``names``) on one thinking block.

    thinking: ``(n_spans, K, hidden_size)`` hidden states at the thinking positions of each audio span.
    thinking_mask: optional ``(n_spans, K)``, 1/True = valid position.
    Returns target name -> ``(n_spans, F, dim)`` raw scores.
    """

    def __init__(self, specs: Sequence[TargetSpec], hidden_size: int, config: HeadConfig | None = None):
        super().__init__()
        self.config = config or HeadConfig()
        self.hidden_size = hidden_size
        self.specs: dict[str, TargetSpec] = {}
        for spec in specs:
            if not spec.name or "." in spec.name:
                raise ValueError(f"target name {spec.name!r} cannot name a head: it must be non-empty without '.'")
            if spec.name in self.specs:
                raise ValueError(f"target {spec.name!r} is declared twice")
            if hasattr(self, spec.name):
                raise ValueError(f"target name {spec.name!r} clashes with an ExpertHeads attribute; rename it")
            self.specs[spec.name] = spec
            self[spec.name] = build_head(spec, hidden_size, self.config)
        for spec in specs:
            if spec.weight_by is not None and spec.weight_by not in self.specs:
                raise ValueError(f"target {spec.name!r} is weighted by {spec.weight_by!r}, which is not a target here")

    def forward(
        self,
        thinking: torch.Tensor,
        thinking_mask: torch.Tensor | None = None,
        names: Iterable[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        if thinking.dim() != 3 or thinking.shape[-1] != self.hidden_size:
            raise ValueError(f"thinking states must be (n_spans, K, {self.hidden_size}), got {tuple(thinking.shape)}")
        if thinking_mask is not None and thinking_mask.shape != thinking.shape[:2]:
            raise ValueError(
                f"thinking_mask {tuple(thinking_mask.shape)} does not match thinking {tuple(thinking.shape)}"
            )
        names = list(self.keys()) if names is None else list(names)
        unknown = [n for n in names if n not in self.specs]
        if unknown:
            raise ValueError(f"no head for target(s) {unknown}; heads: {list(self.keys())}")
        return {name: self[name](thinking, thinking_mask) for name in names}

    # Config round trip: the model writes this into coat_config.json (the weights go into coat_model.safetensors).
    def to_dict(self) -> dict:
        return {"hidden_size": self.hidden_size, "head": asdict(self.config),
                "specs": [s.to_dict() for s in self.specs.values()]}

    @classmethod
    def from_dict(cls, data: dict) -> ExpertHeads:
        return cls([TargetSpec(**s) for s in data["specs"]], data["hidden_size"], HeadConfig(**data["head"]))
