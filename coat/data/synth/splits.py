"""The synthetic benchmark's settings and splits: :class:`SynthConfig`, examples built from a seed
(:func:`make_example`, :func:`generate_split`) and their exports (a ``datasets.Dataset``, or wavs + a JSONL
manifest). The categories are in coat/data/synth/categories.py."""

from __future__ import annotations

import functools
import json
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coat.data.prompts import LETTERS
from coat.data.synth.categories import CATEGORIES, category_groups, min_beep_span, note_to_hz

SPLITS = ("train", "validation", "test")
# Bumped whenever the same SynthConfig would generate different examples (audio, texts): cached exports of an
# older generator are keyed apart (SynthConfig.digest).
GENERATOR_VERSION = 2


@dataclass
class SynthConfig:
    """What to generate. Sizes are examples per split, shared evenly between the categories."""

    seed: int = field(default=0, metadata={"help": "base seed; the splits derive disjoint seeds from it"})
    train_size: int = field(default=3000, metadata={"help": "examples in the train split"})
    validation_size: int = field(default=300, metadata={"help": "examples in the validation split"})
    test_size: int = field(default=600, metadata={"help": "examples in the test split"})
    categories: tuple[str, ...] = field(
        default=("note", "contour", "loudness", "sound_type", "vowel", "count"),
        metadata={"help": "question categories, names registered in coat.data.synth.CATEGORIES, or their groups: "
                          "`tones` (note, contour, loudness, sound_type, vowel, count) and `speech` (speech_pitch, "
                          "speech_rate, speech_voice, speech_word, speech_count, speech_rise: espeak-ng, the "
                          "`speech` extra), e.g. [tones, speech]"},
    )
    sample_rate: int = field(default=16000, metadata={"help": "sample rate of the clips in Hz"})
    min_seconds: float = field(default=1.0, metadata={"help": "shortest clip; each clip draws its length"})
    max_seconds: float = field(default=2.0, metadata={"help": "longest clip"})
    num_choices: int = field(default=4, metadata={"help": "choices per question (fewer if a category has fewer)"})
    notes: tuple[str, ...] = field(
        default=("C4", "D4", "E4", "F4", "G4", "A4", "B4", "C5"),
        metadata={"help": "note names of the `note` category (scientific pitch notation, A4 = 440 Hz)"},
    )
    max_beeps: int = field(default=5, metadata={"help": "the `count` category asks for 1..max_beeps beeps"})
    peak_db: tuple[float, float] = field(
        default=(-20.0, -1.0), metadata={"help": "range of the clip peak level in dBFS (drawn per clip)"}
    )
    snr_db: tuple[float, float] | None = field(
        default=(30.0, 50.0),
        metadata={"help": "range of the signal-to-noise ratio of a white noise floor in dB; None: no noise"},
    )

    def __post_init__(self):
        # YAML gives lists; keep tuples so configs compare and hash the same either way.
        if isinstance(self.categories, str):
            self.categories = (self.categories,)
        groups = category_groups()
        # a group and one of its names: each category once
        self.categories = tuple(dict.fromkeys(c for name in self.categories for c in groups.get(name, (name,))))
        self.notes = tuple(self.notes)
        self.peak_db = tuple(float(x) for x in self.peak_db)
        if self.snr_db is not None:
            self.snr_db = tuple(float(x) for x in self.snr_db)
        unknown = [c for c in self.categories if c not in CATEGORIES]
        if unknown:
            raise ValueError(f"unknown synth categories {unknown}; registered: {sorted(CATEGORIES)}, groups: "
                             f"{sorted(groups)}")
        if not self.categories:
            raise ValueError("categories must not be empty")
        if min(self.train_size, self.validation_size, self.test_size) < 0:
            raise ValueError("split sizes must be >= 0")
        if self.sample_rate < 8000:
            raise ValueError(f"sample_rate must be >= 8000 Hz, got {self.sample_rate}")
        if not 0.5 <= self.min_seconds <= self.max_seconds:
            raise ValueError(f"need 0.5 <= min_seconds <= max_seconds, got {self.min_seconds}, {self.max_seconds}")
        if self.num_choices < 2:
            raise ValueError(f"num_choices must be >= 2, got {self.num_choices}")
        if len(set(self.notes)) < 2:
            raise ValueError("notes needs at least two distinct note names")
        for name in self.notes:
            note_to_hz(name)  # raises on a bad name
        if not 2 <= self.max_beeps <= 9:
            raise ValueError(f"max_beeps must be in 2..9, got {self.max_beeps}")
        if min_beep_span(self.max_beeps) > 0.9 * self.min_seconds:
            raise ValueError(f"{self.max_beeps} beeps do not fit in min_seconds={self.min_seconds}")
        if len(self.peak_db) != 2 or not self.peak_db[0] <= self.peak_db[1] <= 0:
            raise ValueError(f"peak_db must be (low, high) with low <= high <= 0, got {self.peak_db}")
        if self.snr_db is not None and (len(self.snr_db) != 2 or self.snr_db[0] > self.snr_db[1]):
            raise ValueError(f"snr_db must be (low, high) or None, got {self.snr_db}")
        self.synthesizers()  # a missing outside synthesizer (the speech extra) stops here, saying what to install

    def synthesizers(self) -> tuple[str, ...]:
        """The versions of the outside synthesizers the selected categories use (espeak-ng for speech), once each."""
        used = dict.fromkeys(CATEGORIES[c].synthesizer for c in self.categories if CATEGORIES[c].synthesizer)
        return tuple(version() for version in used)

    def digest(self) -> str:
        """A short hash of these settings, the generator version and any outside synthesizer's (espeak-ng's, when
        there is speech): the folder key of cached exports."""
        from coat.files import config_digest

        return config_digest(self, GENERATOR_VERSION, *self.synthesizers())

    def split_size(self, split: str) -> int:
        sizes = {"train": self.train_size, "validation": self.validation_size, "test": self.test_size}
        if split not in sizes:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return sizes[split]


