"""Answering and scoring: the run behind ``coat eval`` (one base model, each adapter attached in turn, every task).

Per batch of prompts, the audio is read once; the generated answer (batched greedy ``generate()``, left padded)
and the likelihood pick (``likelihood.py``, right padded) are computed as the task's ``scoring`` asks. Items whose
audio cannot be read are *skipped*, items that cannot be scored are *invalid* (``examples.py``): both are
*unanswered*, listed with their reason and counted wrong in every accuracy, whose denominator is the task's whole
item count (a transcription task leaves them out of its WER and lists them). A benchmark task's file is written back
with the official output key on every item (``benchmarks.py``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from coat.data.config import open_data
from coat.data.prompts import prompt_text
from coat.data.sources import AudioDecodeError
from coat.evaluation.benchmarks import BENCHMARKS, write_with_outputs
from coat.evaluation.config import GENERATED_RULES, EvalConfig, TaskConfig
from coat.evaluation.examples import EvalDataError, EvalExample, build_examples
from coat.evaluation.likelihood import pick, score_options
from coat.evaluation.scoring import accuracy, macro_f1, mmau_match, normalize_text, parse_choice, word_error_rate
from coat.files import write_atomic
from coat.reports import markdown_table


@dataclass
class TaskAnswers:
    """What one model said on one task: generated texts, likelihood picks, and the items whose audio was unreadable."""

    generated: dict[str, str] = field(default_factory=dict)
    likelihood: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)


def _batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _generate(model, processor, batch: list[EvalExample], audios: list, max_new_tokens: int, device) -> list[str]:
    import torch

    texts = [prompt_text(processor, ex.prompt) for ex in batch]
    processor.tokenizer.padding_side = "left"  # decoder-only batched generation
    inputs = processor(text=texts, audio=audios, sampling_rate=processor.feature_extractor.sampling_rate,
                       return_tensors="pt", padding=True)
    inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in inputs.items()}
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
    sequences = out if isinstance(out, torch.Tensor) else out.sequences
    return [t.strip() for t in processor.batch_decode(sequences[:, inputs["input_ids"].shape[1]:],
                                                      skip_special_tokens=True)]


def _likelihood(model, processor, batch: list[EvalExample], audios: list, device) -> list[dict[str, Any]]:
    scores = score_options(model, processor, [ex.prompt for ex in batch], audios,
                           [ex.answer_forms for ex in batch], device)
    out = []
    for ex, options in zip(batch, scores, strict=True):
        normed, raw = pick(options, ex.answer_forms)
        out.append({"choice": ex.options[normed], "choice_unnorm": ex.options[raw],
                    "logprobs": [round(s.logprob, 5) for s in options], "tokens": [s.tokens for s in options],
                    "bytes": [len(a.encode("utf-8")) for a in ex.answer_forms]})
    return out


def answer_task(model, processor, source, task: TaskConfig, examples: list[EvalExample], *, batch_size: int,
                max_new_tokens: int, device, desc: str = "", progress: bool = True) -> TaskAnswers:
    """Generate and/or score (as ``task.scoring`` asks) every valid example, ``batch_size`` prompts at a time.
    Audio that cannot be read is skipped (reason kept), never fatal."""
    from coat.progress import progress_bar

    sample_rate = processor.feature_extractor.sampling_rate
    generate = task.type == "transcription" or any(s in GENERATED_RULES for s in task.scoring)
    answers = TaskAnswers()
    valid = [ex for ex in examples if not ex.invalid]
    n_batches = (len(valid) + batch_size - 1) // batch_size
    for batch in progress_bar(_batches(valid, batch_size), total=n_batches, desc=desc, enabled=progress,
                              unit="batch"):
        audios, kept = [], []
        for ex in batch:
            try:
                audios.append(source.load(ex.index, sample_rate).audio)
                kept.append(ex)
            except (AudioDecodeError, OSError) as err:
                answers.skipped.append({"id": ex.id, "reason": f"audio not readable: {err}"})
        if not kept:
            continue
        if generate:
            texts = _generate(model, processor, kept, audios, max_new_tokens, device)
            answers.generated.update((ex.id, text) for ex, text in zip(kept, texts, strict=True))
        if "likelihood" in task.scoring:
            picks = _likelihood(model, processor, kept, audios, device)
            answers.likelihood.update((ex.id, p) for ex, p in zip(kept, picks, strict=True))
    return answers


# ---------------------------------------------------------------------------------------------------------
# scoring


def _breakdown(metrics: dict, name: str, examples: list[EvalExample], correct: list[bool]) -> None:
    """``<name>/<category>`` and ``<name>/<field>=<value>`` accuracies (same denominator rule as ``name``)."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for ex, ok in zip(examples, correct, strict=True):
        if ex.category is not None:
            groups[ex.category].append(ok)
        for key, value in ex.groups.items():
            groups[f"{key}={value}"].append(ok)
    for group in sorted(groups):
        metrics[f"{name}/{group}"] = accuracy(groups[group])


