"""Where does attention go, and what do the thinking states know? ``coat analyze`` as a library.

For one base LALM and one or more CoAT adapters on a set of audio examples (one audio each, with a prompt):

**(a) Attention share.** For every decoder layer: the attention mass that the *answer queries* give to a set of
key positions, averaged over heads, then over the answer queries of an example, then over examples. The answer
queries are the positions whose next-token prediction is an answer token: the last prompt position (it predicts
the first answer token) through the second-to-last answer token, exactly the queries that produce the answer in
``generate()``. Every model is run teacher-forced on the *same* answer tokens, so the comparison is one of
attention patterns alone, never of different texts: the data's reference answer (``data.answer_column``) where
the example has one, else the base model's greedy continuation (``generate_tokens`` tokens), shared by all models.

What "base vs CoAT" compares:

- ``base / audio``: the base model (the same weights, not wrapped) on the prompt: share to the audio span
  (the positions holding the audio placeholder id, where the audio features are merged);
- ``<adapter> / audio``: the same base weights wrapped with the adapter, on the same prompt and answer: share to
  the same audio positions (shifted by the inserted block);
- ``<adapter> / thinking``: share to the adapter's K thinking positions.

So the plot shows how much of the answer's attention the thinking block takes, and whether it takes it from the
audio span (audio share drops) or from the text.

**(b) Linear probes.** Per probe task (an expert attribute: pitch class, emotion, top sound event, phoneme, a
metadata column...): a multinomial logistic regression trained with torch (full batch, Adam, L2 penalty, fixed
epochs, standardised features) on a seeded train split of the examples and scored on the held-out rest. Features:

- ``<adapter>``: the mean over the K thinking states of the audio span, from the adapter's ``thinking_layer``;
- ``base``: the base model's hidden state at the last audio placeholder position, from the same layer (the
  output of that decoder layer, as the thinking hook sees it), i.e. what the base model knows where the
  thinking block would start.

Chance level = accuracy on the test split of always answering the train split's majority class. Labels come
from a metadata column of the data (``metadata: f0_hz``) or from a target cache (``cache: pitch``), turned into
classes by ``transform``: ``class`` (the value itself), ``semitone`` (Hz, or the median Hz of a CREPE
distribution over its voiced frames, voicing >= 0.5, to one of 12 pitch classes), ``argmax`` (mean over frames
of a posterior, then its top class). A missing column, cache or target is an error naming the probe; examples
whose label is missing (None, not in the cache, no voiced frame) are left out of that probe only.

Outputs in ``output_dir``: ``analysis.json`` (per-layer shares, probe accuracies and chance levels, counts),
``attention_share.png`` and ``probes.png``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from coat.config import CoATConfig
from coat.config_io import ConfigError, to_dict
from coat.data.config import DataConfig
from coat.experts.config import TargetsConfig
from coat.files import write_atomic
from coat.loading import ModelConfig

TRANSFORMS = ("auto", "class", "semitone", "argmax")
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


# ---------------------------------------------------------------------------------------------------------
# config


@dataclass
class AdapterSpec:
    """One CoAT adapter to analyse: a folder saved by ``CoATModel.save_pretrained``, or a fresh one from a config."""

    name: str = field(default="", metadata={"help": "label in analysis.json and the plots"})
    path: str | None = field(default=None, metadata={"help": "folder with coat_config.json + coat_model.safetensors"})
    config: dict[str, Any] | None = field(
        default=None, metadata={"help": "CoATConfig fields of an untrained adapter (smoke test, control)"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the untrained adapter's thinking table"})

    def __post_init__(self):
        if not self.name:
            raise ValueError("each adapter needs a name")
        if self.name == "base":
            raise ValueError("'base' names the unwrapped base model; give the adapter another name")
        if (self.path is None) == (self.config is None):
            raise ValueError(f"adapter {self.name!r}: give exactly one of path (a saved adapter) or config")
        if self.config is not None:
            CoATConfig(**self.config)  # a bad field is an error now, not after the base pass


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


@dataclass
class AnalyzeConfig:
    """What ``coat analyze`` runs. See the module docstring for what is compared."""

    model: ModelConfig | None = field(default=None, metadata={"help": "the base LALM (attention: eager)"})
    adapters: list[AdapterSpec] = field(default_factory=list, metadata={"help": "CoAT adapters to analyse"})
    data: DataConfig | None = field(default=None, metadata={"help": "the examples (their reference answers are "
                                                             "teacher-forced; answer_column null: generated)"})
    prompt: str = field(default="Describe the audio.", metadata={"help": "the text of an example without a question"})
    probes: list[ProbeTask] = field(default_factory=list, metadata={"help": "probe tasks and their label sources"})
    probe_training: ProbeTraining = field(default_factory=ProbeTraining, metadata={"help": "probe settings"})
    targets: TargetsConfig = field(default_factory=TargetsConfig, metadata={
        "help": "the target caches (the section of coat train and coat targets): cache_dir holds the caches of "
                "cache: probes, and synthetic data without a source.path"})
    generate_tokens: int = field(default=8, metadata={"help": "answer tokens generated where there is no answer"})
    max_examples: int | None = field(default=None, metadata={"help": "analyse only the first N examples"})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda, cuda:1..."})
    output_dir: str = field(default="runs/analysis", metadata={"help": "where analysis.json and the plots go"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def __post_init__(self):
        if self.model is None or self.data is None:
            raise ValueError("model: {name_or_path: ...} and data: {...} are required")
        if self.model.attn_implementation is None:
            self.model.attn_implementation = "eager"  # the only implementation that returns attention weights
        if self.model.attn_implementation != "eager":
            raise ValueError(f"model.attn_implementation must be eager (attention weights are read), got "
                             f"{self.model.attn_implementation!r}")
        if not self.adapters:
            raise ValueError("adapters must list at least one CoAT adapter ({name, path} or {name, config})")
        names = [a.name for a in self.adapters]
        if len(set(names)) != len(names):
            raise ValueError(f"adapter names must be unique, got {names}")
        probes = [p.name for p in self.probes]
        if len(set(probes)) != len(probes):
            raise ValueError(f"probe names must be unique, got {probes}")
        if self.generate_tokens < 1:
            raise ValueError(f"generate_tokens must be >= 1, got {self.generate_tokens}")


# ---------------------------------------------------------------------------------------------------------
# attention share


def attention_share(attentions, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """(layers,) attention mass from ``queries`` to ``keys``, averaged over heads and queries.

    attentions: per layer (1, heads, seq, seq) softmax weights (``output_attentions=True``);
    queries: (n_q,) positions; keys: (seq,) bool.
    """
    shares = []
    for layer in attentions:
        rows = layer[0].float()[:, queries]  # (heads, n_q, seq)
        shares.append(rows[..., keys.to(rows.device)].sum(-1).mean())
    return torch.stack(shares).cpu()


def answer_queries(seq_len: int, num_answer: int) -> torch.Tensor:
    """(num_answer,) the positions that predict the last ``num_answer`` tokens of an unpadded sequence."""
    return torch.arange(seq_len - num_answer - 1, seq_len - 1)


# ---------------------------------------------------------------------------------------------------------
# probes


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


# ---------------------------------------------------------------------------------------------------------
# labels


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
                   heard_seconds: float | None = None) -> list:
    """One label per example (None where it has none). A missing label source is a ConfigError naming the probe.

    ``heard_seconds``: the most audio the model receives (:func:`coat.data.collate.audio_window`); cached targets
    are cut to it first (:func:`coat.targets.cut_targets`), so a label describes the audio the states saw."""
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


# ---------------------------------------------------------------------------------------------------------
# examples


def open_examples(config: AnalyzeConfig):
    """The :class:`AudioSource` of ``config.data`` (its first ``max_examples``)."""
    from coat.data.config import open_data
    from coat.data.sources import SubsetSource

    try:
        source = open_data(config.data, config.targets.cache_dir)
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(str(err)) from err
    if config.max_examples is not None and config.max_examples < len(source):
        source = SubsetSource(source, range(config.max_examples))
    return source


def prompt_and_answer(meta: dict[str, Any], config: AnalyzeConfig) -> tuple[str, str | None]:
    """(user text, reference answer or None) of one example, in the shared prompt format."""
    text, answer = config.data.texts(meta)
    return text or config.prompt, answer


def encode_example(processor, audio: np.ndarray, text: str, answer: str | None) -> tuple[dict, int]:
    """Processor outputs for the prompt followed by the answer, and the number of answer tokens (0: no answer)."""
    from coat.data.prompts import prompt_text

    sr = processor.feature_extractor.sampling_rate
    prompt = prompt_text(processor, text)
    inputs = processor(text=[prompt], audio=[audio], sampling_rate=sr, return_tensors="pt")
    if answer is None:
        return dict(inputs), 0
    full = processor(text=[prompt + answer], audio=[audio], sampling_rate=sr, return_tensors="pt")
    n_prompt, ids = inputs["input_ids"].shape[1], full["input_ids"]
    if ids.shape[1] <= n_prompt or not torch.equal(ids[0, :n_prompt], inputs["input_ids"][0]):
        raise ValueError(f"the answer {answer!r} does not tokenize as a continuation of its prompt")
    return dict(full), ids.shape[1] - n_prompt


# ---------------------------------------------------------------------------------------------------------
# running the models


class _LayerRecorder:
    """Forward hooks on every decoder layer: each layer's output at one position per forward."""

    def __init__(self, layers: nn.ModuleList):
        self.position: int | None = None
        self.states: list[torch.Tensor | None] = [None] * len(layers)
        self._hooks = [layer.register_forward_hook(self._hook(i)) for i, layer in enumerate(layers)]

    def _hook(self, index: int):
        def hook(module, args, output):
            if self.position is not None:
                hidden = output[0] if isinstance(output, tuple) else output
                self.states[index] = hidden[0, self.position].detach().float().cpu()
        return hook

    def remove(self):
        for hook in self._hooks:
            hook.remove()


