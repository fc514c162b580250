"""The contract between experts, the target cache, the heads and the losses: what a target is and how it trains.

- :class:`TargetSpec`: one target of an expert (name, sample rate, frame rate or clip level, dimension, kind, and
  where it is made: offline into the target cache, in the data loader, or in the forward). An expert declares its
  specs, the cache stores each example's ``(frames, dim)`` array (or, for a ``peak_std`` target, its ``(frames, 1)``
  peak positions), a head predicts it.
- The kinds and their losses, declared once in :data:`LOSS_FUNCTIONS` (docs/design.md, decision 4):
  ``distribution`` -> KL(target || softmax(prediction)), ``multilabel`` -> BCE-with-logits on soft labels,
  ``regression`` -> smooth-L1, ``embedding`` -> (1 - cosine) + MSE. Every loss is computed per frame, weighted by
  the frame mask (0 = padded / not counted, fractional = e.g. voicing) and averaged over the valid frames of the
  whole batch: ``sum(w * loss) / sum(w)``. A batch with no valid frame gives an exact 0 that still carries a graph,
  never NaN. Losses run in float32 whatever the heads' dtype: a KL or a cosine in bf16 loses the small differences
  that the late phase of training is made of.
- Resampling onto the heads' frames (:func:`resample_targets`, :func:`prepare_targets`,
  :func:`prepare_active_targets` -> :class:`PreparedTargets`): targets are cached at their expert's frame rate
  with a length that varies per clip; the heads predict F frames per audio span.
- :func:`cut_targets`: a clip's targets restricted to the audio the model receives.
- :func:`peak_distribution`: the distribution of a ``peak_std`` target rebuilt from its peak positions, after
  resampling (pitch: the cache keeps f0, the head trains on a Gaussian over CREPE's bins, as CREPE's own training
  targets are built).

Time axis of the heads' frames (``max_duration`` of the frame grid, a :class:`coat.heads.HeadConfig`). By default
(``None``) every clip, whatever its duration, is mapped onto the full F frames: frame f is the point
``(f + 0.5) / F`` of the way through the clip. The thinking block summarises one whole audio span, so "the whole
acoustic timeline" is the clip's own timeline; relative time uses every frame of every clip (a 2 s clip in a 30 s
absolute grid would train on ~7% of the frames and the head would also have to infer the duration) and keeps the
resolution useful for the short clips that dominate speech and emotion data. The price is that frame duration
varies with clip length. With ``max_duration`` set, frame f covers the absolute time ``(f + 0.5) * max_duration /
F`` seconds from the clip start; frames after the clip's end are padded and masked and a longer clip is cut.

Nothing here imports an expert, the cache or an audio library: the model, the heads and the losses build on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class TargetSpec:
    """What one target of an expert is.

    name: key of the target in the cache and in ``expert_targets`` (unique across experts, e.g. ``pitch``).
    sample_rate: the expert's input sample rate in Hz.
    frame_rate: target frames per second, or ``None`` for one clip-level vector.
    dim: size of the last axis of the target array.
    kind: one of :data:`TARGET_KINDS`; it decides the loss a head trains with (:data:`LOSS_FUNCTIONS`).
    weight_by: name of a 1-dim target of the same expert whose per-frame value in [0, 1] weights this
        target's loss (pitch is weighted by voicing so unvoiced frames do not count), or ``None``.
    peak_std: for a ``distribution`` over ordered classes (pitch bins): the expert gives, and the cache keeps, only
        each frame's peak position in class units, ``(frames, 1)``; the ``(frames, dim)`` distribution the head
        trains on is rebuilt after resampling onto the head's frames as a Gaussian of this std (in classes) over
        the classes (:func:`peak_distribution`). ``None``: the target is the full ``(frames, dim)`` array.
    computed_in: where the target is made (one of :data:`COMPUTED_IN`): ``extraction`` (by the expert, once, into
        the target cache), ``loader`` (from each example's waveform in the data loader, never cached: cheap
        functions of the waveform such as log-mel), ``forward`` (from the wrapped LALM's own audio tower during the
        forward, never cached; the tower must be frozen).
    """

    name: str
    sample_rate: int
    frame_rate: float | None
    dim: int
    kind: str
    weight_by: str | None = None
    peak_std: float | None = None
    computed_in: str = "extraction"

    def __post_init__(self):
        if self.kind not in LOSS_FUNCTIONS:
            raise ValueError(f"target {self.name!r}: kind must be one of {TARGET_KINDS}, got {self.kind!r}")
        if self.dim < 1:
            raise ValueError(f"target {self.name!r}: dim must be >= 1, got {self.dim}")
        if self.frame_rate is not None and self.frame_rate <= 0:
            raise ValueError(f"target {self.name!r}: frame_rate must be > 0 or None (clip level)")
        if self.peak_std is not None and (self.kind != "distribution" or self.dim < 2 or self.peak_std <= 0):
            raise ValueError(f"target {self.name!r}: peak_std needs a distribution over >= 2 classes and a std > 0 "
                             f"(got kind {self.kind!r}, dim {self.dim}, peak_std {self.peak_std})")
        if self.computed_in not in COMPUTED_IN:
            raise ValueError(f"target {self.name!r}: computed_in must be one of {COMPUTED_IN}, got "
                             f"{self.computed_in!r}")

    @property
    def clip_level(self) -> bool:
        return self.frame_rate is None

    @property
    def width(self) -> int:
        """Size of the last axis of what the expert gives and the cache keeps: 1 for a ``peak_std`` target (its
        peak positions), else ``dim``."""
        return 1 if self.peak_std is not None else self.dim

    def num_frames(self, num_samples: int) -> int:
        """Frames this target has for a clip of ``num_samples`` samples at ``sample_rate``."""
        if self.frame_rate is None:
            return 1
        return max(1, int(np.ceil(num_samples * self.frame_rate / self.sample_rate)))

    def head_frames(self, num_frames: int) -> int:
        """F, the frames a head predicts for this target on a grid of ``num_frames``: 1 for clip-level targets."""
        return 1 if self.clip_level else num_frames

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# where a target is made (TargetSpec.computed_in): offline into the cache, in the data loader, in the forward
COMPUTED_IN: tuple[str, ...] = ("extraction", "loader", "forward")


class FrameGrid(Protocol):
    """The heads' frames (a :class:`coat.heads.HeadConfig`): F per frame-level target, and the time axis."""

    num_frames: int
    max_duration: float | None


