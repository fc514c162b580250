"""A task's examples with their prompts and references, and the items that cannot be scored (each with its reason).

An item whose answer is not among its choices, that has no choices (or fewer than two), or no answer, is *invalid*:
it is kept in the task's count, listed with its reason, and counted wrong, never dropped and never a crash. Only
a field missing from every item (a column the config names wrongly) stops the run before a model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from coat.data.prompts import format_answer, format_question
from coat.errors import CoatError
from coat.evaluation.config import TaskConfig
from coat.evaluation.scoring import normalize_option, normalize_text


class EvalDataError(CoatError, ValueError):
    """Evaluation data that cannot be scored as configured (a field that no example has, a task without examples)."""


@dataclass
class EvalExample:
    id: str
    index: int  # position in the source (and in a benchmark's file)
    prompt: str  # the user text (before the chat template)
    reference: Any  # answer text, label, or normalised transcript
    options: list[str] = field(default_factory=list)
    category: str | None = None
    groups: dict[str, str] = field(default_factory=dict)  # breakdown field -> this item's value
    answer_forms: list[str] = field(default_factory=list)  # each option as training formats an answer
    invalid: str = ""  # why the item cannot be scored ("" when it can)


class _Missing(Exception):
    def __init__(self, column: str, what: str):
        super().__init__(f"no {column!r} field ({what})")
        self.column = column


def _field(meta: dict, column: str | None, what: str):
    if column is None or meta.get(column) is None:
        raise _Missing(str(column), what)
    return meta[column]


def _choice_example(task: TaskConfig, meta: dict, i: int) -> EvalExample:
    question = str(_field(meta, task.data.question_column, "the question"))
    choices = meta.get(task.data.choices_column) if task.data.choices_column else None
    example = EvalExample(str(meta["id"]), i, question, None)
    if not isinstance(choices, (list, tuple)) or len(choices) < 2:
        example.invalid = f"choices must be a list of at least two options, got {choices!r}"
        return example
    choices = [str(c) for c in choices]
    answer = str(_field(meta, task.data.answer_column, "the answer")).strip()
    matches = [c for c in choices if c.strip() == answer]
    matches = matches or [c for c in choices if normalize_option(c) == normalize_option(answer)]
    example.options, example.reference = choices, answer
    example.prompt = format_question(question, choices) + (f" {task.prompt}" if task.prompt else "")
    if len(set(matches)) != 1:  # a choice listed twice is still one answer (MMAU has such items)
        example.invalid = (f"the answer {answer!r} is not one of its choices {choices}" if not matches else
                           f"the answer {answer!r} matches several choices {choices}")
        return example
    example.reference = matches[0]
    example.answer_forms = [format_answer(c, choices, task.data.answer_format) for c in choices]
    return example


def _label_example(task: TaskConfig, meta: dict, i: int) -> EvalExample:
    label = str(_field(meta, task.data.answer_column, "the label"))
    listed = task.labels if task.list_labels else None
    example = EvalExample(str(meta["id"]), i, format_question(task.prompt, listed), label, list(task.labels))
    if label not in task.labels:
        example.invalid = f"the label {label!r} is not in the label set {task.labels}"
    else:
        example.answer_forms = [format_answer(c, listed, task.data.answer_format) for c in task.labels]
    return example


def _one(task: TaskConfig, meta: dict, i: int) -> EvalExample:
    if task.type == "multiple_choice":
        example = _choice_example(task, meta, i)
    elif task.type == "classification":
        example = _label_example(task, meta, i)
    else:
        text = str(_field(meta, task.text_column, "the reference transcript"))
        example = EvalExample(str(meta["id"]), i, task.prompt, normalize_text(text, task.normalizer))
    category = meta.get(task.category_column) if task.category_column else None
    example.category = None if category is None else str(category)
    example.groups = {name: str(meta.get(name)) for name in task.breakdowns}
    return example


def build_examples(task: TaskConfig, source) -> list[EvalExample]:
    """Every example of ``task`` with its prompt and reference; an item that cannot be scored comes back with its
    reason in ``invalid``. Raises :class:`EvalDataError` when the task has no examples or a field it needs is
    missing from every example (the config names the wrong column)."""
    if len(source) == 0:
        raise EvalDataError(f"task {task.name!r}: its data ({source.description}) has no examples")
    metas: list[dict[str, Any]] = [source.metadata(i) for i in range(len(source))]
    if task.type == "classification" and not task.labels:
        task.labels = sorted({str(m[task.data.answer_column]) for m in metas
                              if m.get(task.data.answer_column) is not None})
    examples, missing = [], []
    for i, meta in enumerate(metas):
        try:
            examples.append(_one(task, meta, i))
        except _Missing as err:
            missing.append(err.column)
            examples.append(EvalExample(str(meta["id"]), i, "", None, invalid=str(err)))
    if len(missing) == len(metas) and len(set(missing)) == 1:
        raise EvalDataError(f"task {task.name!r}: no example has a {missing[0]!r} field; set the column of the "
                            f"task's data section (or its text_column) to the field that holds it (fields of the "
                            f"first example: {sorted(metas[0])})")
    return examples
