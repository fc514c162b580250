"""Evaluate a base LALM and CoAT adapters side by side on a suite of audio tasks (``coat eval``).

Three task types, each read from a ``coat.data.sources`` source (a ``datasets`` dataset, a JSONL manifest, ...):

- ``multiple_choice`` (MMAU / MMAR format: ``question``, ``choices``, ``answer`` (the text of one choice),
  ``category``): accuracy overall and per category. The prompt is :func:`coat.data.prompts.format_question`,
  exactly what training uses.
- ``classification`` by prompt (speech emotion, music genre, ...): one ``prompt`` and a label set; accuracy and
  macro-F1. With ``list_labels`` the labels are offered as lettered choices, and a letter answer counts too.
- ``transcription`` (LibriSpeech style): corpus WER with jiwer after text normalisation (Whisper's
  ``EnglishTextNormalizer`` by default, see :func:`normalize_text`).

Generation is batched, greedy, left padded. The base model is loaded once; each adapter is attached with
``CoATModel.from_pretrained(base, path)``, evaluated and removed with ``.unwrap()``. Answers are parsed by
:func:`parse_choice`: a generation that names no option, or several, is *unparseable*: counted wrong and listed,
never an error. Examples whose audio cannot be read are skipped and listed with the reason. Data errors that
would make a score meaningless (an answer that is not among its choices) stop the run before anything is
generated, naming the example.

Output: ``<output_dir>/results.json`` (per model, per task: metrics, per-example predictions, unparseable,
skipped) and ``<output_dir>/results.md`` (rows: task / metric, columns: base and each adapter), rewritten as each
model finishes. A model that fails (an adapter that does not load, an error while generating) is listed under
``failed`` with its error; the results of the others are kept.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from coat.data.config import DataConfig, open_data
from coat.data.prompts import LETTERS, format_question, prompt_text
from coat.data.sources import AudioDecodeError
from coat.errors import CoatError
from coat.files import write_atomic
from coat.loading import ModelConfig
from coat.reports import markdown_table

TASK_TYPES = ("multiple_choice", "classification", "transcription")
NORMALIZERS = ("english", "basic", "lowercase", "none")


class EvalDataError(CoatError, ValueError):
    """Evaluation data that cannot be scored as configured (e.g. an answer missing from its choices)."""


# ---------------------------------------------------------------------------------------------------------
# configs


@dataclass
class TaskConfig:
    """One task of the suite: where its examples are, what kind of task it is, and which fields hold what."""

    name: str = field(default="", metadata={"help": "task name: the row label in results.md"})
    type: str = field(default="multiple_choice", metadata={"help": f"one of {TASK_TYPES}"})
    data: DataConfig | None = field(default=None, metadata={
        "help": "the task's examples: a source, or synth (written to source.path, a .jsonl, if it does not exist; "
                "else under output_dir/data); the question, choices and answer (or label) columns"})
    prompt: str = field(
        default="",
        metadata={"help": "classification: the question (required); transcription: the instruction; "
                          "multiple_choice: text appended after the question and its choices"},
    )
    labels: list[str] = field(
        default_factory=list,
        metadata={"help": "classification label set; empty: the sorted distinct labels of the data"},
    )
    list_labels: bool = field(
        default=True, metadata={"help": "classification: offer the labels as lettered choices in the prompt"}
    )
    category_column: str | None = field(
        default="category", metadata={"help": "multiple_choice: per-category accuracy field (null: none)"}
    )
    text_column: str = field(default="text", metadata={"help": "transcription: reference transcript field"})
    normalizer: str = field(default="english", metadata={"help": f"transcription text normaliser, {NORMALIZERS}"})
    max_new_tokens: int | None = field(default=None, metadata={"help": "override the run's max_new_tokens"})

    def __post_init__(self):
        if not self.name:
            raise ValueError("each task needs a name")
        if self.type not in TASK_TYPES:
            raise ValueError(f"task {self.name!r}: type must be one of {TASK_TYPES}, got {self.type!r}")
        if self.data is None:
            raise ValueError(f"task {self.name!r}: data is required, e.g. data: {{source: {{path: data/mmau.jsonl}}}}")
        if self.normalizer not in NORMALIZERS:
            raise ValueError(f"task {self.name!r}: normalizer must be one of {NORMALIZERS}, got {self.normalizer!r}")
        if self.type == "classification" and not self.prompt:
            raise ValueError(f"task {self.name!r}: a classification task needs a prompt (the question to ask)")
        if self.type == "transcription" and not self.prompt:
            self.prompt = "Transcribe the audio."
        self.labels = [str(label) for label in self.labels]
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"task {self.name!r}: labels must be distinct, got {self.labels}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"task {self.name!r}: max_new_tokens must be >= 1")


@dataclass
class AdapterEntry:
    """A CoAT adapter folder (written by ``CoATModel.save_pretrained``) and its column name."""

    config_accepts_string = True  # `adapters: [runs/x/adapter]`: a bare path

    path: str = field(default="", metadata={"help": "adapter folder"})
    name: str = field(default="", metadata={"help": "column name in results; default: the folder's name"})

    def __post_init__(self):
        if not self.path:
            raise ValueError("each adapter needs a path")
        self.name = self.name or Path(self.path).name


@dataclass
class EvalConfig:
    """What ``coat eval`` evaluates, and how."""

    model: ModelConfig | None = field(default=None, metadata={"help": "the base LALM (loaded once)"})
    adapters: list[AdapterEntry] = field(
        default_factory=list, metadata={"help": "CoAT adapter folders, or {path, name} mappings"}
    )
    evaluate_base: bool = field(default=True, metadata={"help": "also evaluate the base model alone"})
    tasks: list[TaskConfig] = field(default_factory=list, metadata={"help": "the suite"})
    output_dir: str = field(default="runs/eval", metadata={"help": "results.json and results.md go here"})
    batch_size: int = field(default=8, metadata={"help": "prompts per generate() call"})
    max_new_tokens: int = field(default=32, metadata={"help": "new tokens per answer (greedy)"})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ...; null: cuda if available"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar over batches"})

    def __post_init__(self):
        if self.model is None:
            raise ValueError("model is required, e.g. model: {name_or_path: Qwen/Qwen2-Audio-7B-Instruct}")
        self.adapters = [AdapterEntry(path=a) if isinstance(a, str) else a for a in self.adapters]
        if not self.tasks:
            raise ValueError("tasks must list at least one task")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique, got {names}")
        columns = (["base"] if self.evaluate_base else []) + [a.name for a in self.adapters]
        if not columns:
            raise ValueError("nothing to evaluate: set evaluate_base: true or list adapters")
        if len(set(columns)) != len(columns):
            raise ValueError(f"model column names must be unique, got {columns}; give adapters a name")
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("batch_size and max_new_tokens must be >= 1")


# ---------------------------------------------------------------------------------------------------------
# answer parsing

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")
# letter forms, tried on the raw generation; each must name a letter among the choices
_LETTER_PATTERNS = (
    re.compile(r"^\s*\(?([A-Za-z])\)?[.:)]?\s*$"),  # "B", "(B)", "B.", "b"
    re.compile(r"\b(?i:answer|option|choice)\b\s*(?i:is)?\s*:?\s*\(?([A-Z])\)?(?![A-Za-z0-9])"),  # "answer is B"
    re.compile(r"^\s*\(?([A-Z])[.:)]\s"),  # "B. text", "(B) text", "B) text"
    re.compile(r"\(([A-Z])\)"),  # "(B)" anywhere
)


def normalize_option(text: str) -> str:
    """Case- and punctuation-insensitive form of an option or a generation: ``"It rises!"`` -> ``"it rises"``."""
    return " ".join(_PUNCT.sub(" ", str(text).lower()).split())


def _letters_in(generation: str, n: int) -> set[int]:
    found: set[int] = set()
    for pattern in _LETTER_PATTERNS:
        for match in pattern.finditer(generation):
            index = LETTERS.find(match.group(1).upper())
            if 0 <= index < n:
                found.add(index)
    return found


def _texts_in(generation: str, options: list[str]) -> set[int]:
    gen = f" {normalize_option(generation)} "
    norm = [normalize_option(o) for o in options]
    hits = {i for i, o in enumerate(norm) if o and f" {o} " in gen}
    # an option contained in a longer matching option ("it rises" in "it rises then falls") is not a match
    return {i for i in hits if not any(j != i and f" {norm[i]} " in f" {norm[j]} " and norm[j] != norm[i]
                                       for j in hits)}


def parse_choice(generation: str, options: list[str], letters: bool = True) -> tuple[int | None, str]:
    """The option a generation names: ``(index, "")``, or ``(None, reason)`` when it names none or several.

    Letter forms (``B``, ``(B)``, ``B.``, ``answer is B``, ``(B) text``; only letters of existing options)
    count when ``letters``; option texts count case- and punctuation-insensitively as whole words. Letters and
    texts that point to different options make the answer ambiguous.
    """
    found = (_letters_in(generation, len(options)) if letters else set()) | _texts_in(generation, options)
    if len(found) == 1:
        return found.pop(), ""
    if not found:
        return None, "names no option"
    listed = ", ".join(LETTERS[i] if letters else repr(options[i]) for i in sorted(found))
    return None, f"ambiguous: names {listed}"


# ---------------------------------------------------------------------------------------------------------
# metrics


def accuracy(correct: list[bool]) -> float:
    return sum(map(bool, correct)) / len(correct) if correct else 0.0


def macro_f1(golds: list[str], predictions: list[str | None]) -> float:
    """Mean over classes of ``2 TP / (2 TP + FP + FN)``; classes: those among the golds or the predictions.

    An unparseable prediction (None) is a false negative of its gold class and nobody's false positive.
    """
    classes = sorted({*golds, *(p for p in predictions if p is not None)})
    if not classes:
        return 0.0
    tp, fp, fn = Counter(), Counter(), Counter()
    for gold, pred in zip(golds, predictions, strict=True):
        if pred == gold:
            tp[gold] += 1
        else:
            fn[gold] += 1
            if pred is not None:
                fp[pred] += 1
    scores = [2 * tp[c] / (2 * tp[c] + fp[c] + fn[c]) if (tp[c] + fp[c] + fn[c]) else 0.0 for c in classes]
    return sum(scores) / len(scores)


def normalize_text(text: str, normalizer: str = "english") -> str:
    """Transcript normalisation before WER.

    ``english``: transformers' Whisper ``EnglishTextNormalizer`` (lowercase, punctuation, contractions, numbers
    and spelled-out numbers, "mr" -> "mister", ...) with an empty British->American spelling map, since that map
    is a file downloaded with a Whisper tokenizer; ``basic``: Whisper's ``BasicTextNormalizer`` (lowercase,
    symbols to spaces); ``lowercase``: lowercase and ASCII punctuation stripped; ``none``: whitespace only.
    """
    if normalizer == "english":
        text = _english_normalizer()(text)
    elif normalizer == "basic":
        from transformers.models.whisper.english_normalizer import BasicTextNormalizer

        text = BasicTextNormalizer()(text)
    elif normalizer == "lowercase":
        text = _PUNCT.sub("", text.lower())
    elif normalizer != "none":
        raise ValueError(f"normalizer must be one of {NORMALIZERS}, got {normalizer!r}")
    return " ".join(text.split())


_ENGLISH = None


def _english_normalizer():
    global _ENGLISH
    if _ENGLISH is None:
        from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

        _ENGLISH = EnglishTextNormalizer({})
    return _ENGLISH


def word_error_rate(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    """Corpus WER of already normalised strings (jiwer): ``{"wer", "substitutions", "deletions", "insertions",
    "reference_words"}``. References must be non-empty."""
    import jiwer

    if not references:
        return {"wer": 0.0, "substitutions": 0, "deletions": 0, "insertions": 0, "reference_words": 0}
    out = jiwer.process_words(list(references), list(hypotheses))
    words = out.substitutions + out.deletions + out.hits
    return {"wer": float(out.wer), "substitutions": out.substitutions, "deletions": out.deletions,
            "insertions": out.insertions, "reference_words": words}


# ---------------------------------------------------------------------------------------------------------
# tasks: examples with prompts and references, checked before any generation


@dataclass
class EvalExample:
    id: str
    index: int  # position in the source
    prompt: str  # the user text (before the chat template)
    reference: Any  # answer text, label, or normalised transcript
    options: list[str] = field(default_factory=list)
    category: str | None = None


def _field(meta: dict, column: str, task: TaskConfig, what: str):
    if column not in meta or meta[column] is None:
        raise EvalDataError(f"task {task.name!r}, example {meta['id']!r}: no {column!r} field ({what}); set "
                            f"the column of the task's data section (or its text_column) to the field that holds it")
    return meta[column]


def build_examples(task: TaskConfig, source) -> list[EvalExample]:
    """Prompts and references of every example of ``task``; raises :class:`EvalDataError` naming the example
    when its answer cannot be scored (answer not among the choices, label outside the label set, ...)."""
    if len(source) == 0:
        raise EvalDataError(f"task {task.name!r}: its data ({source.description}) has no examples")
    metas = [source.metadata(i) for i in range(len(source))]
    examples = []
    if task.type == "classification" and not task.labels:
        task.labels = sorted({str(_field(m, task.data.answer_column, task, "the label")) for m in metas})
    for i, meta in enumerate(metas):
        id_ = str(meta["id"])
        if task.type == "multiple_choice":
            question = str(_field(meta, task.data.question_column, task, "the question"))
            choices = _field(meta, task.data.choices_column, task, "the choices")
            if not isinstance(choices, (list, tuple)) or len(choices) < 2:
                raise EvalDataError(f"task {task.name!r}, example {id_!r}: choices must be a list of at least two "
                                    f"options, got {choices!r}")
            choices = [str(c) for c in choices]
            answer = str(_field(meta, task.data.answer_column, task, "the answer")).strip()
            matches = [c for c in choices if c.strip() == answer]
            matches = matches or [c for c in choices if normalize_option(c) == normalize_option(answer)]
            if len(matches) != 1:
                raise EvalDataError(f"task {task.name!r}, example {id_!r}: the answer {answer!r} is not one of its "
                                    f"choices {choices}" if not matches else
                                    f"task {task.name!r}, example {id_!r}: the answer {answer!r} matches several "
                                    f"choices {choices}")
            prompt = format_question(question, choices) + (f" {task.prompt}" if task.prompt else "")
            category = meta.get(task.category_column) if task.category_column else None
            examples.append(EvalExample(id_, i, prompt, matches[0], choices,
                                        None if category is None else str(category)))
        elif task.type == "classification":
            label = str(_field(meta, task.data.answer_column, task, "the label"))
            if label not in task.labels:
                raise EvalDataError(f"task {task.name!r}, example {id_!r}: the label {label!r} is not in the "
                                    f"label set {task.labels}")
            prompt = format_question(task.prompt, task.labels if task.list_labels else None)
            examples.append(EvalExample(id_, i, prompt, label, list(task.labels)))
        else:
            text = str(_field(meta, task.text_column, task, "the reference transcript"))
            examples.append(EvalExample(id_, i, task.prompt, normalize_text(text, task.normalizer)))
    return examples


# ---------------------------------------------------------------------------------------------------------
# generation


def _batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def generate_answers(model, processor, source, examples: list[EvalExample], *, batch_size: int,
                     max_new_tokens: int, device, desc: str = "", progress: bool = True):
    """Greedy batched answers: ``({id: text}, [{"id", "reason"}] skipped)``. Audio that cannot be read is
    skipped (reason kept), never fatal."""
    import torch

    from coat.progress import progress_bar

    sample_rate = processor.feature_extractor.sampling_rate
    answers: dict[str, str] = {}
    skipped: list[dict[str, str]] = []
    n_batches = (len(examples) + batch_size - 1) // batch_size
    for batch in progress_bar(_batches(examples, batch_size), total=n_batches, desc=desc, enabled=progress,
                              unit="batch"):
        audios, kept = [], []
        for ex in batch:
            try:
                audios.append(source.load(ex.index, sample_rate).audio)
                kept.append(ex)
            except (AudioDecodeError, OSError) as err:
                skipped.append({"id": ex.id, "reason": f"audio not readable: {err}"})
        if not kept:
            continue
        texts = [prompt_text(processor, ex.prompt) for ex in kept]
        inputs = processor(text=texts, audio=audios, sampling_rate=sample_rate, return_tensors="pt", padding=True)
        inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in inputs.items()}
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
        sequences = out if isinstance(out, torch.Tensor) else out.sequences
        new = sequences[:, inputs["input_ids"].shape[1]:]
        for ex, text in zip(kept, processor.batch_decode(new, skip_special_tokens=True), strict=True):
            answers[ex.id] = text.strip()
    return answers, skipped


# ---------------------------------------------------------------------------------------------------------
# scoring


def score_task(task: TaskConfig, examples: list[EvalExample], answers: dict[str, str],
               skipped: list[dict[str, str]]) -> dict[str, Any]:
    """Metrics, per-example predictions and the unparseable list of one model on one task."""
    scored = [ex for ex in examples if ex.id in answers]
    predictions, unparseable = [], []
    metrics: dict[str, Any] = {"n": len(scored)}
    if task.type == "transcription":
        hyps = [normalize_text(answers[ex.id], task.normalizer) for ex in scored]
        for ex, hyp in zip(scored, hyps, strict=True):
            predictions.append({"id": ex.id, "prediction": answers[ex.id], "hypothesis": hyp,
                                "reference": ex.reference})
        metrics.update(word_error_rate([ex.reference for ex in scored], hyps))
    else:
        letters = task.type == "multiple_choice" or task.list_labels
        by_category: dict[str, list[bool]] = defaultdict(list)
        parsed_labels: list[str | None] = []
        for ex in scored:
            index, reason = parse_choice(answers[ex.id], ex.options, letters=letters)
            parsed = None if index is None else ex.options[index]
            correct = parsed == ex.reference
            row = {"id": ex.id, "prediction": answers[ex.id], "parsed": parsed, "answer": ex.reference,
                   "correct": correct}
            if ex.category is not None:
                row["category"] = ex.category
                by_category[ex.category].append(correct)
            predictions.append(row)
            parsed_labels.append(parsed)
            if index is None:
                unparseable.append({"id": ex.id, "prediction": answers[ex.id], "reason": reason})
        metrics["accuracy"] = accuracy([p["correct"] for p in predictions])
        for category in sorted(by_category):
            metrics[f"accuracy/{category}"] = accuracy(by_category[category])
        if task.type == "classification":
            metrics["macro_f1"] = macro_f1([ex.reference for ex in scored], parsed_labels)
        metrics["unparseable"] = len(unparseable)
    metrics["skipped"] = len(skipped)
    return {"type": task.type, "metrics": metrics, "predictions": predictions, "unparseable": unparseable,
            "skipped": skipped}


# ---------------------------------------------------------------------------------------------------------
# the run

# rows of results.md per task type (accuracy/<category> rows are added after accuracy)
_TABLE_METRICS = {"multiple_choice": ("accuracy", "unparseable", "skipped", "n"),
                  "classification": ("accuracy", "macro_f1", "unparseable", "skipped", "n"),
                  "transcription": ("wer", "skipped", "n")}


def results_markdown(results: dict[str, Any]) -> str:
    """A table: rows = task / metric, columns = the evaluated models."""
    columns = list(results["models"])
    rows = []
    for task in results["tasks"]:
        name, kind = task["name"], task["type"]
        keys: list[str] = []
        for col in columns:
            for key in results["models"][col][name]["metrics"]:
                if key not in keys:
                    keys.append(key)
        main = [k for k in _TABLE_METRICS[kind] if k in keys]
        for key in main[:1] + sorted(k for k in keys if k.startswith("accuracy/")) + main[1:]:
            values = [results["models"][col][name]["metrics"].get(key) for col in columns]
            rows.append([f"{name} / {key}", *("" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)
                                              for v in values)])
    failed = "".join(f"\n{column}: failed ({failure['error']}); no results\n"
                     for column, failure in results.get("failed", {}).items())
    return markdown_table(["task / metric", *columns], rows) + failed


def _device(config: EvalConfig):
    import torch

    if config.device:
        return torch.device(config.device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def run_eval(config: EvalConfig) -> dict[str, Any]:
    """Evaluate the base model and each adapter on every task; write results.json and results.md."""
    from coat.loading import load_model_and_processor
    from coat.model import CoATModel

    # data first: a bad answer or a missing field stops the run before a model is loaded
    suite = []
    for task in config.tasks:
        try:
            source = open_data(task.data, Path(config.output_dir) / "data")
        except (OSError, ValueError) as err:
            raise EvalDataError(f"task {task.name!r}: cannot open its data: {err}") from err
        suite.append((task, source, build_examples(task, source)))

    base, processor = load_model_and_processor(config.model)
    device = _device(config)
    if not config.model.device_map:
        base.to(device)
    else:
        device = base.device
    base.eval()
    processor.tokenizer.padding_side = "left"  # decoder-only batched generation
    if base.generation_config.pad_token_id is None:
        base.generation_config.pad_token_id = processor.tokenizer.pad_token_id

    columns: list[tuple[str, str | None]] = [("base", None)] if config.evaluate_base else []
    columns += [(a.name, a.path) for a in config.adapters]
    results: dict[str, Any] = {
        "config": asdict(config),
        "tasks": [{"name": t.name, "type": t.type, "examples": len(ex)} for t, _, ex in suite],
        "models": {},
        "failed": {},
    }
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for column, adapter_path in columns:
        # one model failing (an adapter that does not load, an error while generating) loses only its own column:
        # it is reported by name, and the results of every other model are written as they finish
        model = None
        try:
            model = base if adapter_path is None else CoATModel.from_pretrained(base, adapter_path)
            per_task = {}
            for task, source, examples in suite:
                answers, skipped = generate_answers(
                    model, processor, source, examples, batch_size=config.batch_size,
                    max_new_tokens=task.max_new_tokens or config.max_new_tokens, device=device,
                    desc=f"{column} / {task.name}", progress=config.progress)
                per_task[task.name] = score_task(task, examples, answers, skipped)
            results["models"][column] = per_task
        except Exception as err:  # noqa: BLE001 - reported per model, the others go on
            what = "base model" if adapter_path is None else f"adapter {column!r} ({adapter_path})"
            results["failed"][column] = {"path": adapter_path, "error": f"{type(err).__name__}: {err}"}
            print(f"coat eval: {what} failed, the other models go on: {type(err).__name__}: {err}", flush=True)
        finally:
            if adapter_path is not None and model is not None:
                model.unwrap()
        write_atomic(out / "results.json", json.dumps(results, indent=2, default=str) + "\n")
        write_atomic(out / "results.md", results_markdown(results))
    return results


def summary_lines(results: dict[str, Any]) -> list[str]:
    """One line per model and task with skipped or unparseable examples (what a reader should look at)."""
    lines = [f"{column}: FAILED ({failure['path'] or 'base model'}): {failure['error']}"
             for column, failure in results.get("failed", {}).items()]
    for column, per_task in results["models"].items():
        for name, res in per_task.items():
            if res["skipped"]:
                first = res["skipped"][0]
                lines.append(f"{column} / {name}: skipped {len(res['skipped'])} example(s) with unreadable audio "
                             f"(first: {first['id']}: {first['reason']})")
            if res["unparseable"]:
                lines.append(f"{column} / {name}: {len(res['unparseable'])} unparseable answer(s), counted wrong")
    return lines
