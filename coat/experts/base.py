"""The expert interface: an offline teacher that turns audio into frame-level (or clip-level) targets.

An expert declares one or more :class:`TargetSpec` (what it produces, at which rate, of which kind, and
thereby which loss trains a head on it), and maps a batch of mono waveforms at its own sample rate to
one array per target and example. Heavy libraries are imported inside ``load()``, never at module level.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch

TargetKind = Literal["distribution", "multilabel", "regression", "embedding"]
TARGET_KINDS: tuple[str, ...] = ("distribution", "multilabel", "regression", "embedding")
# kind -> the loss that training uses for it (see coat/losses.py)
LOSS_OF_KIND = {"distribution": "kl", "multilabel": "bce", "regression": "smooth_l1", "embedding": "cosine+l2"}


@dataclass(frozen=True)
class TargetSpec:
    """What one target of an expert is.

    name: key of the target in the cache and in ``expert_targets`` (unique across experts, e.g. ``pitch``).
    sample_rate: the expert's input sample rate in Hz.
    frame_rate: target frames per second, or ``None`` for one clip-level vector.
    dim: size of the last axis of the target array.
    kind: ``distribution`` (rows sum to 1, KL), ``multilabel`` (values in [0, 1], BCE on soft labels),
        ``regression`` (masked smooth-L1) or ``embedding`` (cosine + L2).
    weight_by: name of a 1-dim target of the same expert whose per-frame value in [0, 1] weights this
        target's loss (pitch is weighted by voicing so unvoiced frames do not count), or ``None``.
    """

    name: str
    sample_rate: int
    frame_rate: float | None
    dim: int
    kind: TargetKind
    weight_by: str | None = None

    def __post_init__(self):
        if self.kind not in TARGET_KINDS:
            raise ValueError(f"target {self.name!r}: kind must be one of {TARGET_KINDS}, got {self.kind!r}")
        if self.dim < 1:
            raise ValueError(f"target {self.name!r}: dim must be >= 1, got {self.dim}")
        if self.frame_rate is not None and self.frame_rate <= 0:
            raise ValueError(f"target {self.name!r}: frame_rate must be > 0 or None (clip level)")

    @property
    def clip_level(self) -> bool:
        return self.frame_rate is None

    @property
    def loss(self) -> str:
        return LOSS_OF_KIND[self.kind]

    def num_frames(self, num_samples: int) -> int:
        """Frames this target has for a clip of ``num_samples`` samples at ``sample_rate``."""
        if self.frame_rate is None:
            return 1
        return max(1, int(np.ceil(num_samples * self.frame_rate / self.sample_rate)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Expert(ABC):
    """Base class of every expert.

    Subclasses set ``name`` (the registry key), ``sample_rate``, implement :meth:`specs`, :meth:`load`
    and :meth:`compute`, and list in :meth:`params` everything that changes their output (checkpoint,
    model size, window, ...): it goes into the cache fingerprint.
    """

    name: str = ""
    sample_rate: int = 16000

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self._loaded = False

    @abstractmethod
    def specs(self) -> tuple[TargetSpec, ...]:
        """The targets this expert produces."""

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """JSON-serialisable parameters that determine the output (checkpoint id, sizes, windows)."""

    def load(self) -> None:  # noqa: B027 (optional hook: weight-free experts have nothing to load)
        """Load weights (lazily, once). Errors name the model source and why it failed."""

    @abstractmethod
    def compute(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[dict[str, np.ndarray]]:
        """Targets for a batch.

        waveforms: (batch, samples) float32 mono audio at ``sample_rate``, zero-padded on the right.
        lengths: (batch,) number of valid samples per example.
        Returns one dict per example: target name -> float32 array (frames, dim), where frames is
        ``spec.num_frames(length)`` (1 for clip-level targets).
        """

    def __call__(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[dict[str, np.ndarray]]:
        if not self._loaded:
            self.load()
            self._loaded = True
        with torch.inference_mode():
            return self.compute(waveforms.to(self.device), lengths)

    def to(self, device: str | torch.device) -> Expert:
        device = torch.device(device)
        if device != self.device:  # a loaded model stays loaded when nothing moves
            self.device = device
            self._loaded = False  # reload onto the new device on next call
        return self

    def fingerprint_params(self) -> dict[str, Any]:
        """What identifies this expert's output, for the target cache."""
        return {
            "expert": self.name,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "sample_rate": self.sample_rate,
            "params": self.params(),
            "specs": [s.to_dict() for s in self.specs()],
        }


_EXPERTS: dict[str, Callable[..., Expert]] = {}


def register_expert(name: str, factory: Callable[..., Expert]) -> None:
    """Make ``build_expert(name, **params)`` construct ``factory(**params)``. Overwrites a previous entry."""
    _EXPERTS[name] = factory


def available_experts() -> list[str]:
    return sorted(_EXPERTS)


def build_expert(name: str, **params) -> Expert:
    if name not in _EXPERTS:
        raise ValueError(
            f"unknown expert {name!r}; available: {', '.join(available_experts())}. "
            "Register your own with coat.experts.register_expert(name, factory) (see examples/custom_expert.py)."
        )
    try:
        return _EXPERTS[name](**params)
    except TypeError as err:
        raise ValueError(f"expert {name!r}: bad parameters {params}: {err}") from err


@dataclass
class ExpertConfig:
    """One expert in a YAML config: a registered name, its constructor parameters and (for training) its loss
    weight. Used by ``coat targets`` and ``coat train``."""

    config_accepts_string = True  # `experts: [pitch]`: a bare name is this with default parameters

    name: str = field(default="", metadata={"help": "registered expert name, e.g. pitch or reconstruction"})
    params: dict[str, Any] = field(default_factory=dict, metadata={"help": "keyword arguments of the expert"})
    weight: float = field(default=1.0, metadata={"help": "training loss weight of each of its targets (0 = off)"})
    target_weights: dict[str, float] = field(default_factory=dict,
                                             metadata={"help": "training: per-target weight overrides"})

    def __post_init__(self):
        if not self.name:
            raise ValueError("each expert needs a name")
        if not isinstance(self.params, dict):
            raise ValueError(f"expert {self.name!r}: params must be a mapping, got {self.params!r}")
        if self.weight < 0:
            raise ValueError(f"expert {self.name!r}: weight must be >= 0, got {self.weight}")


def build_experts(configs: list[ExpertConfig | str]) -> list[Expert]:
    """Build every configured expert (a bare name means default parameters)."""
    configs = [ExpertConfig(name=c) if isinstance(c, str) else c for c in configs]
    return [build_expert(c.name, **c.params) for c in configs]
