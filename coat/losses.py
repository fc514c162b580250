"""The distillation loss of a batch: each expert head against its target, with the loss of the target's kind
(:data:`coat.targets.LOSS_FUNCTIONS`, where the kinds and their losses are declared), weighted and summed."""

from __future__ import annotations

import torch

from coat.targets import LOSS_FUNCTIONS, TargetSpec


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
            "(resample targets to the head's frame count with coat.targets.prepare_targets)"
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
    :func:`coat.targets.prepare_targets`; specs: target name -> :class:`TargetSpec`.
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
