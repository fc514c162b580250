"""``coat ablate``: which experts matter? Train and evaluate a grid of expert sets under one seed and one budget.

Every run of the grid trains from the same train config (same stages and steps, same data, same seed) with a
different set of experts, then evaluates its adapter against the same base model. The default grid for experts
``[a, b, c]``::

    no_thinking  num_thinking 0, no experts: plain LoRA fine-tuning (the adapter is a CoAT adapter with K=0)
    pause        the thinking block, no experts: trained by the text loss alone (pause tokens)
    a, b, c      the thinking block and one expert
    all_but_a .. the thinking block and all experts but one
    all          the thinking block and every expert (the train config as written)

A run trains only the parts it has: ``thinking`` is dropped from every stage when K=0 and ``heads`` when the run
has no experts; a stage left with nothing to train is skipped (its optimizer steps would update nothing), the
other stages keep their steps. Subsets that coincide are listed once: with one expert the grid is
``no_thinking, pause, all``; with two, the ``all_but_*`` runs are the single-expert runs and are left out.

Output: ``<output_dir>/<run>/`` holds ``train_config.yaml`` (the run's resolved train config), ``train/`` (the
training outputs, adapter in ``train/adapter``), ``eval/results.{json,md}`` and, written last and atomically,
``done.json``. A run with ``done.json`` is skipped when the command runs again; an unfinished one resumes through
:func:`coat.training.run_training`'s own resume. All runs share ``targets.cache_dir``, so each expert's targets
are extracted once. The summary: ``<output_dir>/ablation.md`` (runs x metrics), ``ablation.csv`` and
``ablation.png`` (the main metric per run).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from coat.config_io import ConfigError, from_dict, merge, parse_overrides, read_yaml
from coat.files import config_digest, write_atomic
from coat.reports import figure, markdown_table
from coat.smoke import tiny_model_note
from coat.training import TrainConfig

# keys of the eval config that the ablation sets for each run
OWNED_EVAL_KEYS = ("model", "adapters", "evaluate_base", "output_dir")
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
# metrics of a task shown in the table: the main ones (the likelihood pick's accuracy beside the generated answers'),
# then accuracy/<category>, then the rest
_MAIN_METRICS = ("accuracy", "likelihood_accuracy", "wer")
_OTHER_METRICS = ("macro_f1", "unparseable", "unanswered")


@dataclass
class GridRun:
    """One run of the grid: a name (its folder), the experts it trains with, and whether it has thinking."""

    config_accepts_string = True  # `grid: [pause, all]`: the name of a generated run

    name: str = field(default="", metadata={"help": "run name: its folder under output_dir and its table row"})
    experts: list[str] = field(default_factory=list, metadata={"help": "names of experts of the train config"})
    thinking: bool = field(default=True, metadata={"help": "false: num_thinking 0 (plain LoRA fine-tuning)"})

    def __post_init__(self):
        if not isinstance(self.name, str) or not _RUN_NAME.match(self.name):
            raise ValueError(f"run name {self.name!r} must be a folder name of letters, digits and _ . + -")
        if not isinstance(self.experts, list) or not all(isinstance(e, str) for e in self.experts):
            raise ValueError(f"run {self.name!r}: experts must be a list of expert names, got {self.experts!r}")
        if len(set(self.experts)) != len(self.experts):
            raise ValueError(f"run {self.name!r}: experts listed twice in {self.experts}")
        if not self.thinking and self.experts:
            raise ValueError(f"run {self.name!r}: experts supervise thinking positions; with thinking: false "
                             f"experts must be empty, got {self.experts}")


@dataclass
class AblationConfig:
    """``coat ablate``'s config; every YAML key maps onto a field here (a typo is an error naming it)."""

    train: Any = field(default=None, metadata={"help": (
        "the train config: a YAML path, {path, overrides} (overrides: a mapping, nested or with dotted keys), or "
        "an inline TrainConfig mapping. Relative paths are relative to the ablation YAML's folder")})
    eval: Any = field(default=None, metadata={"help": (
        "the eval config without model/adapters/evaluate_base/output_dir (the ablation sets them): a YAML path, "
        "{path, overrides}, or an inline mapping (tasks, batch_size, max_new_tokens, ...)")})
    grid: list[GridRun] = field(default_factory=list, metadata={"help": (
        "the runs; empty: generated from the train config's experts. Entries: {name, experts, thinking} or the "
        "name of a generated run (no_thinking, pause, <expert>, all_but_<expert>, all)")})
    runs: list[str] | None = field(default=None, metadata={"help": "run only these runs of the grid (by name)"})
    output_dir: str = field(default="runs/ablate", metadata={"help": "one folder per run, and the summary"})
    seed: int | None = field(default=None, metadata={"help": "training.seed of every run (null: the train config's)"})
    metric: str | None = field(default=None, metadata={"help": (
        "<task>/<metric> plotted in ablation.png (null: the first task's accuracy, or WER for transcription)")})

    def __post_init__(self):
        if self.train is None:
            raise ValueError("train is required: a train YAML path, {path, overrides}, or an inline train config")
        if self.eval is None:
            raise ValueError("eval is required: an eval YAML path, {path, overrides}, or an inline mapping with tasks")
        if self.runs is not None and (not isinstance(self.runs, list) or not self.runs):
            raise ValueError(f"runs must be a non-empty list of run names (or null for all), got {self.runs!r}")


