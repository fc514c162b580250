"""How the target cache keeps each target: what carries the information, in as few bytes as keep it (docs/design.md,
decision 8). The measure is MB per audio hour next to the audio's own 115 MB/h (16 kHz, 16-bit).

Per target, by its :class:`~coat.targets.TargetSpec` and the expert's :class:`StorageConfig` (``experts[i].storage``):

- **peak** (a ``peak_std`` target, e.g. ``pitch``): each frame's peak position in class units (for pitch, f0 in
  CREPE's bins: cents = 1997.38 + 20 x position) as a uint16 in steps of ``1 / (65535 / (dim - 1))`` classes (0.11
  cents for pitch); the distribution is rebuilt at batch time (:func:`coat.targets.peak_distribution`).
- **top-k** (``distribution`` and ``multilabel`` targets with ``dim > 2 top_k``: phonetic CTC posteriors, AudioSet
  tags): the ``top_k`` largest values of each frame, their class indices as uint16 and values as float16; the others
  read as 0, and a distribution is renormalised. What the tail held is recorded in ``cache.json`` (``storage``).
- **dense** (everything else: regression, embeddings, short distributions such as 4 emotions): float16.

``dtype: float32`` keeps every value as computed (peak positions as float32, values as float32: the exact targets).
A value beyond float16's range (65504) is an error that says to use float32, never an inf in the cache.

Frames: a frame-level target is kept on the heads' frames when those are fewer. With heads on relative time (the
default, ``heads.max_duration: null``) a clip of T expert frames keeps ``min(T, heads.num_frames)`` frames: the
values the heads would sample from the T frames (linear interpolation at their centres), so resampling them onto the
heads' frames at batch time is exact. The cache then serves heads of that ``num_frames`` only (its fingerprint
covers it; other heads compute their own cache). ``frame_rate`` instead keeps a fixed number of frames per second
(at most the expert's own), read back onto the expert's frame rate by linear interpolation: one cache for any heads,
approximate. Heads on absolute time (``max_duration`` set) get the expert's own frames unless ``frame_rate`` is set.
Clip-level targets are one row.

Columns (flat lists, one row per example; a ``(frames, width)`` array is ``frames * width`` values): ``<name>``
(dense values or peak positions), or ``<name>.index`` and ``<name>.value`` (top-k; a target name never holds a dot).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from coat.targets import FrameGrid, TargetSpec, frame_positions, interpolate_frames

STORAGE_DTYPES = ("float16", "float32")
FLOAT16_MAX = float(np.finfo(np.float16).max)
_PEAK_STEPS = 65535  # uint16 range spread over the class axis


@dataclass
class StorageConfig:
    """How one expert's targets are stored in the cache (coat/experts/storage.py); part of the cache fingerprint."""

    dtype: str = field(default="float16", metadata={
        "help": "float16 (half the bytes; peak positions as uint16) or float32 (the values exactly as computed)"})
    top_k: int | None = field(default=16, metadata={
        "help": "distribution and multilabel targets with more than 2 * top_k classes keep the top_k largest per "
                "frame (the rest read as 0; distributions renormalised); null: every class"})
    frame_rate: float | None = field(default=None, metadata={
        "help": "frames per second kept for frame-level targets (at most the expert's own); null: the heads' frames "
                "(at most heads.num_frames per clip, exact for those heads)"})

    def __post_init__(self):
        if self.dtype not in STORAGE_DTYPES:
            raise ValueError(f"storage.dtype must be one of {STORAGE_DTYPES}, got {self.dtype!r}")
        if self.top_k is not None and not 1 <= self.top_k <= 65535:
            raise ValueError(f"storage.top_k must be between 1 and 65535 or null, got {self.top_k}")
        if self.frame_rate is not None and self.frame_rate <= 0:
            raise ValueError(f"storage.frame_rate must be > 0 or null, got {self.frame_rate}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stored_frames(spec: TargetSpec, storage: StorageConfig, grid: FrameGrid | None, num_samples: int) -> int | None:
    """How many frames the cache keeps of ``spec`` for a clip of ``num_samples`` samples, or None for the expert's
    own count. ``grid``: the heads' frames the cache is made for (None: no heads in view)."""
    if spec.clip_level:
        return None
    own = spec.num_frames(num_samples)
    if storage.frame_rate is not None:
        rate = min(storage.frame_rate, spec.frame_rate)
        return None if rate >= spec.frame_rate else max(1, int(np.ceil(num_samples * rate / spec.sample_rate)))
    if grid is None or grid.max_duration is not None or own <= grid.num_frames:
        return None
    return int(grid.num_frames)


def grid_key(specs, storage: StorageConfig, grid: FrameGrid | None) -> dict[str, Any] | None:
    """What of the heads' frame grid the cache depends on (for its fingerprint): None when no target uses it."""
    uses = (storage.frame_rate is None and grid is not None and grid.max_duration is None
            and any(not s.clip_level for s in specs))
    return {"num_frames": int(grid.num_frames)} if uses else None


class TargetCodec:
    """The stored form of one target: its Arrow columns, :meth:`encode` (an expert's ``(frames, width)`` float32
    array -> column values) and :meth:`decode` (column values -> ``(frames, width)`` float32; top-k back to dense)."""

    def __init__(self, spec: TargetSpec, storage: StorageConfig):
        self.spec, self.storage = spec, storage
        if spec.peak_std is not None:
            self.form = "peak"
        elif (spec.kind in ("distribution", "multilabel") and storage.top_k is not None
              and spec.dim > 2 * storage.top_k):
            self.form = "top-k"
        else:
            self.form = "dense"
        self.k = storage.top_k if self.form == "top-k" else None
        self.exact = storage.dtype == "float32"
        self.columns = [f"{spec.name}.index", f"{spec.name}.value"] if self.form == "top-k" else [spec.name]

    def describe(self) -> dict[str, Any]:
        """The form in words and numbers, for ``cache.json``."""
        if self.form == "peak":
            units = self._peak_units()
            what = "float32 peak positions" if self.exact else f"uint16 peak positions ({units:.1f} steps/class)"
        elif self.form == "top-k":
            what = f"top-{self.k} per frame, uint16 indices + {self.storage.dtype} values"
        else:
            what = f"{self.storage.dtype} values"
        return {"form": self.form, "stored": what, "top_k": self.k, "dtype": self.storage.dtype}

    def features(self) -> dict[str, Any]:
        import datasets

        value = "float32" if self.exact else "float16"
        if self.form == "peak":
            return {self.spec.name: datasets.List(datasets.Value("float32" if self.exact else "uint16"))}
        if self.form == "top-k":
            return {self.columns[0]: datasets.List(datasets.Value("uint16")),
                    self.columns[1]: datasets.List(datasets.Value(value))}
        return {self.spec.name: datasets.List(datasets.Value(value))}

    def _peak_units(self) -> float:
        return _PEAK_STEPS / (self.spec.dim - 1)

    def encode(self, array: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """``(frames, width)`` -> (column -> flat values, what storing lost: ``max_abs_error`` over the stored
        values and, for top-k, ``max_tail`` / ``sum_tail`` over frames: the probability mass (distribution) or the
        largest value (multilabel) left out)."""
        x = np.asarray(array, dtype=np.float32)
        if not self.exact and self.form != "peak" and np.abs(x).max(initial=0.0) > FLOAT16_MAX:
            raise ValueError(f"target {self.spec.name!r} has values up to {np.abs(x).max():.4g}, beyond float16's "
                             f"range ({FLOAT16_MAX:.0f}): set this expert's storage.dtype: float32")
        if self.form == "peak":
            if self.exact:
                cols = {self.spec.name: x.reshape(-1)}
            else:
                steps = np.clip(np.rint(x.reshape(-1) * self._peak_units()), 0, _PEAK_STEPS).astype(np.uint16)
                cols = {self.spec.name: steps}
        elif self.form == "top-k":
            index = np.argpartition(-x, self.k - 1, axis=-1)[:, : self.k]
            index = np.sort(index, axis=-1)
            value = np.take_along_axis(x, index, axis=-1)
            cols = {self.columns[0]: index.astype(np.uint16).reshape(-1),
                    self.columns[1]: value.astype(np.float32 if self.exact else np.float16).reshape(-1)}
        else:
            cols = {self.spec.name: x.astype(np.float32 if self.exact else np.float16).reshape(-1)}
        decoded = self.decode(cols)
        stats = {"max_abs_error": float(np.abs(decoded - x).max(initial=0.0)), "frames": len(x)}
        if self.form == "top-k":
            kept = np.zeros_like(x, dtype=bool)
            np.put_along_axis(kept, index, True, axis=-1)
            left = np.where(kept, 0.0, x)
            tail = left.sum(-1) if self.spec.kind == "distribution" else left.max(-1, initial=0.0)
            stats.update(max_tail=float(tail.max(initial=0.0)), sum_tail=float(tail.sum()))
        return cols, stats

    def decode(self, row: dict[str, Any]) -> np.ndarray:
        """Column values of one example -> ``(frames, width)`` float32 (dense for top-k; renormalised rows for a
        distribution whose tail was left out)."""
        if self.form == "peak":
            values = np.asarray(row[self.spec.name], dtype=np.float32).reshape(-1, 1)
            return values if self.exact else values / np.float32(self._peak_units())
        if self.form == "top-k":
            index = np.asarray(row[self.columns[0]], dtype=np.int64).reshape(-1, self.k)
            value = np.asarray(row[self.columns[1]], dtype=np.float32).reshape(-1, self.k)
            dense = np.zeros((len(index), self.spec.dim), dtype=np.float32)
            np.put_along_axis(dense, index, value, axis=-1)
            if self.spec.kind == "distribution":
                dense /= np.maximum(dense.sum(-1, keepdims=True), np.float32(1e-12))
            return dense
        return np.asarray(row[self.spec.name], dtype=np.float32).reshape(-1, self.spec.dim)


def to_stored_frames(array: np.ndarray, frames: int | None) -> np.ndarray:
    """An expert's ``(T, width)`` frames -> the ``frames`` the cache keeps (None: unchanged): the values at the
    centres of ``frames`` equal parts of the clip, by linear interpolation (what relative-time heads of ``frames``
    frames sample; for a peak target, its positions)."""
    if frames is None or frames == len(array):
        return array
    return interpolate_frames(array, frame_positions(len(array), frames)).astype(np.float32)


def from_stored_frames(array: np.ndarray, spec: TargetSpec, storage: StorageConfig, num_samples: int) -> np.ndarray:
    """Frames kept at a fixed ``storage.frame_rate`` -> the expert's own frame count (linear interpolation), so
    every reader sees the expert's timeline; frames kept on the heads' grid, and any other target, are returned
    as they are."""
    if storage.frame_rate is None or spec.clip_level:
        return array
    return to_stored_frames(array, spec.num_frames(num_samples))
