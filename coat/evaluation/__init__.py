"""Evaluate a base LALM and CoAT adapters side by side on a suite of audio tasks (``coat eval``).

Three task types, each read from a ``coat.data.sources`` source (a ``datasets`` dataset, a JSONL manifest, a JSON
array, ...):

- ``multiple_choice`` (``question``, ``choices``, ``answer`` (the text of one choice), ``category``): accuracy
  overall, per category and per ``breakdowns`` field. The prompt is :func:`coat.data.prompts.format_question`,
  exactly what training uses. With ``benchmark: mmau`` or ``mmar`` the data is the benchmark's file as published
  (``benchmarks.py``), and a copy with the official output key on every item is written for the benchmark's own
  script.
- ``classification`` by prompt (speech emotion, music genre, ...): one ``prompt`` and a label set; accuracy and
  macro-F1. With ``list_labels`` the labels are offered as lettered choices, and a letter answer counts too.
- ``transcription`` (LibriSpeech style): corpus WER with jiwer after text normalisation (Whisper's
  ``EnglishTextNormalizer`` by default, see :func:`normalize_text`).

Scoring (``TaskConfig.scoring``, ``scoring.py`` and ``likelihood.py``): a generated answer is read by MMAU's
official rule (:func:`mmau_match`) or coat's parser (:func:`parse_choice`); ``likelihood`` picks the option with the
highest log-probability per byte after the prompt, without generating. Items that cannot be answered (unreadable
audio, an answer not among the choices, no choices) are listed with their reason and counted wrong
(``examples.py``, ``run.py``).

Output: ``<output_dir>/results.json`` (per model, per task: metrics, per-example predictions, unparseable,
skipped, invalid) and ``<output_dir>/results.md`` (rows: task / metric, columns: base and each adapter), rewritten as
each model finishes. A model that fails (an adapter that does not load, an error while generating) is listed under
``failed`` with its error; the results of the others are kept.
"""

from coat.evaluation.benchmarks import BENCHMARKS, Benchmark, read_items, write_with_outputs
from coat.evaluation.config import SCORINGS, TASK_TYPES, AdapterEntry, EvalConfig, TaskConfig
from coat.evaluation.examples import EvalDataError, EvalExample, build_examples
from coat.evaluation.likelihood import ContinuationScore, continuation_logprobs, pick, score_options
from coat.evaluation.run import answer_task, results_markdown, run_eval, score_task, summary_lines
from coat.evaluation.scoring import (
    NORMALIZERS,
    accuracy,
    macro_f1,
    mmau_match,
    mmau_tokens,
    normalize_option,
    normalize_text,
    parse_choice,
    word_error_rate,
)

__all__ = [
    "BENCHMARKS",
    "NORMALIZERS",
    "SCORINGS",
    "TASK_TYPES",
    "AdapterEntry",
    "Benchmark",
    "ContinuationScore",
    "EvalConfig",
    "EvalDataError",
    "EvalExample",
    "TaskConfig",
    "accuracy",
    "answer_task",
    "build_examples",
    "continuation_logprobs",
    "macro_f1",
    "mmau_match",
    "mmau_tokens",
    "normalize_option",
    "normalize_text",
    "parse_choice",
    "pick",
    "read_items",
    "results_markdown",
    "run_eval",
    "score_options",
    "score_task",
    "summary_lines",
    "word_error_rate",
    "write_with_outputs",
]
