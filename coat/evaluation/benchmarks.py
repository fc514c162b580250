"""Benchmark files as they are published: which field holds what, and the copy with the model's answers that the
benchmark's own script scores.

- **MMAU** (``mmau-test-mini.json``, ``mmau-test.json``): one JSON array; ``audio_id`` is the audio's path relative
  to the file (``./test-mini-audios/<id>.wav``); MMAU's ``evaluation.py`` reads the answer from ``model_output``
  (its README says ``model_prediction``; the script reads ``model_output``) and prints accuracy per ``task``,
  ``difficulty`` and ``sub-category``.
- **MMAR** (``MMAR-meta.jsonl``): JSON lines; ``audio_path`` relative to the file; its ``code/evaluation.py`` reads
  ``answer_prediction`` and prints accuracy per ``modality``, ``category`` and ``sub-category``.

Both scripts score with the same ``string_match`` (:func:`coat.evaluation.mmau_match`) and skip an item that has
no output key, so a partial file scores as if the missing items did not exist. The copy ``coat eval`` writes has the
key on every item: an item coat could not answer (its audio is missing, it has no choices, its answer is not among
them) gets ``""``, which both scripts count wrong, as ``coat eval`` does.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coat.files import write_atomic


@dataclass(frozen=True)
class Benchmark:
    """How one benchmark's file is laid out and scored."""

    name: str
    audio_field: str  # the audio's path, relative to the file
    output_key: str  # where the benchmark's script reads the model's answer
    breakdowns: tuple[str, ...]  # the fields its script prints accuracy per value of


BENCHMARKS = {
    "mmau": Benchmark("mmau", "audio_id", "model_output", ("task", "difficulty", "sub-category")),
    "mmar": Benchmark("mmar", "audio_path", "answer_prediction", ("modality", "category", "sub-category")),
}


def read_items(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The items of a benchmark file as published: a JSON array (``.json``) or JSON lines (blank lines skipped, as
    the manifest reader skips them, so positions agree with the source's)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_with_outputs(source_file: str | os.PathLike, destination: str | os.PathLike, output_key: str,
                       outputs: dict[int, str]) -> Path:
    """Write the items of ``source_file`` at the positions ``outputs`` names (every one of them, in file order), each
    with ``output_key`` set to its text, in the file's own format (a JSON array, or JSON lines). Atomic."""
    items = read_items(source_file)
    chosen = [{**items[i], output_key: outputs[i]} for i in sorted(outputs)]
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    if Path(source_file).suffix == ".json":
        text = json.dumps(chosen, indent=2, ensure_ascii=False) + "\n"
    else:
        text = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in chosen)
    write_atomic(destination, text.encode("utf-8"))  # bytes: the locale's encoding must not matter
    return destination
