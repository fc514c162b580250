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

A probe's ``where`` keeps only the examples whose metadata fields have the given values (``{category:
speech_pitch}`` probes that category's answer, high or low voice), and ``shuffle: true`` permutes its labels among
the labelled examples: a control that no state can carry, which should score chance.

Outputs in ``output_dir``: ``analysis.json`` (per-layer shares, probe accuracies and chance levels, counts),
``analysis.md`` (the probe table), ``attention_share.png`` and ``probes.png``.

The package: this file (the config and :func:`run_analysis`), ``attention.py`` (a), ``probes.py`` (b) and
``plots.py`` (the two figures).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from coat.analysis.attention import answer_queries, attention_share, encode_example, run_base, run_coat
from coat.analysis.plots import plot_attention_share, plot_probes
from coat.analysis.probes import (
    ProbeTask,
    ProbeTraining,
    hz_to_pitch_class,
    probe_accuracy,
    probes_markdown,
    resolve_labels,
    score_probes,
    split_indices,
    train_probe,
)
from coat.config import CoATConfig
from coat.config_io import ConfigError, to_dict
from coat.data.config import DataConfig
from coat.experts.config import TargetsConfig
from coat.files import write_atomic
from coat.loading import ModelConfig

__all__ = ["AdapterSpec", "AnalyzeConfig", "ProbeTask", "ProbeTraining", "answer_queries", "attention_share",
           "hz_to_pitch_class", "probe_accuracy", "probes_markdown", "resolve_labels", "run_analysis", "split_indices",
           "train_probe"]


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
    seed = config.probe_training.seed
    # errors before the model
    labels = {t.name: resolve_labels(t, ids, metadata, cache_dir, seed=seed) for t in config.probes}

    base, processor = load_model_and_processor(config.model)
    window = audio_window(processor)
    if window is not None:  # cached labels describe the audio the model receives (a long clip is cut to it)
        heard = window / processor.feature_extractor.sampling_rate
        labels.update({t.name: resolve_labels(t, ids, metadata, cache_dir, heard, seed)
                       for t in config.probes if t.cache is not None})
    base = base.to(config.device).eval()
    adapter = get_adapter(base)
    text_model = adapter.text_model(base)
    sr = processor.feature_extractor.sampling_rate
    encoded = [encode_example(processor, source.load(i, sr).audio, *prompt_and_answer(metadata[i], config))
               for i in range(len(source))]
    answers = "reference" if all(n for _, n in encoded) else "reference or generated by base" if any(
        n for _, n in encoded) else "generated by base"

    base_shares, base_states, encoded = run_base(text_model, adapter.decoder_layers(text_model),
                                                 adapter.audio_token_id(base.config), encoded, config.device,
                                                 config.generate_tokens, config.progress)
    num_layers = base_states.shape[1]
    shares = {"base": {"audio": base_shares.mean(0).tolist()}}
    thinking_states, layers = {}, {}
    for spec in config.adapters:
        model = _wrap(base, spec)
        if model.num_thinking == 0:
            model.unwrap()
            raise ConfigError(f"adapter {spec.name!r} has num_thinking 0: no thinking positions to analyse")
        try:
            think, audio, states = run_coat(model, encoded, spec.name, config.device, config.progress)
        finally:
            model.unwrap()
        shares[spec.name] = {"thinking": think.mean(0).tolist(), "audio": audio.mean(0).tolist()}
        thinking_states[spec.name] = states
        layers[spec.name] = model.config.thinking_layer % num_layers

    results = {
        "n_examples": len(encoded),
        "n_answer_tokens": int(sum(n for _, n in encoded)),
        "answers": answers,
        "num_layers": num_layers,
        "attention_share": shares,
        "probes": score_probes(config.probes, labels, thinking_states, layers, base_states, config.probe_training),
        "config": to_dict(config),
    }
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "analysis.json", json.dumps(results, indent=2) + "\n")
    write_atomic(out / "analysis.md", probes_markdown(results))
    plot_attention_share(results, out / "attention_share.png")
    plot_probes(results, out / "probes.png")
    return results