@dataclass
class ResolvedAblation:
    """An :class:`AblationConfig` with its sections read and checked: what :func:`run_ablation` runs."""

    train: TrainConfig
    eval: dict[str, Any]  # EvalConfig fields without OWNED_EVAL_KEYS
    grid: list[GridRun]  # after the runs filter


# ----------------------------------------------------------------------------------------------------- config
def _nested(overrides: dict[str, Any]) -> dict[str, Any]:
    """``{"training.seed": 1, "coat": {...}}`` -> a nested mapping (dotted keys become sections)."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        node: dict[str, Any] = {}
        leaf = node
        parts = str(key).split(".")
        for part in parts[:-1]:
            leaf = leaf.setdefault(part, {})
        leaf[parts[-1]] = value
        out = merge(out, node)
    return out


def _section(value: Any, what: str) -> dict[str, Any]:
    """The mapping a ``train:`` / ``eval:`` section stands for (a file plus overrides, or inline)."""
    if isinstance(value, (str, os.PathLike)):
        value = {"path": str(value)}
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be a YAML path, {{path, overrides}} or a mapping, got {value!r}")
    if "path" not in value:
        if "overrides" in value:
            raise ConfigError(f"{what}.overrides needs {what}.path (inline settings go directly under {what})")
        return copy.deepcopy(value)
    extra = sorted(set(value) - {"path", "overrides"})
    if extra:
        raise ConfigError(f"unknown config key(s): {', '.join(f'{what}.{k}' for k in extra)}. With {what}.path, "
                          f"settings go under {what}.overrides")
    path = Path(value["path"])
    overrides = value.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{what}.overrides must be a mapping, got {overrides!r}")
    return merge(read_yaml(path), _nested(overrides))


def load_ablation_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> AblationConfig:
    """The ablation config at ``path`` (or only ``overrides``) with ``key=value`` overrides, checked through (train
    and eval sections, grid, runs filter) so that a typo anywhere stops the command before anything trains."""
    data = read_yaml(path) if path is not None else {}
    for key in ("train", "eval"):  # a bare path becomes {path}, so that `train.overrides.x=1` merges onto it
        if isinstance(data.get(key), str):
            data[key] = {"path": data[key]}
    data = merge(data, parse_overrides(overrides or []))
    folder = Path(path).resolve().parent if path is not None else Path.cwd()
    for key in ("train", "eval"):  # relative include paths are relative to this YAML's folder
        section = data.get(key)
        if isinstance(section, dict) and isinstance(section.get("path"), str):
            if not Path(section["path"]).is_absolute():
                section["path"] = str(folder / section["path"])
    config = from_dict(AblationConfig, data)
    resolve(config)
    return config


def default_grid(expert_names: list[str]) -> list[GridRun]:
    """no_thinking, pause, each expert alone, all but each one, all; a subset already listed is left out."""
    names = list(expert_names)
    runs = [GridRun("no_thinking", [], thinking=False), GridRun("pause", [])]
    if len(names) > 1:
        runs += [GridRun(name, [name]) for name in names]
    if len(names) > 2:
        runs += [GridRun(f"all_but_{name}", [n for n in names if n != name]) for name in names]
    if names:
        runs.append(GridRun("all", names))
    return runs


def resolve(config: AblationConfig) -> ResolvedAblation:
    """Read and check the train and eval sections and the grid; errors are :class:`ConfigError` naming the key."""
    train_data = _section(config.train, "train")
    train = from_dict(TrainConfig, train_data, "train.")
    expert_names = [e.name for e in train.experts]
    if len(set(expert_names)) != len(expert_names):
        raise ConfigError(f"train.experts: an ablation addresses experts by name; names repeat in {expert_names}")

    eval_data = _section(config.eval, "eval")
    owned = [k for k in OWNED_EVAL_KEYS if k in eval_data]
    if owned:
        raise ConfigError(f"{', '.join('eval.' + k for k in owned)}: set by the ablation for each run (the train "
                          f"config's model, the run's adapter); remove it from the eval config")
    from coat.evaluation import EvalConfig

    probe = from_dict(EvalConfig, {**eval_data, "model": asdict(train.model), "adapters": ["adapter"],
                                   "evaluate_base": False}, "eval.")
    if config.metric is not None:
        task = config.metric.split("/", 1)[0]
        if "/" not in config.metric or task not in [t.name for t in probe.tasks]:
            raise ConfigError(f"metric {config.metric!r} must be <task>/<metric> with a task of eval.tasks "
                              f"({[t.name for t in probe.tasks]})")

    generated = {run.name: run for run in default_grid(expert_names)}
    grid = []
    for i, entry in enumerate(config.grid or list(generated.values())):
        if isinstance(entry, str):
            if entry not in generated:
                raise ConfigError(f"grid[{i}]: {entry!r} is not a generated run ({', '.join(generated)}); "
                                  "give {name, experts} for another expert set")
            entry = generated[entry]
        if not isinstance(entry, GridRun):
            raise ConfigError(f"grid[{i}] must be a run name or {{name, experts, thinking}}, got {entry!r}")
        unknown = sorted(set(entry.experts) - set(expert_names))
        if unknown:
            raise ConfigError(f"grid[{i}] ({entry.name}): unknown expert(s) {unknown}; the train config's experts "
                              f"are {expert_names}")
        grid.append(entry)
    names = [run.name for run in grid]
    if len(set(names)) != len(names):
        raise ConfigError(f"grid: run names must be unique, got {names}")
    if config.runs is not None:
        unknown = [r for r in config.runs if r not in names]
        if unknown:
            raise ConfigError(f"runs: {unknown} not in the grid; its runs: {names}")
        grid = [run for run in grid if run.name in config.runs]
    for run in grid:
        run_train_config(train, run, config.output_dir, config.seed)  # a run that would train nothing fails here
    return ResolvedAblation(train=train, eval=eval_data, grid=grid)


def run_train_config(train: TrainConfig, run: GridRun, output_dir: str | os.PathLike,
                     seed: int | None = None) -> TrainConfig:
    """The train config of one run: its experts, K=0 without thinking, each stage trimmed to the parts the run
    has (a stage left empty is dropped), outputs in ``<output_dir>/<run>/train``."""
    config = copy.deepcopy(train)
    config.experts = [e for e in config.experts if e.name in run.experts]
    if not run.thinking:
        config.coat = dataclasses.replace(config.coat, num_thinking=0)
    present = {"lora"}
    if config.coat.num_thinking > 0:
        present.add("thinking")
    if config.experts:
        present.add("heads")
    stages = []
    for stage in config.stages:
        parts = [p for p in stage.train if p in present]
        if parts:
            stages.append(dataclasses.replace(stage, train=parts))
    if not stages:
        raise ConfigError(f"run {run.name!r} would train nothing: no stage of the train config trains "
                          f"{sorted(present)}; leave the run out with `runs:` or add a stage that trains lora")
    config.stages = stages
    config.training.output_dir = str(Path(output_dir) / run.name / "train")
    if seed is not None:
        config.training.seed = seed
    return config


# ----------------------------------------------------------------------------------------------------- runs
def _fingerprint(train: TrainConfig, eval_data: dict[str, Any]) -> str:
    """What decides a run's result (its output folder aside): a finished run with another one is stale."""
    data = asdict(train)
    data["training"] = {k: v for k, v in data["training"].items() if k != "output_dir"}
    return config_digest({"train": data, "eval": eval_data}, length=16)


