"""``coat ablate``: the grid, the real command on the tiny config (3 runs), kill-and-restart, config typos."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coat.ablation import GridRun, default_grid, load_ablation_config, resolve, run_train_config
from coat.cli import main as coat_main
from coat.config_io import ConfigError

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "ablate_tiny.yaml"
RUNS = ["no_thinking", "pause", "reconstruction"]  # the reconstruction expert needs no weights: no CREPE here
# the smallest budget that still trains every part: 2 steps per stage, batch 2, one clip per category
BUDGET = ["train.overrides.data.synth.train_size=6", "train.overrides.training.per_device_batch_size=2",
          "train.overrides.stages=[{name: thinking_and_heads, train: [thinking, heads], max_steps: 2, "
          "learning_rate: 0.01}, {name: joint, train: [thinking, heads, lora], max_steps: 2, learning_rate: 0.01}]",
          f"runs=[{', '.join(RUNS)}]"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The config's relative paths (tiny model, shared target cache, eval data) land here, shared by the tests."""
    return tmp_path_factory.mktemp("ablate_work")


def test_default_grid_is_exact_and_without_duplicates():
    names = [run.name for run in default_grid(["a", "b", "c"])]
    assert names == ["no_thinking", "pause", "a", "b", "c", "all_but_a", "all_but_b", "all_but_c", "all"]
    assert [run.name for run in default_grid(["a", "b"])] == ["no_thinking", "pause", "a", "b", "all"]
    assert [run.name for run in default_grid(["a"])] == ["no_thinking", "pause", "all"]
    for experts in (["a"], ["a", "b"], ["a", "b", "c"]):
        sets = [(run.thinking, frozenset(run.experts)) for run in default_grid(experts)]
        assert len(sets) == len(set(sets)), experts
    grid = {run.name: run for run in default_grid(["a", "b", "c"])}
    assert not grid["no_thinking"].thinking and grid["no_thinking"].experts == []
    assert grid["pause"].thinking and grid["pause"].experts == []
    assert grid["all_but_b"].experts == ["a", "c"] and grid["all"].experts == ["a", "b", "c"]


def test_tiny_config_resolves_to_runs_with_the_same_budget(tmp_path):
    resolved = resolve(load_ablation_config(CONFIG))
    assert [run.name for run in resolved.grid] == ["no_thinking", "pause", "pitch", "reconstruction", "all"]
    runs = {run.name: run_train_config(resolved.train, run, tmp_path, seed=3) for run in resolved.grid}
    # no_thinking: K=0, no experts, the thinking-only stage is dropped, the joint stage keeps its steps for LoRA
    assert runs["no_thinking"].coat.num_thinking == 0 and runs["no_thinking"].experts == []
    assert [(s.name, s.train, s.max_steps) for s in runs["no_thinking"].stages] == [("joint", ["lora"], 8)]
    assert [(s.train, s.max_steps) for s in runs["pause"].stages] == [(["thinking"], 4), (["thinking", "lora"], 8)]
    assert [e.name for e in runs["pitch"].experts] == ["pitch"]
    assert [s.train for s in runs["all"].stages] == [s.train for s in resolved.train.stages]
    for name, config in runs.items():
        assert config.training.seed == 3 and config.training.output_dir == str(tmp_path / name / "train")
        assert config.targets.cache_dir == resolved.train.targets.cache_dir  # one shared target cache
        assert config.data == resolved.train.data
    explicit = load_ablation_config(CONFIG, ["grid=[pause, {name: both, experts: [reconstruction, pitch]}]"])
    assert [(r.name, r.experts) for r in resolve(explicit).grid] == [("pause", []),
                                                                       ("both", ["reconstruction", "pitch"])]


def _rows(out: Path) -> list[dict]:
    with open(out / "ablation.csv") as f:
        return list(csv.DictReader(f))