# ---------------------------------------------------------------------------------------------- kinds and losses
# Below this total frame weight a batch is treated as having no valid frames (avoids 0 / 0).
_MIN_WEIGHT = 1e-6


def _weighted_mean(per_frame: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``sum(mask * per_frame) / sum(mask)`` over all frames; 0 (with a graph) when the mask is all zero."""
    w = mask.to(per_frame.dtype)
    # where() rather than a product: a masked frame then gets an exact zero gradient even if its loss is inf
    total = torch.where(w > 0, per_frame * w, torch.zeros_like(per_frame)).sum()
    return total / w.sum().clamp_min(_MIN_WEIGHT)


def _safe_target(target: torch.Tensor, mask: torch.Tensor, fill: float) -> torch.Tensor:
    """Replace the target on masked frames so that no NaN/inf there can reach the loss or its gradient."""
    return torch.where(mask[..., None] > 0, target, torch.full_like(target, fill))


def kl_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(target || softmax(prediction)) summed over classes. prediction: logits ``(N, F, C)``; target: rows sum
    to 1 ``(N, F, C)``; mask ``(N, F)``."""
    target = _safe_target(target.float(), mask, 1.0 / target.shape[-1])
    log_q = F.log_softmax(prediction.float(), dim=-1)
    per_frame = F.kl_div(log_q, target, reduction="none").sum(dim=-1)  # xlogy: zero-probability classes add 0
    return _weighted_mean(per_frame, mask)


def bce_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits on soft labels in [0, 1], mean over classes. Its minimum (at ``sigmoid(prediction) ==
    target``) is the labels' entropy, 0 only for hard labels."""
    target = _safe_target(target.float(), mask, 0.0)
    per_frame = F.binary_cross_entropy_with_logits(prediction.float(), target, reduction="none").mean(dim=-1)
    return _weighted_mean(per_frame, mask)


def smooth_l1_loss(
    prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, beta: float = 1.0
) -> torch.Tensor:
    """Smooth-L1 (Huber with ``beta``), mean over the target dims."""
    target = _safe_target(target.float(), mask, 0.0)
    per_frame = F.smooth_l1_loss(prediction.float(), target, reduction="none", beta=beta).mean(dim=-1)
    return _weighted_mean(per_frame, mask)


def embedding_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(1 - cosine) + MSE`` per frame: cosine matches the direction, MSE pins the scale that cosine ignores."""
    target = _safe_target(target.float(), mask, 0.0)
    prediction = prediction.float()
    cosine = 1.0 - F.cosine_similarity(prediction, target, dim=-1, eps=1e-8)
    mse = (prediction - target).pow(2).mean(dim=-1)
    return _weighted_mean(cosine + mse, mask)


LOSS_FUNCTIONS = {"distribution": kl_loss, "multilabel": bce_loss, "regression": smooth_l1_loss,
                  "embedding": embedding_loss}
# the target kinds: a kind is the loss it trains with
TARGET_KINDS: tuple[str, ...] = tuple(LOSS_FUNCTIONS)


# ---------------------------------------------------------------------------------------------- resampling
def fit_frames(frames: torch.Tensor | np.ndarray, num_frames: int) -> np.ndarray:
    """Crop or extend ``(frames, dim)`` to exactly ``num_frames`` rows, as float32.

    A model's own frame count differs from ``TargetSpec.num_frames`` by a frame or two at the edges (conv
    receptive fields, centring); extra frames are cropped and missing ones repeat the last frame. The experts use it,
    and so does the forward for a target it takes from the model's audio tower, so both give the same frames.
    """
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().float().cpu().numpy()
    frames = np.asarray(frames, dtype=np.float32)
    if frames.shape[0] >= num_frames:
        return np.ascontiguousarray(frames[:num_frames])
    pad = np.repeat(frames[-1:], num_frames - frames.shape[0], axis=0)
    return np.concatenate([frames, pad], axis=0)


def frame_positions(length: int, num_frames: int) -> torch.Tensor:
    """Relative time: the fractional index into ``length`` source frames (float64, ``(num_frames,)``) at the centres
    of ``num_frames`` equal parts of the clip, frame f at ``(f + 0.5) / num_frames`` of the way through."""
    return (torch.arange(num_frames, dtype=torch.float64) + 0.5) * length / num_frames - 0.5


def _frame_positions(spec: TargetSpec, length: int, num_frames: int, max_duration: float | None) -> torch.Tensor:
    """Fractional source-frame index (float64) sampled by each of the ``num_frames`` head frames."""
    if max_duration is None:  # frame centres at equal fractions of the clip
        return frame_positions(length, num_frames)
    f = torch.arange(num_frames, dtype=torch.float64) + 0.5
    return f * max_duration / num_frames * spec.frame_rate - 0.5  # frame centres in seconds -> source index


def interpolate_frames(frames, positions: torch.Tensor):
    """``(T, width)`` frames (numpy or torch) sampled at fractional ``positions`` ``(F,)`` by linear interpolation
    between neighbours (clamped to the first and last frame): ``(F, width)`` of the same type, float64 for torch."""
    t = frames if torch.is_tensor(frames) else torch.as_tensor(np.asarray(frames, dtype=np.float64))
    pos = positions.clamp(0, len(t) - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=len(t) - 1)
    frac = (pos - lo)[:, None].to(t.dtype)
    out = t[lo] * (1 - frac) + t[hi] * frac
    return out if torch.is_tensor(frames) else out.numpy()


def _as_frames(target: np.ndarray | torch.Tensor, spec: TargetSpec, clip: int) -> torch.Tensor:
    """One clip's target as float64 ``(T, dim)``, or ``(T, 1)`` peak positions for a ``peak_std`` target given in
    that form (what the cache keeps); 1-D input is read as (T,) for width 1, else as one (dim,) row."""
    t = (target if torch.is_tensor(target) else torch.as_tensor(np.asarray(target))).detach().cpu().double()
    if t.numel() == 0:
        return t.reshape(0, spec.dim)
    if t.dim() <= 1:
        t = t.reshape(-1, 1) if spec.width == 1 else t.reshape(1, -1)
    if t.dim() != 2 or t.shape[1] not in (spec.dim, spec.width):
        shape = f"(frames, {spec.dim})" + (" or (frames, 1) peak positions" if spec.peak_std is not None else "")
        raise ValueError(f"target {spec.name!r}, clip {clip}: expected {shape}, got {tuple(t.shape)}")
    return t


def peak_distribution(positions: torch.Tensor, dim: int, std: float) -> torch.Tensor:
    """``(...,)`` peak positions in class units -> ``(..., dim)`` normalised Gaussians of ``std`` classes over the
    classes ``0 .. dim-1``: how a ``peak_std`` target's distribution is rebuilt (CREPE builds its training targets
    this way: a Gaussian-blurred one-hot over its 20-cent bins, std 25 cents)."""
    classes = torch.arange(dim, dtype=torch.float64, device=positions.device)
    logits = -0.5 * ((classes - positions.double()[..., None]) / std) ** 2
    return torch.softmax(logits, dim=-1)


def resample_targets(
    targets: Sequence[np.ndarray | torch.Tensor | None],
    spec: TargetSpec,
    num_frames: int,
    *,
    max_duration: float | None = None,
    frame_weights: Sequence[np.ndarray | torch.Tensor | None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bring per-clip targets onto the head's frames.

    targets: N arrays ``(T_i, spec.dim)`` (``None`` or empty: no target, fully masked), at the expert's frame rate or
        on a coarser grid of the cache (any T_i: relative time reads only the count); a ``peak_std`` target may
        come as ``(T_i, 1)`` peak positions, rebuilt into its distribution after the resampling.
    num_frames: F (use 1 for clip-level specs; their single row is broadcast / averaged to it).
    max_duration: ``None`` maps each clip onto all F frames (relative time); seconds make the F frames cover
        that fixed duration, masking frames past the clip's end (see the module docstring).
    frame_weights: for a spec with ``weight_by``, the N weighting arrays ``(T_i, 1)`` (e.g. voicing) in [0, 1];
        they are resampled the same way and multiplied into the mask.
    Returns ``values (N, F, dim)`` float32 and ``mask (N, F)`` float32: 1 valid, 0 padded / not counted,
    fractional = frame weight. Linear interpolation over time; distributions are renormalised to sum to 1,
    multilabel values clipped to [0, 1]. Non-finite frames are masked; masked values are filled with a safe
    value (uniform for distributions, 0 otherwise) so that a loss on them stays finite.
    """
    if spec.weight_by is not None and frame_weights is None:
        raise ValueError(f"target {spec.name!r} is weighted by {spec.weight_by!r}: pass its frames as frame_weights")
    if frame_weights is not None and len(frame_weights) != len(targets):
        raise ValueError(f"target {spec.name!r}: {len(targets)} clips but {len(frame_weights)} frame_weights")
    values = torch.zeros(len(targets), num_frames, spec.dim)
    mask = torch.zeros(len(targets), num_frames)
    for i, target in enumerate(targets):
        if target is None:
            continue
        t = _as_frames(target, spec, i)
        if len(t) == 0:
            continue
        # a peak_std target given as its peak positions: resample the positions, then rebuild the distribution
        peaks = spec.peak_std is not None and t.shape[1] == 1
        if spec.clip_level:  # one vector per clip: repeat (or average a stray multi-row) over the F frames
            v = t.mean(dim=0, keepdim=True)
            valid = torch.isfinite(v).all(dim=1).expand(num_frames)
        else:
            pos = _frame_positions(spec, len(t), num_frames, max_duration)
            # absolute time: a head frame counts while its centre lies before the clip's end (T / frame_rate s)
            valid = (pos < len(t) - 0.5 + 1e-9 if max_duration is not None
                     else torch.ones(num_frames, dtype=torch.bool))
            v = interpolate_frames(t, pos)
            valid = valid & torch.isfinite(v).all(dim=1)
        v = torch.where(valid[:, None], v, torch.zeros_like(v))
        if peaks:
            v = peak_distribution(v[:, 0], spec.dim, spec.peak_std)
        values[i] = v.float()
        mask[i] = valid.float()
    if spec.kind == "distribution":
        values = values.clamp_min(0)
        total = values.sum(dim=-1, keepdim=True)
        mask = mask * (total[..., 0] > 0)
        values = torch.where(total > 0, values / total.clamp_min(1e-12), torch.full_like(values, 1.0 / spec.dim))
    elif spec.kind == "multilabel":
        values = values.clamp(0, 1)
    if frame_weights is not None:
        weight_spec = TargetSpec(f"{spec.name}.weight", spec.sample_rate, spec.frame_rate, 1, "multilabel")
        weights, weight_mask = resample_targets(frame_weights, weight_spec, num_frames, max_duration=max_duration)
        mask = mask * weight_mask * weights[..., 0]
    return values, mask