def _score_generated(task: TaskConfig, examples, answers: TaskAnswers, metrics: dict, rows: dict) -> list[dict]:
    rule = next((s for s in task.scoring if s in GENERATED_RULES), None)
    unparseable: list[dict] = []
    if rule is None:
        return unparseable
    correct, parsed_labels = [], []
    letters = task.type == "multiple_choice" or task.list_labels
    for ex in examples:
        text = answers.generated.get(ex.id)
        ok, parsed = False, None
        if text is not None and rule == "mmau":
            ok = mmau_match(text, ex.options, ex.reference)
        elif text is not None:
            index, reason = parse_choice(text, ex.options, letters=letters)
            parsed = None if index is None else ex.options[index]
            ok = parsed == ex.reference
            rows[ex.id]["parsed"] = parsed
            if index is None:
                unparseable.append({"id": ex.id, "prediction": text, "reason": reason})
        if text is not None:
            rows[ex.id].update(prediction=text, correct=ok)
        correct.append(ok)
        parsed_labels.append(parsed)
    metrics["accuracy"] = accuracy(correct)
    _breakdown(metrics, "accuracy", examples, correct)
    if task.type == "classification" and rule == "parse":
        metrics["macro_f1"] = macro_f1([ex.reference for ex in examples], parsed_labels)
    if rule == "parse":
        metrics["unparseable"] = len(unparseable)
    return unparseable


def _score_likelihood(task: TaskConfig, examples, answers: TaskAnswers, metrics: dict, rows: dict) -> None:
    if "likelihood" not in task.scoring:
        return
    normed, raw = [], []
    for ex in examples:
        picked = answers.likelihood.get(ex.id)
        normed.append(picked is not None and picked["choice"] == ex.reference)
        raw.append(picked is not None and picked["choice_unnorm"] == ex.reference)
        if picked is not None:
            rows[ex.id]["likelihood"] = {**picked, "correct": normed[-1]}
    metrics["likelihood_accuracy"] = accuracy(normed)
    metrics["likelihood_accuracy_unnorm"] = accuracy(raw)
    _breakdown(metrics, "likelihood_accuracy", examples, normed)


def score_task(task: TaskConfig, examples: list[EvalExample], answers: TaskAnswers) -> dict[str, Any]:
    """Metrics, per-example predictions, and the unparseable and unanswered lists of one model on one task."""
    invalid = [{"id": ex.id, "reason": ex.invalid} for ex in examples if ex.invalid]
    skipped_ids = {s["id"] for s in answers.skipped}
    metrics: dict[str, Any] = {"n": len(examples)}
    result = {"type": task.type, "metrics": metrics, "skipped": answers.skipped, "invalid": invalid,
              "unparseable": []}
    answered = [ex for ex in examples if not ex.invalid and ex.id not in skipped_ids]
    if task.type == "transcription":  # WER over the answered items; the others are listed
        hyps = [normalize_text(answers.generated[ex.id], task.normalizer) for ex in answered]
        result["predictions"] = [{"id": ex.id, "prediction": answers.generated[ex.id], "hypothesis": hyp,
                                  "reference": ex.reference} for ex, hyp in zip(answered, hyps, strict=True)]
        metrics.update(word_error_rate([ex.reference for ex in answered], hyps))
        metrics["n"] = len(answered)
    else:
        rows = {ex.id: {"id": ex.id, "answer": ex.reference, **({"category": ex.category} if ex.category else {}),
                        **ex.groups} for ex in answered}
        result["unparseable"] = _score_generated(task, examples, answers, metrics, rows)
        _score_likelihood(task, examples, answers, metrics, rows)
        result["predictions"] = list(rows.values())
    metrics.update(unanswered=len(invalid) + len(answers.skipped), skipped=len(answers.skipped),
                   invalid=len(invalid))
    return result


