"""The expert interface: an offline teacher that turns audio into frame-level (or clip-level) targets.

An expert declares one or more :class:`~coat.targets.TargetSpec` (what it produces, at which rate, of which kind,
and thereby which loss trains a head on it), and maps a batch of mono waveforms at its own sample rate to one array
per target and example. Heavy libraries are imported inside ``load()``, never at module level.

Where each target is made is part of its spec (``computed_in``): ``extraction`` targets go through :meth:`compute`
into the target cache, stored as the expert's :attr:`Expert.storage` says (coat/experts/storage.py); ``loader``
targets come from :meth:`loader_targets` in the data loader; ``forward`` targets from the wrapped model's audio tower.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from coat.experts.storage import StorageConfig
from coat.targets import TARGET_KINDS, TargetSpec

__all__ = ["TARGET_KINDS", "Expert", "ExpertConfig", "TargetSpec", "available_experts", "build_expert",
           "build_experts", "register_expert"]  # TargetSpec and the kinds live in coat/targets.py

class Expert(ABC):
    """Base class of every expert.

    Subclasses set ``name`` (the registry key), ``sample_rate``, implement :meth:`specs`, :meth:`load`
    and :meth:`compute`, and list in :meth:`params` everything that changes their output (checkpoint,
    model size, window, ...): it goes into the cache fingerprint. An expert with targets made in the data loader
    (``computed_in="loader"``) implements :meth:`loader_targets` too.

    ``storage``: how the cache keeps this expert's targets (:class:`~coat.experts.storage.StorageConfig`; set from
    ``experts[i].storage`` by :func:`build_experts`).
    """

    name: str = ""
    sample_rate: int = 16000

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self._loaded = False
        self.storage = StorageConfig()

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
        """Targets for a batch: every target of :meth:`cached_specs` (others may be left out).

        waveforms: (batch, samples) float32 mono audio at ``sample_rate``, zero-padded on the right.
        lengths: (batch,) number of valid samples per example.
        Returns one dict per example: target name -> float32 array (frames, spec.width): frames is
        ``spec.num_frames(length)`` (1 for clip-level targets), width is ``dim`` (1 for a ``peak_std`` target:
        its peak positions in class units).
        """

    def cached_specs(self) -> tuple[TargetSpec, ...]:
        """The targets made offline into the target cache (``computed_in == "extraction"``)."""
        return tuple(s for s in self.specs() if s.computed_in == "extraction")

    def loader_targets(self, audio: np.ndarray, sampling_rate: int) -> dict[str, np.ndarray]:
        """The targets made in the data loader (``computed_in == "loader"``) for one clip: ``(samples,)`` float32
        mono at ``sampling_rate`` -> target name -> ``(frames, dim)`` float32, the same values :meth:`compute` would
        give for it. Experts without such targets give nothing."""
        if any(s.computed_in == "loader" for s in self.specs()):
            raise NotImplementedError(f"expert {self.name!r} declares data-loader targets but no loader_targets()")
        return {}

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self.load()
            self._loaded = True

    def __call__(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[dict[str, np.ndarray]]:
        self._ensure_loaded()
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
            "storage": self.storage.to_dict(),
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
    storage: StorageConfig = field(default_factory=StorageConfig, metadata={
        "help": "how the target cache keeps its targets: dtype, top_k, frame_rate (coat/experts/storage.py)"})

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
    experts = [build_expert(c.name, **c.params) for c in configs]
    for config, expert in zip(configs, experts):
        expert.storage = config.storage
    return experts