def prepare_targets(
    targets: dict[str, Sequence[np.ndarray | torch.Tensor | None]],
    specs: dict[str, TargetSpec],
    config: FrameGrid,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Resample a batch of cached targets (name -> one array per audio span) for the heads.

    Weighted targets (``weight_by``) take their frame weights from the batch's weighting target.
    Returns name -> ``(N, F, dim)`` values and name -> ``(N, F)`` masks, for :func:`coat.losses.distillation_losses`.
    """
    values, masks = {}, {}
    for name, clips in targets.items():
        if name not in specs:
            raise ValueError(f"target {name!r} has no spec; known targets: {sorted(specs)}")
        spec = specs[name]
        weights = None
        if spec.weight_by is not None:
            if spec.weight_by not in targets:
                raise ValueError(f"target {name!r} is weighted by {spec.weight_by!r}, which is missing from the batch")
            weights = targets[spec.weight_by]
        values[name], masks[name] = resample_targets(
            clips, spec, spec.head_frames(config.num_frames), max_duration=config.max_duration, frame_weights=weights
        )
    return values, masks


@dataclass
class PreparedTargets:
    """A batch's targets already on the heads' frames: name -> ``(n_spans, F, dim)`` values and ``(n_spans, F)``
    masks. The collator builds it in the data loader so the training step does no resampling. ``span_seconds``
    ``(n_spans,)``: the audio each span holds, for targets made in the forward (``computed_in="forward"``), so they
    get the frame count a cached one would have."""

    values: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    span_seconds: torch.Tensor | None = None


def prepare_active_targets(
    targets: dict[str, Sequence[np.ndarray | torch.Tensor | None]],
    specs: dict[str, TargetSpec],
    config: FrameGrid,
    weights: dict[str, float] | None = None,
    span_seconds: Sequence[float] | None = None,
) -> PreparedTargets:
    """:func:`prepare_targets` for the targets whose loss weight is not 0 (and the targets that weight them).
    ``span_seconds``: the seconds of audio of each span, kept for the targets made in the forward."""
    weights = weights or {}
    unknown = sorted(set(targets) - set(specs))
    if unknown:
        raise ValueError(f"expert_targets has target(s) {unknown} without a head; heads: {sorted(specs)}")
    # a list in the order of ``targets``, not a set: the losses are summed in this order, and a set's order
    # changes with each process's string hash seed, so two runs of the same command would round differently
    active = [n for n in targets if weights.get(n, 1.0) != 0.0]
    needed = set(active) | {specs[n].weight_by for n in active if specs[n].weight_by is not None}
    values, masks = prepare_targets({n: targets[n] for n in targets if n in needed}, specs, config)
    seconds = None if span_seconds is None else torch.as_tensor(list(span_seconds), dtype=torch.float64)
    return PreparedTargets({n: values[n] for n in active}, {n: masks[n] for n in active}, seconds)


def cut_targets(targets: dict, specs: dict, heard_seconds: float, clip_seconds: float) -> dict:
    """The targets of a clip of ``clip_seconds`` restricted to its first ``heard_seconds`` (what the model receives).

    Frame-level targets keep their frames that cover those seconds; a clip-level target describes the whole clip,
    so for a clip that was cut it is left out (None: masked). A clip no longer than ``heard_seconds`` is unchanged.
    A target at its expert's frame rate keeps ``spec.num_frames`` of the heard samples; one the cache keeps on a
    coarser grid (fewer frames spread over the whole clip) keeps the same share of its frames.
    ``specs``: target name -> :class:`TargetSpec`.
    """
    if clip_seconds <= heard_seconds:
        return targets
    out = {}
    for name, value in targets.items():
        spec = specs.get(name)
        if spec is None:
            raise ValueError(f"target {name!r} has no spec, so it cannot be cut to the audio the model receives")
        if value is None or spec.clip_level:
            out[name] = None
        elif len(value) == spec.num_frames(int(round(clip_seconds * spec.sample_rate))):
            out[name] = value[: spec.num_frames(int(round(heard_seconds * spec.sample_rate)))]
        else:
            out[name] = value[: max(1, int(np.ceil(len(value) * heard_seconds / clip_seconds)))]
    return out
