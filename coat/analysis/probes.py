"""Linear probes: what the thinking states know about an attribute, against the base model at the last audio
position. A probe is a multinomial logistic regression trained with torch (full batch, Adam, L2 penalty, fixed
epochs, standardised features) on a seeded train split and scored on the rest; chance is the accuracy of always
answering the train split's majority class. Labels come from a metadata column or a target cache, turned into
classes by ``transform`` (see :class:`ProbeTask`)."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from coat.config_io import ConfigError
from coat.reports import markdown_table

TRANSFORMS = ("auto", "class", "semitone", "argmax")
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


@dataclass
class ProbeTask:
    """One probe: an attribute name and where its label comes from (a metadata column or a target cache)."""

    name: str = field(default="", metadata={"help": "attribute name, e.g. pitch_class"})
    metadata: str | None = field(default=None, metadata={"help": "metadata column of the data holding the label"})
    cache: str | None = field(default=None, metadata={
        "help": "expert whose target cache (in targets.cache_dir) holds it"})
    target: str | None = field(default=None, metadata={"help": "target name in that cache; null: its first"})
    transform: str = field(default="auto", metadata={"help": f"one of {TRANSFORMS}; auto: semitone for *_hz "
                                                             "columns and pitch targets, class / argmax otherwise"})
    where: dict[str, Any] | None = field(default=None, metadata={
        "help": "only the examples whose metadata fields have these values (a value or a list of values), e.g. "
                "{category: speech_pitch} to probe that category's answer; the others are left out of this probe"})
    shuffle: bool = field(default=False, metadata={
        "help": "a control: the labels permuted among the labelled examples (seeded by probe_training.seed), so no "
                "state can carry them and the probe should score chance"})

    def __post_init__(self):
        if not self.name:
            raise ValueError("each probe needs a name")
        if (self.metadata is None) == (self.cache is None):
            raise ValueError(f"probe {self.name!r}: give exactly one label source, metadata: <column> or "
                             "cache: <expert>")
        if self.transform not in TRANSFORMS:
            raise ValueError(f"probe {self.name!r}: transform must be one of {TRANSFORMS}, got {self.transform!r}")
        if self.target is not None and self.cache is None:
            raise ValueError(f"probe {self.name!r}: target is only meaningful with cache")
        if self.where is not None:
            if not isinstance(self.where, dict) or not self.where:
                raise ValueError(f"probe {self.name!r}: where must map metadata fields to values, e.g. "
                                 f"{{category: speech_pitch}}, got {self.where!r}")
            self.where = {k: list(v) if isinstance(v, (list, tuple)) else [v] for k, v in self.where.items()}


@dataclass
class ProbeTraining:
    """How every probe is trained (the same for all models, so accuracies compare)."""

    train_fraction: float = field(default=0.7, metadata={"help": "share of the labelled examples to train on"})
    epochs: int = field(default=300, metadata={"help": "full-batch Adam steps"})
    lr: float = field(default=0.05, metadata={"help": "Adam learning rate"})
    l2: float = field(default=1e-3, metadata={"help": "L2 penalty on the weights (sum of squares)"})
    seed: int = field(default=0, metadata={"help": "split and initialisation seed"})

    def __post_init__(self):
        if not 0.0 < self.train_fraction < 1.0:
            raise ValueError(f"probe_training.train_fraction must be in (0, 1), got {self.train_fraction}")
        if self.epochs < 1 or self.lr <= 0 or self.l2 < 0:
            raise ValueError("probe_training needs epochs >= 1, lr > 0 and l2 >= 0")


def _standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    mean, std = train.mean(0), train.std(0, unbiased=False).clamp_min(1e-6)
    return [(x - mean) / std for x in (train, *others)]


def train_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                settings: ProbeTraining | None = None) -> nn.Linear:
    """Multinomial logistic regression on (n, dim) standardised features, labels (n,) in ``0..num_classes-1``.

    Full-batch Adam on cross-entropy + ``l2 * |W|^2`` for ``epochs`` steps. The gradient is written out (it is
    two matrix products), which makes a probe a few milliseconds instead of an autograd graph per step.
    """
    settings = settings or ProbeTraining()
    generator = torch.Generator().manual_seed(settings.seed)
    x = torch.cat([features.float(), torch.ones(len(features), 1)], 1)  # bias as a last, unpenalised column
    onehot = nn.functional.one_hot(labels, num_classes).float()
    weight = torch.randn(x.shape[1], num_classes, generator=generator) * 0.01
    weight[-1] = 0
    penalty = torch.ones_like(weight)
    penalty[-1] = 0
    m, v = torch.zeros_like(weight), torch.zeros_like(weight)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    threads = torch.get_num_threads()
    if x.numel() < 1_000_000:  # small products: intra-op threads only add sync cost (100x on a busy CPU)
        torch.set_num_threads(1)
    try:
        for step in range(1, settings.epochs + 1):
            grad = x.T @ (torch.softmax(x @ weight, -1) - onehot) / len(x) + 2 * settings.l2 * penalty * weight
            m.mul_(beta1).add_(grad, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            weight -= settings.lr * (m / (1 - beta1**step)) / ((v / (1 - beta2**step)).sqrt() + eps)
    finally:
        torch.set_num_threads(threads)
    probe = nn.Linear(features.shape[1], num_classes)
    with torch.no_grad():
        probe.weight.copy_(weight[:-1].T)
        probe.bias.copy_(weight[-1])
    return probe.requires_grad_(False)


def split_indices(n: int, train_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``range(n)``: (train, test), both non-empty when n >= 2."""
    order = np.random.default_rng(seed).permutation(n)
    n_train = min(max(int(round(n * train_fraction)), 1), n - 1)
    return np.sort(order[:n_train]), np.sort(order[n_train:])


