"""Auxiliary distillation losses: train each expert head on its target with the loss of the target's kind.

``distribution`` -> KL(target || softmax(prediction)), ``multilabel`` -> BCE-with-logits on soft labels,
``regression`` -> smooth-L1, ``embedding`` -> (1 - cosine) + MSE (docs/design.md, decision 4). Every loss is
computed per frame, weighted by the frame mask (0 = padded / not counted, fractional = e.g. voicing) and
averaged over the valid frames of the whole batch: ``sum(w * loss) / sum(w)``. A batch with no valid frame
gives an exact 0 that still carries a graph, never NaN. Losses run in float32 whatever the heads' dtype:
a KL or a cosine in bf16 loses the small differences that the late phase of training is made of.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from coat.experts.base import TargetSpec

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


def target_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, spec: TargetSpec) -> torch.Tensor:
    """The loss of ``spec.kind`` for one target, after checking shapes.

    prediction, target: ``(N, F, spec.dim)``; mask: ``(N, F)`` frame weights (bool or float in [0, 1]).
    """
    name = spec.name
    if prediction.dim() != 3 or prediction.shape[-1] != spec.dim:
        raise ValueError(f"target {name!r}: prediction must be (N, F, {spec.dim}), got {tuple(prediction.shape)}")
    if target.shape != prediction.shape:
        raise ValueError(
            f"target {name!r}: target shape {tuple(target.shape)} != prediction shape {tuple(prediction.shape)} "
            "(resample targets to the head's frame count with coat.heads.prepare_targets)"
        )
    if mask.shape != prediction.shape[:2]:
        raise ValueError(f"target {name!r}: mask shape {tuple(mask.shape)} != (N, F) {tuple(prediction.shape[:2])}")
    return LOSS_FUNCTIONS[spec.kind](prediction, target.to(prediction.device), mask.to(prediction.device))


def distillation_losses(
    predictions: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor],
    specs: dict[str, TargetSpec],
    weights: dict[str, float] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """All auxiliary losses of a batch: ``total = sum(weights[name] * loss[name])``.

    predictions: target name -> head output ``(N, F, dim)``; targets, masks: as from
    :func:`coat.heads.prepare_targets`; specs: target name -> :class:`TargetSpec`.
    weights: target name -> loss weight (missing: 1.0). A weight of 0 skips the target entirely: it adds
    exactly 0, is absent from the returned dict and its head gets no gradient.
    Returns the total (a scalar; a plain 0 when nothing is computed) and name -> unweighted loss.
    """
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(specs))
    if unknown:
        raise ValueError(f"loss weights for unknown target(s) {unknown}; targets: {sorted(specs)}")
    per_target: dict[str, torch.Tensor] = {}
    total = None
    for name, prediction in predictions.items():
        weight = float(weights.get(name, 1.0))
        if weight == 0.0:
            continue
        if name not in specs:
            raise ValueError(f"prediction for target {name!r} has no spec; targets: {sorted(specs)}")
        if name not in targets or name not in masks:
            raise ValueError(f"target {name!r}: a prediction but no {'target' if name not in targets else 'mask'}")
        loss = target_loss(prediction, targets[name], masks[name], specs[name])
        per_target[name] = loss
        total = weight * loss if total is None else total + weight * loss
    if total is None:
        device = next(iter(predictions.values())).device if predictions else None
        total = torch.zeros((), device=device)
    return total, per_target