def test_ablate_three_runs_writes_table_csv_and_chart(workdir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    out = tmp_path / "ablation"
    assert coat_main(["ablate", str(CONFIG), *BUDGET, f"output_dir={out}"]) == 0
    printed = capsys.readouterr().out
    table = (out / "ablation.md").read_text()
    assert table in printed
    lines = [line for line in table.splitlines() if line.startswith("|")]
    assert "synth_mc/accuracy" in lines[0] and "synth_mc/accuracy/note" in lines[0]  # per-category columns
    assert "smoke run on a tiny random model" in table  # a table of near-zero scores says why
    assert [line.split("|")[1].strip() for line in lines[2:]] == RUNS
    rows = _rows(out)
    assert [r["run"] for r in rows] == RUNS
    assert [r["num_thinking"] for r in rows] == ["0", "8", "8"]
    assert all(0.0 <= float(r["synth_mc/accuracy"]) <= 1.0 for r in rows)
    # the likelihood pick's accuracy beside the generated answers', read from each run's own results
    header = [c.strip() for c in lines[0].split("|")[1:-1]]
    assert header[3:5] == ["synth_mc/accuracy", "synth_mc/likelihood_accuracy"]
    for r in rows:
        results = json.loads((out / r["run"] / "eval" / "results.json").read_text())
        metrics = results["models"][r["run"]]["synth_mc"]["metrics"]
        assert float(r["synth_mc/likelihood_accuracy"]) == pytest.approx(metrics["likelihood_accuracy"])
    assert (out / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for run in RUNS:
        done = json.loads((out / run / "done.json").read_text())
        assert done["run"] == run and "synth_mc/accuracy" in done["metrics"]
        assert (out / run / "train" / "adapter" / "coat_config.json").is_file()
        assert (out / run / "eval" / "results.json").is_file()
        assert (out / run / "train_config.yaml").is_file()
    no_thinking = json.loads((out / "no_thinking" / "train" / "adapter" / "coat_config.json").read_text())
    assert no_thinking["num_thinking"] == 0 and "heads" not in no_thinking
    assert (out / "no_thinking" / "train" / "adapter" / "lora").is_dir()
    assert not (out / "no_thinking" / "train" / "stage-0-thinking_and_heads").exists()
    # log-mel is made in the data loader (issue 17): the reconstruction expert writes no target cache at all
    assert not list((workdir / "runs" / "ablate_tiny" / "targets").glob("reconstruction-*"))


def _command(out: Path) -> list[str]:
    return [sys.executable, "-m", "coat", "ablate", str(CONFIG), *BUDGET, f"output_dir={out}"]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def test_killed_and_restarted_reruns_only_unfinished_runs(workdir, tmp_path):
    out = tmp_path / "ablation"
    log = tmp_path / "first.log"
    with open(log, "w") as f:
        proc = subprocess.Popen(_command(out), cwd=workdir, env=_env(), stdout=f, stderr=subprocess.STDOUT)
    first = out / RUNS[0] / "done.json"
    deadline = time.time() + 240
    while not first.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.is_file(), log.read_text()[-3000:]
    finished = {run: ((out / run / "done.json").stat().st_mtime_ns, (out / run / "done.json").read_bytes())
                for run in RUNS if (out / run / "done.json").is_file()}
    assert RUNS[-1] not in finished, "the first invocation finished before it was killed"
    assert not (out / "ablation.csv").exists()

    second = subprocess.run(_command(out), cwd=workdir, env=_env(), capture_output=True, text=True, timeout=240)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    for run, (mtime, content) in finished.items():
        assert f"{run}: skipped, finished before" in second.stdout
        assert (out / run / "done.json").stat().st_mtime_ns == mtime
        assert (out / run / "done.json").read_bytes() == content
    rerun = [run for run in RUNS if run not in finished]
    assert rerun
    for run in rerun:
        assert f"{run}: skipped" not in second.stdout
        assert f"[coat ablate] {run}: done" in second.stdout
        assert (out / run / "done.json").is_file()
    assert [r["run"] for r in _rows(out)] == RUNS


@pytest.mark.parametrize("override, key", [
    ("output_dri=x", "output_dri"),
    ("train.overrides.heads.num_frame=4", "train.heads.num_frame"),
    ("train.epochs=2", "train.epochs"),
    ("eval.batch_sise=2", "eval.batch_sise"),
    ("eval.model={name_or_path: other}", "eval.model"),
    ("grid=[{name: x, expert: [pitch]}]", "grid[0].expert"),
    ("grid=[{name: x, experts: [pitchh]}]", "pitchh"),
    ("runs=[pausee]", "pausee"),
])
def test_config_typo_is_an_error_naming_the_key(override, key, capsys):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_ablation_config(CONFIG, [override])
    assert coat_main(["ablate", str(CONFIG), override]) == 2
    assert key in capsys.readouterr().err


def test_a_run_without_thinking_cannot_have_experts():
    with pytest.raises(ValueError, match="thinking: false"):
        GridRun("x", ["pitch"], thinking=False)