def probe_accuracy(features: torch.Tensor, labels: np.ndarray, train: np.ndarray, test: np.ndarray,
                   settings: ProbeTraining | None = None) -> dict[str, float]:
    """Train on rows ``train``, score on rows ``test``. features: (n, dim); labels: (n,) any hashable classes.

    Returns {"accuracy", "chance"}: chance = test accuracy of the train split's majority class.
    """
    classes = sorted(set(labels.tolist()), key=str)
    index = {c: i for i, c in enumerate(classes)}
    y = torch.tensor([index[c] for c in labels.tolist()])
    x = features.float()
    x_train, x_test = _standardise(x[train], x[test])
    probe = train_probe(x_train, y[train], len(classes), settings)
    accuracy = (probe(x_test).argmax(-1) == y[test]).float().mean().item()
    majority = Counter(y[train].tolist()).most_common(1)[0][0]
    chance = (y[test] == majority).float().mean().item()
    return {"accuracy": accuracy, "chance": chance}


def hz_to_pitch_class(hz: float) -> str | None:
    if hz is None or not np.isfinite(hz) or hz <= 0:
        return None
    return PITCH_CLASSES[int(round(12 * math.log2(hz / 440.0) + 69)) % 12]


def _cached_label(targets: dict[str, np.ndarray], target: str, transform: str, voiced: float = 0.5):
    values = targets[target]  # (frames, dim)
    if transform == "semitone":
        from coat.experts.pitch import distribution_to_hz

        hz = distribution_to_hz(values)
        if "voicing" in targets:  # CREPE's periodicity: unvoiced frames carry no pitch
            hz = hz[targets["voicing"].reshape(-1)[: len(hz)] >= voiced]
        return hz_to_pitch_class(float(np.median(hz))) if len(hz) else None
    if transform == "argmax":
        return int(values.mean(0).argmax()) if values.shape[-1] > 1 else int(values.mean() >= 0.5)
    raise ValueError(f"transform {transform!r} does not apply to cached targets (use semitone or argmax)")


def resolve_labels(task: ProbeTask, ids: list[str], metadata: list[dict[str, Any]], cache_dir: str,
                   heard_seconds: float | None = None, seed: int = 0) -> list:
    """One label per example (None where it has none, or where ``task.where`` leaves it out; permuted among the
    labelled examples with ``seed`` for ``task.shuffle``). A missing label source is a ConfigError naming the probe.

    ``heard_seconds``: the most audio the model receives (:func:`coat.data.collate.audio_window`); cached targets
    are cut to it first (:func:`coat.targets.cut_targets`), so a label describes the audio the states saw."""
    labels = _labels(task, ids, metadata, cache_dir, heard_seconds)
    if task.where is not None:
        for field_name in task.where:
            if not any(field_name in m for m in metadata):
                raise ConfigError(f"probe {task.name!r}: where names the metadata field {field_name!r}, which is not "
                                  f"in the data; fields: {', '.join(sorted({k for m in metadata for k in m}))}")
        labels = [label if all(m.get(k) in values for k, values in task.where.items()) else None
                  for label, m in zip(labels, metadata)]
    if task.shuffle:
        kept = [i for i, label in enumerate(labels) if label is not None]
        order = np.random.default_rng(seed).permutation(len(kept))
        shuffled = list(labels)
        for i, j in zip(kept, order):
            shuffled[i] = labels[kept[j]]
        labels = shuffled
    return labels