# ---------------------------------------------------------------------------------------------------------
# splits


def _key(name: str) -> int:
    return zlib.crc32(name.encode())


@functools.lru_cache(maxsize=64)
def _balanced(seed: tuple[int, ...], classes: int, count: int) -> np.ndarray:
    """``count`` class indices, each class equally often (+-1), in shuffled blocks of all classes.

    Cached: every example of a category needs its own entry, and recomputing would make a split quadratic.
    """
    rng = np.random.default_rng(list(seed))
    blocks = -(-count // classes)
    order = np.concatenate([rng.permutation(classes) for _ in range(blocks)])[:count] if count else np.zeros(0, int)
    order.flags.writeable = False
    return order


def _category_sizes(config: SynthConfig, split: str) -> dict[str, int]:
    total, cats = config.split_size(split), config.categories
    return {c: total // len(cats) + (i < total % len(cats)) for i, c in enumerate(cats)}


def make_example(config: SynthConfig, split: str, category: str, index: int) -> dict[str, Any]:
    """Example ``index`` of ``category`` in ``split``: depends on nothing else, so it can be built alone."""
    cat = CATEGORIES[category]
    answers = cat.answers(config)
    num_choices = min(config.num_choices, len(answers))
    count = _category_sizes(config, split)[category]
    if not 0 <= index < count:
        raise IndexError(f"{split}/{category} has {count} examples, asked for {index}")
    base = [config.seed, _key(split), _key(category)]
    # balanced answers and answer positions: drawn for the whole category, from their own streams
    label = int(_balanced((*base, 0), len(answers), count)[index])
    position = int(_balanced((*base, 1), num_choices, count)[index])
    rng = np.random.default_rng([*base, 2, index])

    sr = config.sample_rate
    n = int(round(rng.uniform(config.min_seconds, config.max_seconds) * sr))
    signal, params, caption = cat.synthesize(rng, answers[label], config, n)
    signal = np.asarray(signal, dtype=np.float64)
    n = len(signal)  # a tone clip is the n samples drawn; speech is as long as it is spoken
    if config.snr_db is not None:
        snr = rng.uniform(*config.snr_db)
        rms = np.sqrt(np.mean(signal**2)) + 1e-12
        signal = signal + rng.standard_normal(n) * rms * 10 ** (-snr / 20)
        params["snr_db"] = float(snr)
    peak = rng.uniform(*config.peak_db)
    audio = (signal * 10 ** (peak / 20) / (np.max(np.abs(signal)) + 1e-12)).astype(np.float32)
    params["peak_db"] = float(peak)

    others = [a for i, a in enumerate(answers) if i != label]
    distractors = [others[i] for i in rng.choice(len(others), num_choices - 1, replace=False)]
    choices = distractors[:position] + [answers[label]] + distractors[position:]
    return {
        "id": f"{split}-{category}-{index:05d}",
        "split": split,
        "category": category,
        "audio": audio,
        "sampling_rate": sr,
        "duration_s": n / sr,
        "question": str(rng.choice(list(cat.questions))),
        "choices": choices,
        "answer": answers[label],
        "answer_letter": LETTERS[position],
        "answer_index": position,
        "caption": caption,
        **params,
    }


def iter_split(config: SynthConfig, split: str) -> Iterator[dict[str, Any]]:
    """The examples of ``split``, categories interleaved (note 0, contour 0, ..., note 1, ...)."""
    sizes = _category_sizes(config, split)
    for index in range(max(sizes.values(), default=0)):
        for category in config.categories:
            if index < sizes[category]:
                yield make_example(config, split, category, index)


def generate_split(config: SynthConfig, split: str) -> list[dict[str, Any]]:
    return list(iter_split(config, split))


# ---------------------------------------------------------------------------------------------------------
# export


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def to_dataset(examples: Iterable[dict[str, Any]]):
    """A ``datasets.Dataset`` of the examples: ``audio`` becomes ``{"array", "sampling_rate"}`` (float32).

    Columns are the union of all examples' keys (a parameter a category lacks is None). The audio column is
    a plain struct, not ``datasets.Audio``, so nothing needs an audio decoder; ``audio["array"]`` is what a
    feature extractor takes.
    """
    import datasets

    examples = list(examples)
    keys: list[str] = []
    for ex in examples:
        keys += [k for k in ex if k not in keys and k not in ("audio", "sampling_rate")]
    columns: dict[str, list] = {k: [_jsonable(ex.get(k)) for ex in examples] for k in keys}
    columns["audio"] = [{"array": ex["audio"], "sampling_rate": ex["sampling_rate"]} for ex in examples]
    features = {}
    if examples:
        inferred = datasets.Dataset.from_dict({k: v for k, v in columns.items() if k != "audio"}).features
        features = dict(inferred)
    list_of = getattr(datasets, "List", None) or datasets.Sequence  # datasets < 4 has only Sequence
    features["audio"] = {"array": list_of(datasets.Value("float32")), "sampling_rate": datasets.Value("int32")}
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def write_split_if_missing(manifest: str | os.PathLike, config: SynthConfig, split: str) -> bool:
    """Write ``split`` of ``config`` as wavs + a JSONL manifest at ``manifest`` (a ``.jsonl`` path) unless that file
    exists. Returns whether it wrote. How a config's own example data comes to exist on first use."""
    manifest = Path(manifest)
    if manifest.exists():
        return False
    if manifest.suffix != ".jsonl":
        raise ValueError(f"{str(manifest)!r} does not exist; the synthetic data is written as a .jsonl manifest, so "
                         "give a path ending in .jsonl to have it written there, or an existing source")
    write_manifest(generate_split(config, split), manifest.parent, manifest_name=manifest.name)
    return True


def write_manifest(
    examples: Iterable[dict[str, Any]],
    out_dir: str | os.PathLike,
    subtype: str = "FLOAT",
    manifest_name: str = "manifest.jsonl",
) -> Path:
    """Write each clip to ``out_dir/audio/<id>.wav`` and one JSON line per example to ``out_dir/<manifest_name>``.

    A line holds every field but the waveform, with ``audio`` the wav path relative to ``out_dir``: the
    MMAU-style format the evaluation reads. ``subtype`` is a soundfile WAV subtype: ``FLOAT`` keeps the
    samples exactly, ``PCM_16`` quantises them. Files appear atomically (temp file, then ``os.replace``).
    Returns the manifest path.
    """
    import soundfile as sf

    out_dir = Path(out_dir)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    manifest = out_dir / manifest_name
    tmp_manifest = manifest.with_name(f".{manifest.name}.{os.getpid()}.tmp")
    with open(tmp_manifest, "w") as f:
        for ex in examples:
            rel = f"audio/{ex['id']}.wav"
            tmp = out_dir / f"audio/.{ex['id']}.{os.getpid()}.tmp"
            sf.write(tmp, ex["audio"], ex["sampling_rate"], subtype=subtype, format="WAV")
            os.replace(tmp, out_dir / rel)
            row = {k: _jsonable(v) for k, v in ex.items() if k != "audio"}
            row["audio"] = rel
            f.write(json.dumps(row) + "\n")
    os.replace(tmp_manifest, manifest)
    return manifest


def synth_words() -> list[str]:
    """Every word of the benchmark's questions, choices, answers and captions, and of the answer formats (a fixed
    list, in a fixed order: the vocabulary of the word-level tokenizer of the tiny test model and the demo's)."""
    config = SynthConfig(train_size=240, validation_size=0, test_size=0)
    words: dict[str, None] = {}
    for example in generate_split(config, "train"):
        for text in (example["question"], example["caption"], *example["choices"]):
            words.update(dict.fromkeys(text.split()))
    letters = [chr(ord("A") + i) for i in range(8)]
    extra = [*letters, *(f"{c}." for c in letters), *(f"({c})" for c in letters), "Answer:", "answer", "Choices:",
             "Options:", "with", "the", "letter", "of", "correct", "option", "is"]
    words.update(dict.fromkeys(extra))
    return list(words)