def _to(inputs: dict, device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


def _progress(iterable, enabled: bool, desc: str):
    from coat.progress import progress_bar

    return progress_bar(iterable, desc=desc, unit="example", enabled=enabled)


@torch.no_grad()
def run_base(text_model, layers: nn.ModuleList, audio_id: int, encoded: list[tuple[dict, int]],
             config: AnalyzeConfig):
    """The unwrapped base: generates answers where there are none, then per example the audio attention share
    (layers,) and every decoder layer's output at the last audio position (layers, hidden)."""
    recorder = _LayerRecorder(layers)
    shares, states, done = [], [], []
    try:
        for inputs, n_answer in _progress(encoded, config.progress, "base"):
            inputs = _to(inputs, config.device)
            if n_answer == 0:
                out = text_model.generate(**inputs, max_new_tokens=config.generate_tokens, do_sample=False)
                new = out[:, inputs["input_ids"].shape[1]:]
                inputs["input_ids"] = torch.cat([inputs["input_ids"], new], 1)
                inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
                n_answer = new.shape[1]
            ids = inputs["input_ids"][0]
            audio = ids == audio_id
            if not bool(audio.any()):
                raise ValueError("an example's prompt has no audio placeholder; check the processor and data")
            recorder.position = int(audio.nonzero()[-1])
            out = text_model(**inputs, output_attentions=True)
            recorder.position = None
            shares.append(attention_share(out.attentions, answer_queries(len(ids), n_answer), audio))
            states.append(torch.stack(recorder.states))
            done.append(({k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}, n_answer))
    finally:
        recorder.remove()
    return torch.stack(shares), torch.stack(states), done


@torch.no_grad()
def run_coat(model, encoded: list[tuple[dict, int]], config: AnalyzeConfig, name: str):
    """A wrapped model, teacher-forced on the same answers: per example the thinking and audio shares (layers,)
    and the mean thinking state of the (first) audio span (hidden,)."""
    thinking, audio, states = [], [], []
    k = model.num_thinking
    for inputs, n_answer in _progress(encoded, config.progress, name):
        out = model(**_to(inputs, config.device), output_attentions=True)
        ids = model.insert_thinking(inputs["input_ids"].to(config.device)).input_ids[0]
        queries = answer_queries(len(ids), n_answer)
        thinking.append(attention_share(out.attentions, queries, ids >= model.thinking_embedding.offset))
        audio.append(attention_share(out.attentions, queries, ids == model.audio_token_id))
        states.append(out.thinking_states[0, :k].float().mean(0).cpu())
    return torch.stack(thinking), torch.stack(audio), torch.stack(states)


def _wrap(base, spec: AdapterSpec):
    from coat.model import CoATModel, wrap

    if spec.path is not None:
        try:
            return CoATModel.from_pretrained(base, spec.path)
        except FileNotFoundError as err:
            raise ConfigError(f"adapter {spec.name!r}: {err}") from err
    torch.manual_seed(spec.seed)
    return wrap(base, CoATConfig(**spec.config))


def run_analysis(config: AnalyzeConfig) -> dict[str, Any]:
    """Run everything ``config`` asks for, write ``analysis.json`` and the plots, and return the results."""
    from coat.adapters import get_adapter
    from coat.data.collate import audio_window
    from coat.loading import load_model_and_processor

    source = open_examples(config)
    ids = source.ids()
    metadata = [source.metadata(i) for i in range(len(source))]
    cache_dir = config.targets.cache_dir
    labels = {t.name: resolve_labels(t, ids, metadata, cache_dir) for t in config.probes}  # errors before the model

    base, processor = load_model_and_processor(config.model)
    window = audio_window(processor)
    if window is not None:  # cached labels describe the audio the model receives (a long clip is cut to it)
        heard = window / processor.feature_extractor.sampling_rate
        labels.update({t.name: resolve_labels(t, ids, metadata, cache_dir, heard)
                       for t in config.probes if t.cache is not None})
    base = base.to(config.device).eval()
    adapter = get_adapter(base)
    text_model = adapter.text_model(base)
    sr = processor.feature_extractor.sampling_rate
    encoded = []
    for i in range(len(source)):
        text, answer = prompt_and_answer(metadata[i], config)
        encoded.append(encode_example(processor, source.load(i, sr).audio, text, answer))
    answers = "reference" if all(n for _, n in encoded) else "reference or generated by base" if any(
        n for _, n in encoded) else "generated by base"

    base_shares, base_states, encoded = run_base(text_model, adapter.decoder_layers(text_model),
                                                 adapter.audio_token_id(base.config), encoded, config)
    num_layers = base_states.shape[1]
    shares = {"base": {"audio": base_shares.mean(0).tolist()}}
    thinking_states, layers = {}, {}
    for spec in config.adapters:
        model = _wrap(base, spec)
        if model.num_thinking == 0:
            model.unwrap()
            raise ConfigError(f"adapter {spec.name!r} has num_thinking 0: no thinking positions to analyse")
        try:
            think, audio, states = run_coat(model, encoded, config, spec.name)
        finally:
            model.unwrap()
        shares[spec.name] = {"thinking": think.mean(0).tolist(), "audio": audio.mean(0).tolist()}
        thinking_states[spec.name] = states
        layers[spec.name] = model.config.thinking_layer % num_layers

    probes = {}
    for task in config.probes:
        keep = [i for i, label in enumerate(labels[task.name]) if label is not None]
        y = np.array([labels[task.name][i] for i in keep], dtype=object)
        result: dict[str, Any] = {"n_examples": len(keep), "classes": sorted({str(v) for v in y})}
        if len(keep) < 4 or len(set(y.tolist())) < 2:
            result["skipped"] = "needs at least 4 labelled examples and 2 classes"
            probes[task.name] = result
            continue
        train, test = split_indices(len(keep), config.probe_training.train_fraction, config.probe_training.seed)
        result.update(n_train=len(train), n_test=len(test), base={}, thinking={})
        for name, states in thinking_states.items():
            layer = layers[name]
            scored = probe_accuracy(states[keep], y, train, test, config.probe_training)
            result["thinking"][name] = {"layer": layer, "accuracy": scored["accuracy"]}
            if str(layer) not in result["base"]:
                base_scored = probe_accuracy(base_states[keep, layer], y, train, test, config.probe_training)
                result["base"][str(layer)] = base_scored["accuracy"]
            result["chance"] = scored["chance"]
        probes[task.name] = result

    results = {
        "n_examples": len(encoded),
        "n_answer_tokens": int(sum(n for _, n in encoded)),
        "answers": answers,
        "num_layers": num_layers,
        "attention_share": shares,
        "probes": probes,
        "config": to_dict(config),
    }
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "analysis.json", json.dumps(results, indent=2) + "\n")
    plot_attention_share(results, out / "attention_share.png")
    plot_probes(results, out / "probes.png")
    return results