def _labels(task: ProbeTask, ids: list[str], metadata: list[dict[str, Any]], cache_dir: str,
            heard_seconds: float | None) -> list:
    if task.metadata is not None:
        if not any(task.metadata in m for m in metadata):
            columns = sorted({k for m in metadata for k in m})
            raise ConfigError(f"probe {task.name!r}: label source metadata column {task.metadata!r} is not in the "
                              f"data; columns: {', '.join(columns)}")
        transform = task.transform
        if transform == "auto":
            transform = "semitone" if task.metadata.endswith("_hz") else "class"
        if transform == "argmax":
            raise ConfigError(f"probe {task.name!r}: transform argmax needs a cache label source")
        raw = [m.get(task.metadata) for m in metadata]
        if transform == "semitone":
            return [None if v is None else hz_to_pitch_class(float(v)) for v in raw]
        return [None if v is None else (v if isinstance(v, (int, str, bool)) else json.dumps(v)) for v in raw]

    from coat.experts.cache import TargetCache

    try:
        cache = TargetCache.open(cache_dir, expert=task.cache)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"probe {task.name!r}: label source cache {task.cache!r} not found: {err}") from err
    names = [s.name for s in cache.specs]
    target = task.target or names[0]
    if target not in names:
        raise ConfigError(f"probe {task.name!r}: the {task.cache!r} cache has no target {target!r}; it has {names}")
    transform = task.transform
    if transform == "auto":
        transform = "semitone" if target == "pitch" else "argmax"
    if transform == "class":
        raise ConfigError(f"probe {task.name!r}: transform class needs a metadata label source")
    from coat.targets import cut_targets

    specs = {s.name: s for s in cache.specs}
    labels = []
    for id_ in ids:
        if id_ not in cache:
            labels.append(None)
            continue
        targets = cache[id_]
        if heard_seconds is not None:
            targets = cut_targets(targets, specs, heard_seconds, cache.num_samples(id_) / cache.specs[0].sample_rate)
        labels.append(None if targets[target] is None else _cached_label(targets, target, transform))
    return labels


def score_probes(tasks: list[ProbeTask], labels: dict[str, list], thinking_states: dict[str, torch.Tensor],
                 layers: dict[str, int], base_states: torch.Tensor, settings: ProbeTraining) -> dict[str, Any]:
    """Every probe task on every adapter's thinking states ``(examples, hidden)`` and on the base's states
    ``(examples, layers, hidden)`` at the layer each adapter reads; the examples without a label are left out of
    that task only, and a task with fewer than 4 labelled examples or 2 classes is skipped, saying so."""
    probes = {}
    for task in tasks:
        keep = [i for i, label in enumerate(labels[task.name]) if label is not None]
        y = np.array([labels[task.name][i] for i in keep], dtype=object)
        result: dict[str, Any] = {"n_examples": len(keep), "classes": sorted({str(v) for v in y})}
        if len(keep) < 4 or len(set(y.tolist())) < 2:
            result["skipped"] = "needs at least 4 labelled examples and 2 classes"
            probes[task.name] = result
            continue
        train, test = split_indices(len(keep), settings.train_fraction, settings.seed)
        result.update(n_train=len(train), n_test=len(test), base={}, thinking={})
        for name, states in thinking_states.items():
            layer = layers[name]
            scored = probe_accuracy(states[keep], y, train, test, settings)
            result["thinking"][name] = {"layer": layer, "accuracy": scored["accuracy"]}
            if str(layer) not in result["base"]:
                base_scored = probe_accuracy(base_states[keep, layer], y, train, test, settings)
                result["base"][str(layer)] = base_scored["accuracy"]
            result["chance"] = scored["chance"]
        probes[task.name] = result
    return probes


def probes_markdown(results: dict[str, Any]) -> str:
    """analysis.md: one row per probe task (held-out accuracy of the base at each layer an adapter reads, and of
    each adapter's thinking states, next to chance); a skipped task says why."""
    probes = results["probes"]
    layers = list(dict.fromkeys(layer for r in probes.values() for layer in r.get("base", {})))
    adapters = list(dict.fromkeys(name for r in probes.values() for name in r.get("thinking", {})))
    header = ["probe", "examples (train / test)", "classes", "chance", *(f"base, layer {layer}" for layer in layers),
              *(f"{name} thinking" for name in adapters)]
    rows = []
    for task, r in probes.items():
        classes = len(r["classes"])
        if "skipped" in r:
            rows.append([task, r["n_examples"], classes, r["skipped"], *[""] * (len(layers) + len(adapters))])
            continue
        rows.append([task, f"{r['n_examples']} ({r['n_train']} / {r['n_test']})", classes, f"{r['chance']:.3f}",
                     *(f"{r['base'][layer]:.3f}" if layer in r["base"] else "" for layer in layers),
                     *(f"{r['thinking'][n]['accuracy']:.3f}" if n in r["thinking"] else "" for n in adapters)])
    return (f"# coat analyze: linear probes ({results['n_examples']} examples)\n\n"
            "Held-out accuracy of a linear probe on the thinking states (mean over the K positions) and on the base "
            "model's state at the last audio position, from the same layer; chance: always the train split's "
            "majority class.\n\n" + markdown_table(header, rows))