def benchmark_outputs(task: TaskConfig, examples: list[EvalExample], answers: TaskAnswers) -> dict[int, str]:
    """The text a benchmark's own script scores, for every item: the generated answer, or (likelihood scoring
    alone) the picked option's text; ``""`` (which its script counts wrong) for an unanswered item."""
    picked = {id_: p["choice"] for id_, p in answers.likelihood.items()}
    texts = answers.generated if answers.generated else picked
    return {ex.index: texts.get(ex.id, "") for ex in examples}


# ---------------------------------------------------------------------------------------------------------
# the run

_MAIN = ("wer", "accuracy", "likelihood_accuracy", "likelihood_accuracy_unnorm")
_COUNTS = ("macro_f1", "unparseable", "unanswered", "skipped", "invalid", "n")


def results_markdown(results: dict[str, Any]) -> str:
    """A table: rows = task / metric (main metrics, their breakdowns, then counts), columns = the evaluated models."""
    columns = list(results["models"])
    rows = []
    for task in results["tasks"]:
        name = task["name"]
        keys: list[str] = []
        for col in columns:
            for key in results["models"][col][name]["metrics"]:
                if key not in keys:
                    keys.append(key)
        ordered = [k for k in _MAIN if k in keys] + sorted(k for k in keys if "/" in k) + [k for k in _COUNTS
                                                                                          if k in keys]
        for key in ordered:
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


def _open_suite(config: EvalConfig) -> list[tuple[TaskConfig, Any, list[EvalExample]]]:
    suite = []
    for task in config.tasks:
        try:
            source = open_data(task.data, Path(config.output_dir) / "data")
        except (OSError, ValueError) as err:
            raise EvalDataError(f"task {task.name!r}: cannot open its data: {err}") from err
        suite.append((task, source, build_examples(task, source)))
    return suite


def _evaluate_model(model, processor, suite, config: EvalConfig, column: str, device) -> dict[str, Any]:
    per_task = {}
    for task, source, examples in suite:
        answers = answer_task(model, processor, source, task, examples, batch_size=config.batch_size,
                              max_new_tokens=task.max_new_tokens or config.max_new_tokens, device=device,
                              desc=f"{column} / {task.name}", progress=config.progress)
        per_task[task.name] = score_task(task, examples, answers)
        if task.benchmark is not None:
            file = Path(task.data.source.path)
            written = write_with_outputs(file, Path(config.output_dir) / column / task.name / file.name,
                                         BENCHMARKS[task.benchmark].output_key,
                                         benchmark_outputs(task, examples, answers))
            per_task[task.name]["benchmark_file"] = str(written)
    return per_task


def run_eval(config: EvalConfig) -> dict[str, Any]:
    """Evaluate the base model and each adapter on every task; write results.json and results.md (and each
    benchmark task's file with the answers)."""
    from coat.loading import load_model_and_processor
    from coat.model import CoATModel

    suite = _open_suite(config)  # data first: a column no example has stops the run before a model is loaded
    base, processor = load_model_and_processor(config.model)
    device = _device(config)
    if not config.model.device_map:
        base.to(device)
    else:
        device = base.device
    base.eval()
    if base.generation_config.pad_token_id is None:
        base.generation_config.pad_token_id = processor.tokenizer.pad_token_id

    columns: list[tuple[str, str | None]] = [("base", None)] if config.evaluate_base else []
    columns += [(a.name, a.path) for a in config.adapters]
    results: dict[str, Any] = {
        "config": asdict(config),
        "tasks": [{"name": t.name, "type": t.type, "examples": len(ex), "scoring": t.scoring}
                  for t, _, ex in suite],
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
            results["models"][column] = _evaluate_model(model, processor, suite, config, column, device)
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
    """One line per model and task with unanswered or unparseable items, and the benchmark files written (what a
    reader should look at)."""
    lines = [f"{column}: FAILED ({failure['path'] or 'base model'}): {failure['error']}"
             for column, failure in results.get("failed", {}).items()]
    for column, per_task in results["models"].items():
        for name, res in per_task.items():
            for key, what in (("skipped", "with unreadable audio"), ("invalid", "that cannot be scored")):
                if res[key]:
                    first = res[key][0]
                    lines.append(f"{column} / {name}: {len(res[key])} item(s) {what}, counted wrong "
                                 f"(first: {first['id']}: {first['reason']})")
            if res["unparseable"]:
                lines.append(f"{column} / {name}: {len(res['unparseable'])} unparseable answer(s), counted wrong")
            if res.get("benchmark_file"):
                lines.append(f"{column} / {name}: the benchmark's file with the answers: {res['benchmark_file']}")
    return lines