def _check_fingerprint(path: Path, fingerprint: str, run: str) -> None:
    if path.is_file() and json.loads(path.read_text()).get("fingerprint") != fingerprint:
        raise ConfigError(f"run {run!r}: {path} was made with another train or eval config; use another "
                          f"output_dir or delete {path.parent} to run it again")


def _log(message: str) -> None:
    print(f"[coat ablate] {message}", flush=True)


def run_one(resolved: ResolvedAblation, run: GridRun, output_dir: Path, seed: int | None = None,
            callbacks=None) -> dict[str, Any]:
    """Train and evaluate one run (or return its ``done.json`` when it finished before)."""
    from coat.evaluation import EvalConfig, run_eval
    from coat.training import run_training

    train = run_train_config(resolved.train, run, output_dir, seed)
    fingerprint = _fingerprint(train, resolved.eval)
    run_dir = output_dir / run.name
    done = run_dir / "done.json"
    _check_fingerprint(done, fingerprint, run.name)
    if done.is_file():
        _log(f"{run.name}: skipped, finished before ({done})")
        return json.loads(done.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    _check_fingerprint(run_dir / "run.json", fingerprint, run.name)
    resuming = (run_dir / "run.json").is_file()
    info = {"run": run.name, "experts": run.experts, "thinking": run.thinking,
            "num_thinking": train.coat.num_thinking, "stages": [s.name for s in train.stages],
            "fingerprint": fingerprint}
    write_atomic(run_dir / "run.json", json.dumps(info, indent=2) + "\n")
    write_atomic(run_dir / "train_config.yaml", yaml.safe_dump(asdict(train), sort_keys=False))
    _log(f"{run.name}: {'resuming' if resuming else 'running'} (experts {run.experts or 'none'}, "
         f"K={train.coat.num_thinking}, stages {info['stages']})")

    start = time.time()
    adapter = run_training(train, callbacks=callbacks).adapter  # the evaluation loads the base model afresh
    train_seconds = time.time() - start

    start = time.time()
    eval_config = from_dict(EvalConfig, {**copy.deepcopy(resolved.eval), "model": asdict(train.model),
                                         "adapters": [{"path": adapter, "name": run.name}],
                                         "evaluate_base": False, "output_dir": str(run_dir / "eval")}, "eval.")
    results = run_eval(eval_config)
    if run.name in results["failed"]:
        raise RuntimeError(f"run {run.name!r}: evaluating its adapter {adapter} failed: "
                           f"{results['failed'][run.name]['error']}")
    metrics = {f"{task}/{key}": value for task, res in results["models"][run.name].items()
               for key, value in res["metrics"].items()}
    record = {**info, "metrics": metrics, "tasks": results["tasks"], "train_seconds": round(train_seconds, 2),
              "eval_seconds": round(time.time() - start, 2), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_atomic(done, json.dumps(record, indent=2) + "\n")  # last: its presence means the run is finished
    _log(f"{run.name}: done in {train_seconds:.1f}s training + {record['eval_seconds']:.1f}s eval")
    return record


def run_ablation(config: AblationConfig, callbacks=None) -> dict[str, Any]:
    """Run every unfinished run of the grid, then write ablation.md, ablation.csv and ablation.png.

    Returns ``{"runs": [done.json records], "columns", "markdown", "csv", "png"}``.
    """
    resolved = resolve(config)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    _log(f"{len(resolved.grid)} run(s) into {out}: {', '.join(r.name for r in resolved.grid)}")
    records = [run_one(resolved, run, out, config.seed, callbacks) for run in resolved.grid]
    columns = table_columns(records)
    metric = config.metric or _main_metric(records)
    tiny = resolved.train.model.create_tiny
    markdown = table_markdown(records, columns)
    if tiny:  # a table of zeros needs its reason next to it
        markdown += "\n" + tiny_model_note("coat ablate") + "\n"
    write_atomic(out / "ablation.md", markdown)
    write_atomic(out / "ablation.csv", table_csv(records, columns))
    plot_metric(records, metric, out / "ablation.png",
                note="tiny random model (smoke run): scores near zero are expected" if tiny else "")
    return {"runs": records, "columns": columns, "metric": metric, "markdown": markdown, "tiny_model": tiny,
            "csv": str(out / "ablation.csv"), "md": str(out / "ablation.md"), "png": str(out / "ablation.png")}


# ----------------------------------------------------------------------------------------------------- summary
def table_columns(records: list[dict[str, Any]]) -> list[str]:
    """Metric columns ``<task>/<metric>``: per task, its main metrics (generated and likelihood accuracy, or WER),
    per-category accuracies, then the rest."""
    columns: list[str] = []
    tasks = [t["name"] for t in records[0]["tasks"]] if records else []
    for task in tasks:
        keys = {k[len(task) + 1:] for r in records for k in r["metrics"] if k.startswith(f"{task}/")}
        categories = sorted(k for k in keys if k.startswith("accuracy/"))
        ordered = [k for k in _MAIN_METRICS if k in keys] + categories + [k for k in _OTHER_METRICS if k in keys]
        columns += [f"{task}/{k}" for k in ordered]
    return columns


def _main_metric(records: list[dict[str, Any]]) -> str:
    task = records[0]["tasks"][0]
    return f"{task['name']}/{'wer' if task['type'] == 'transcription' else 'accuracy'}"


def _cell(value) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def table_markdown(records: list[dict[str, Any]], columns: list[str]) -> str:
    """Rows: runs (with their experts and K); columns: metrics."""
    rows = [[r["run"], ", ".join(r["experts"]) or "-", r["num_thinking"],
             *(_cell(r["metrics"].get(c)) for c in columns)] for r in records]
    return markdown_table(["run", "experts", "K", *columns], rows)


def table_csv(records: list[dict[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["run", "experts", "num_thinking", *columns])
    for r in records:
        writer.writerow([r["run"], " ".join(r["experts"]), r["num_thinking"],
                         *("" if r["metrics"].get(c) is None else r["metrics"][c] for c in columns)])
    return buffer.getvalue()


def plot_metric(records: list[dict[str, Any]], metric: str, path: Path, note: str = "") -> None:
    """A bar chart of ``metric`` per run; ``note`` goes under the title (why the bars may be empty)."""
    names = [r["run"] for r in records]
    values = [float(r["metrics"].get(metric) or 0.0) for r in records]
    with figure(path, (max(4.0, 0.8 * len(names) + 1.5), 3.5)) as (_, ax):
        bars = ax.bar(names, values, color=["#999999" if not r["thinking"] else "#4c72b0" for r in records])
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
        ax.set_ylim(0, max(values + [0.0]) * 1.15 or 1.0)
        ax.set_ylabel(metric)
        ax.set_title(f"coat ablate: {metric}" + (f"\n{note}" if note else ""), fontsize=10 if note else None)
        for label in ax.get_xticklabels():
            label.set_rotation(30)
            label.set_horizontalalignment("right")
