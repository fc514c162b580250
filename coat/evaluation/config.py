"""``coat eval``'s config: the suite of tasks, the base model and the CoAT adapters evaluated side by side."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from coat.data.config import DataConfig
from coat.evaluation.benchmarks import BENCHMARKS
from coat.evaluation.scoring import NORMALIZERS
from coat.loading import ModelConfig

TASK_TYPES = ("multiple_choice", "classification", "transcription")
# how a task's answers are scored: one rule for the generated answer, and the likelihood pick (no generation)
GENERATED_RULES = ("parse", "mmau")
SCORINGS = (*GENERATED_RULES, "likelihood")


@dataclass
class TaskConfig:
    """One task of the suite: where its examples are, what kind of task it is, and which fields hold what."""

    name: str = field(default="", metadata={"help": "task name: the row label in results.md"})
    type: str = field(default="multiple_choice", metadata={"help": f"one of {TASK_TYPES}"})
    data: DataConfig | None = field(default=None, metadata={
        "help": "the task's examples: a source, or synth (written to source.path, a .jsonl, if it does not exist; "
                "else under output_dir/data); the question, choices and answer (or label) columns"})
    benchmark: str | None = field(default=None, metadata={
        "help": f"one of {tuple(BENCHMARKS)}: data.source.path is the benchmark's file as published (MMAU's .json "
                "array, MMAR's .jsonl; audio paths relative to it); its audio field is read, a copy with the "
                "official output key on every item is written, and breakdowns and scoring default to the "
                "benchmark's own"})
    scoring: str | list[str] | None = field(default=None, metadata={
        "help": f"how answers are scored, one or a list of {SCORINGS}: parse (coat's parser: a letter or an "
                "option's text), mmau (MMAU's and MMAR's official string_match), likelihood (the option with the "
                "highest log-probability per byte, no generation). null: [mmau, likelihood] for a benchmark, [parse, "
                "likelihood] for other multiple choice, parse for classification"})
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
        default="category", metadata={"help": "multiple_choice: per-category accuracy field, rows accuracy/<value> "
                                              "(null: none; a benchmark task uses breakdowns instead)"}
    )
    breakdowns: list[str] | None = field(default=None, metadata={
        "help": "fields to break accuracy down by, rows accuracy/<field>=<value>; null: the benchmark's own (MMAU: "
                "task, difficulty, sub-category; MMAR: modality, category, sub-category), else none"})
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
        self._benchmark_defaults()
        self.scoring = self._checked_scoring()

    def _benchmark_defaults(self) -> None:
        if self.benchmark is None:
            self.breakdowns = list(self.breakdowns or [])
            return
        if self.benchmark not in BENCHMARKS:
            raise ValueError(f"task {self.name!r}: benchmark must be one of {tuple(BENCHMARKS)}, got "
                             f"{self.benchmark!r}")
        if self.type != "multiple_choice" or self.data.source is None:
            raise ValueError(f"task {self.name!r}: a benchmark task is multiple_choice with data.source.path naming "
                             f"the benchmark's file")
        bench = BENCHMARKS[self.benchmark]
        if self.data.source.audio_column == "audio":  # the generic default: the benchmark's file says audio_id
            self.data.source.audio_column = bench.audio_field
        if self.breakdowns is None:
            self.breakdowns = list(bench.breakdowns)
        self.category_column = None  # a benchmark's rows are its breakdowns, named <field>=<value>

    def _checked_scoring(self) -> list[str]:
        if self.scoring is None:
            defaults = {"multiple_choice": ["mmau" if self.benchmark else "parse", "likelihood"],
                        "classification": ["parse"], "transcription": []}
            return defaults[self.type]
        scoring = [self.scoring] if isinstance(self.scoring, str) else list(self.scoring)
        unknown = [s for s in scoring if s not in SCORINGS]
        if unknown or not scoring or len(set(scoring)) != len(scoring):
            raise ValueError(f"task {self.name!r}: scoring must be one or a list of {SCORINGS}, each once, got "
                             f"{self.scoring!r}")
        if len([s for s in scoring if s in GENERATED_RULES]) > 1:
            raise ValueError(f"task {self.name!r}: one rule for the generated answer ({' or '.join(GENERATED_RULES)})"
                             f", got {scoring}")
        if self.type == "transcription":
            raise ValueError(f"task {self.name!r}: a transcription task is scored by WER; leave scoring unset")
        return scoring


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
    output_dir: str = field(default="runs/eval", metadata={
        "help": "results.json, results.md, and a benchmark task's file with the answers: "
                "<output_dir>/<model>/<task>/<file name>"})
    batch_size: int = field(default=8, metadata={"help": "prompts per generate() call (and per likelihood call)"})
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
