"""lmms-eval's model ``coat`` through lmms-eval's real CLI, offline: a local task YAML (tests/lmms_eval_tasks) on local
audio with a tiny Qwen2-Audio and a CoAT adapter. Its multiple-choice scores are coat eval's likelihood scores of the
same data, option by option, and its generated answers are coat eval's."""

import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from coat.cli import main as coat_main
from coat.data.synth import SynthConfig, generate_split, synth_words, write_manifest

pytest.importorskip("lmms_eval", reason="lmms-eval is not installed (pip install -e '.[lmms-eval]')")

ROOT = Path(__file__).resolve().parent.parent
TASKS = Path(__file__).parent / "lmms_eval_tasks"


def _entry_point_env(tmp_path: Path) -> dict:
    """The environment of the CLI: this checkout first on the path, offline. Where the installed coat-lalm predates
    the entry point (an editable install made before it existed), a distribution record holding pyproject.toml's
    own ``lmms_eval.models`` entry points stands in for it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf"), "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "disabled"}
    section = (ROOT / "pyproject.toml").read_text().split('[project.entry-points."lmms_eval.models"]\n')[1]
    declared = dict(re.findall(r'^(\w+) = "([\w.:]+)"$', section.split("\n[")[0], re.M))  # no tomllib on 3.10
    assert declared == {"coat": "coat.lmms_eval_model:manifest"}
    if not metadata.entry_points(group="lmms_eval.models", name="coat"):
        record = tmp_path / "shim" / "coat_lalm_entry_points-0.dist-info"
        record.mkdir(parents=True)
        (record / "METADATA").write_text("Metadata-Version: 2.1\nName: coat-lalm-entry-points\nVersion: 0\n")
        (record / "entry_points.txt").write_text("[lmms_eval.models]\n" + "".join(
            f"{name} = {target}\n" for name, target in declared.items()))
        env["PYTHONPATH"] += os.pathsep + str(tmp_path / "shim")
    return env


@pytest.fixture(scope="module")
def setup(save_tiny_with_adapter):
    """The tiny model and adapter, the local task folder with its data (12 synthetic clips in coat's manifest
    layout), and the lmms-eval run over both tasks."""
    tmp = save_tiny_with_adapter("lmms", synth_words())
    tasks = tmp / "tasks"
    shutil.copytree(TASKS, tasks)
    manifest = write_manifest(generate_split(SynthConfig(test_size=12, seed=3), "test"), tasks / "data")
    manifest.rename(tasks / "data" / "test.jsonl")
    command = [sys.executable, "-m", "lmms_eval", "--model", "coat", "--model_args",
               f"pretrained={tmp / 'model'},adapter={tmp / 'adapter'}", "--tasks", "coat_local_mc,coat_local_gen",
               "--include_path", str(tasks), "--batch_size", "4", "--device", "cpu", "--output_path",
               str(tmp / "out"), "--log_samples"]
    done = subprocess.run(command, cwd=tmp, env=_entry_point_env(tmp), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return tmp, done


def _samples(out: Path, task: str) -> list[dict]:
    (file,) = out.rglob(f"*samples_{task}.jsonl")
    return sorted((json.loads(line) for line in file.read_text().splitlines()), key=lambda s: s["doc_id"])


def _coat_eval(tmp: Path, scoring: str) -> dict:
    config = {"model": {"name_or_path": str(tmp / "model")}, "adapters": [str(tmp / "adapter")],
              "evaluate_base": False, "output_dir": str(tmp / f"coat_{scoring}"), "batch_size": 5,
              "max_new_tokens": 3, "progress": False,
              "tasks": [{"name": "t", "scoring": scoring, "category_column": None,
                         "data": {"source": {"path": str(tmp / "tasks" / "data" / "test.jsonl")}}}]}
    path = tmp / f"eval_{scoring}.yaml"
    path.write_text(json.dumps(config))
    assert coat_main(["eval", str(path)]) == 0
    return json.loads((tmp / f"coat_{scoring}" / "results.json").read_text())["models"]["adapter"]["t"]


def test_multiple_choice_through_the_cli_is_coat_evals_likelihood(setup):
    tmp, _ = setup
    (results_file,) = (tmp / "out").rglob("*_results.json")
    scores = json.loads(results_file.read_text())["results"]["coat_local_mc"]
    mine = _coat_eval(tmp, "likelihood")
    assert scores["acc,none"] == pytest.approx(mine["metrics"]["likelihood_accuracy_unnorm"])
    assert scores["acc_norm,none"] == pytest.approx(mine["metrics"]["likelihood_accuracy"])  # ASCII: chars = bytes
    rows = [json.loads(line) for line in (tmp / "tasks" / "data" / "test.jsonl").read_text().splitlines()]
    by_id = {p["id"]: p["likelihood"]["logprobs"] for p in mine["predictions"]}
    for sample in _samples(tmp / "out", "coat_local_mc"):
        nll = [float(value) for value, _ in sample["filtered_resps"]]  # the model's (value, is_greedy) per choice
        assert [-v for v in nll] == pytest.approx(by_id[rows[sample["doc_id"]]["id"]], abs=1e-4)


def test_generation_through_the_cli_is_coat_evals(setup):
    tmp, _ = setup
    mine = {p["id"]: p["prediction"] for p in _coat_eval(tmp, "mmau")["predictions"]}
    rows = [json.loads(line) for line in (tmp / "tasks" / "data" / "test.jsonl").read_text().splitlines()]
    samples = _samples(tmp / "out", "coat_local_gen")
    assert len(samples) == 12
    assert [s["filtered_resps"] for s in samples] == [mine[rows[s["doc_id"]]["id"]] for s in samples]
