"""The ``data:`` section of every command: where the examples come from and which fields hold what.

One :class:`DataConfig` serves ``coat train``, ``coat targets``, ``coat eval`` (one per task), ``coat analyze`` and
the demo, with the same YAML keys everywhere, and one function opens it, :func:`open_data`:

- ``source``: a dataset, audio folder or JSONL manifest (:class:`~coat.data.sources.SourceConfig`);
- ``synth``: the synthetic benchmark (:class:`~coat.data.synth.SynthConfig`), split ``synth_split``. Its clips
  are written once as wavs + a JSONL manifest (:func:`~coat.data.synth.write_split_if_missing`) and then read
  like any manifest: at ``source.path`` when that names a ``.jsonl`` file that does not exist yet, else under the
  command's data folder, ``<root>/synth-<digest of the synth settings>/<split>/`` (the target caches' root, so runs
  with the same data share the data and its targets). A ``source.path`` that exists, or is no ``.jsonl``, is
  opened as it is: point it at your own audio and the ``synth:`` section is left unused;
- the columns: ``question_column``, ``choices_column``, ``answer_column`` and the ``answer_format`` an answer is
  trained in (:mod:`coat.data.prompts`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coat.data.prompts import ANSWER_FORMATS, format_answer, format_question
from coat.data.sources import AudioSource, SourceConfig, open_source
from coat.data.synth import SPLITS, SynthConfig, write_split_if_missing
from coat.errors import CoatError


@dataclass
class DataConfig:
    """The examples: a source or the synthetic benchmark, and which fields hold the question, choices and answer."""

    source: SourceConfig | None = field(default=None, metadata={
        "help": "where the examples come from (audio + question/choices/answer fields); with synth: the .jsonl path "
                "the synthetic split is written to if it does not exist"})
    synth: SynthConfig | None = field(default=None, metadata={
        "help": "the synthetic acoustic QA benchmark (coat.data.synth), written once as wavs + a JSONL manifest"})
    synth_split: str = field(default="train", metadata={"help": f"which synthetic split, of {SPLITS}"})
    question_column: str = field(default="question", metadata={"help": "field of each example holding the question"})
    choices_column: str | None = field(
        default="choices", metadata={"help": "field holding the list of choices (null: open questions)"})
    answer_column: str | None = field(default="answer", metadata={
        "help": "field holding the reference answer (a classification task: the label); null: none (coat analyze "
                "then lets the base model answer)"})
    answer_format: str = field(default="text", metadata={
        "help": f"how a multiple-choice answer is trained, of {ANSWER_FORMATS}: its text, its letter, or (B) text"})

    def __post_init__(self):
        if self.source is None and self.synth is None:
            raise ValueError("data needs a source (source: {path: ...}) or the synthetic benchmark (synth: {...})")
        if self.synth_split not in SPLITS:
            raise ValueError(f"data.synth_split must be one of {SPLITS}, got {self.synth_split!r}")
        if self.answer_format not in ANSWER_FORMATS:
            raise ValueError(f"data.answer_format must be one of {ANSWER_FORMATS}, got {self.answer_format!r}")

    def texts(self, meta: dict[str, Any]) -> tuple[str | None, str | None]:
        """(question with its lettered choices, answer in ``answer_format``) of one example's fields; None for a
        field the example does not have. The one prompt format of training, evaluation and analysis."""
        question = meta.get(self.question_column)
        choices = meta.get(self.choices_column) if self.choices_column else None
        choices = [str(c) for c in choices] if choices is not None else None
        answer = meta.get(self.answer_column) if self.answer_column else None
        if question in (None, ""):
            return None, None if answer is None else str(answer)
        prompt = format_question(str(question), choices)
        return prompt, None if answer is None else format_answer(str(answer), choices, self.answer_format)

    def synth_manifest(self, root: str | os.PathLike) -> Path:
        """Where the synthetic split is (or will be) as a JSONL manifest (see the module docstring)."""
        if self.source is not None and Path(self.source.path).suffix == ".jsonl":
            return Path(self.source.path)
        return Path(root) / f"synth-{self.synth.digest()}" / self.synth_split / "manifest.jsonl"


def open_data(data: DataConfig, root: str | os.PathLike) -> AudioSource:
    """The examples of ``data``, after writing its synthetic split if that is not on disk yet.

    ``root``: the command's data folder, where a synthetic split without a ``source.path`` goes (the target caches'
    root). Under several processes, call it in ``main_process_first()``: the main process writes, the others
    read. Errors the user can fix (a path that does not exist) name the ``data.source`` key."""
    if data.synth is not None and (data.source is None or not Path(data.source.path).exists()):
        manifest = data.synth_manifest(root)
        if not manifest.exists() and (data.source is None or manifest == Path(data.source.path)):
            print(f"writing the synthetic {data.synth_split} split ({data.synth.split_size(data.synth_split)} clips, "
                  f"data.synth) to {manifest}", flush=True)
            write_split_if_missing(manifest, data.synth, data.synth_split)
        if data.source is None:
            return open_source(SourceConfig(path=str(manifest)))
    try:
        return open_source(data.source)
    except CoatError as err:  # a path that is not there, an unreachable hub: say which key it came from
        raise type(err)(f"data.source: {err}") from None