# ---------------------------------------------------------------------------------------------------------
# plots


def plot_attention_share(results: dict[str, Any], path: str | Path) -> None:
    """Share per layer: base to audio (black), each adapter to audio (solid) and to thinking (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    layers = np.arange(results["num_layers"])
    ax.plot(layers, results["attention_share"]["base"]["audio"], "k-o", label="base: audio")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    adapters = [n for n in results["attention_share"] if n != "base"]
    for color, name in zip(colors * (len(adapters) // len(colors) + 1), adapters):
        share = results["attention_share"][name]
        ax.plot(layers, share["audio"], "-s", color=color, label=f"{name}: audio")
        ax.plot(layers, share["thinking"], "--^", color=color, label=f"{name}: thinking")
    ax.set(xlabel="decoder layer", ylabel="share of answer-query attention", ylim=(0, 1), xticks=layers,
           title=f"Where the answer attends ({results['n_examples']} examples)")
    ax.title.set_fontsize(10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_probes(results: dict[str, Any], path: str | Path) -> None:
    """Grouped bars per probe task: base (per layer) and each adapter's thinking states; chance as a tick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t, r in results["probes"].items() if "skipped" not in r]
    series: list[str] = []
    for t in tasks:
        series += [f"base (layer {layer})" for layer in results["probes"][t]["base"]]
        series += [f"{name} thinking" for name in results["probes"][t]["thinking"]]
    series = list(dict.fromkeys(series))
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(tasks) + 2), 4))
    width = 0.8 / max(len(series), 1)
    for j, label in enumerate(series):
        values = []
        for t in tasks:
            r = results["probes"][t]
            if label.startswith("base (layer "):
                values.append(r["base"].get(label[len("base (layer "):-1], np.nan))
            else:
                values.append(r["thinking"].get(label[: -len(" thinking")], {}).get("accuracy", np.nan))
        ax.bar(np.arange(len(tasks)) + (j - (len(series) - 1) / 2) * width, values, width, label=label)
    for x, t in enumerate(tasks):
        ax.hlines(results["probes"][t]["chance"], x - 0.45, x + 0.45, colors="k", linestyles=":",
                  label="chance (majority)" if x == 0 else None)
    ax.set(xticks=np.arange(len(tasks)), ylabel="held-out accuracy", ylim=(0, 1.05),
           title="Linear probes: thinking states vs base at the last audio position")
    ax.title.set_fontsize(10)
    ax.set_xticklabels(tasks)
    if tasks:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
