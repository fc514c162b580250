"""coat train: the tiny config end to end, resume, the pause-style baseline, configs and bad input."""

import json
import re
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

import coat
from coat.config_io import ConfigError, load_config
from coat.loading import ModelConfig, load_model_and_processor
from coat.training import TrainConfig, TrainingRecipe, run_training

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "configs" / "tiny.yaml"


def _config(tmp, *overrides):
    return load_config(TrainConfig, TINY, [f"model.name_or_path={tmp}/model", f"targets.cache_dir={tmp}/targets",
                                           f"training.output_dir={tmp}/train", *overrides])


def _run(config, callbacks=None):
    """The recipe, step by step (its model, dataset and collator stay inspectable), and its result."""
    recipe = TrainingRecipe(config, callbacks)
    recipe.setup()
    recipe.train()
    return recipe, recipe.save()


def _curve(history, key, stage=None):
    return [e[key] for e in history if key in e and (stage is None or e["stage"] == stage)]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiny")
    return (tmp, *_run(_config(tmp)))


def test_tiny_config_losses_fall_and_the_adapter_reloads(tiny_run):
    tmp, recipe, result = tiny_run
    history = result.log_history
    for key in ("loss_pitch", "loss_voicing", "loss_logmel"):
        curve = _curve(history, key)
        assert curve[-1] < curve[0], (key, curve)
    text = _curve(history, "text_loss", "joint")
    assert text[-1] < text[0], text

    model = recipe.model.eval()
    batch = recipe.collator([recipe.dataset[i] for i in range(3)])
    targets = batch.pop("expert_targets")
    with torch.no_grad():
        expected = model(**batch, expert_targets=targets)
    base, _ = load_model_and_processor(ModelConfig(name_or_path=str(tmp / "model")))
    reloaded = coat.CoATModel.from_pretrained(base, result.adapter).eval()
    assert sorted(p.name for p in Path(result.adapter).iterdir()) == ["coat_config.json",
                                                                           "coat_model.safetensors", "lora"]
    with torch.no_grad():
        got = reloaded(**batch, expert_targets=targets)
    assert torch.equal(got.logits, expected.logits)
    assert torch.equal(got.loss, expected.loss)


def test_a_finished_run_trains_nothing_and_says_so(tiny_run, capsys):
    from coat.cli import main

    tmp, _, result = tiny_run
    assert main(["train", str(TINY), f"model.name_or_path={tmp}/model", f"targets.cache_dir={tmp}/targets",
                 f"training.output_dir={tmp}/train"]) == 0
    out = capsys.readouterr().out
    assert "stage joint: finished in an earlier run" in out
    assert "nothing to train" in out and result.adapter in out
    assert "adapter saved" not in out


class _Interrupt(TrainerCallback):
    def __init__(self, stage_dir_name, step):
        self.stage_dir_name, self.step = stage_dir_name, step

    def on_step_end(self, args, state, control, **kwargs):
        if Path(args.output_dir).name == self.stage_dir_name and state.global_step == self.step:
            raise KeyboardInterrupt("simulated interruption")


def test_interrupted_run_resumes_to_the_same_weights_past_what_a_kill_left_half_written(tmp_path, capsys):
    stages = ("stages=[{name: thinking_and_heads, train: [thinking, heads], max_steps: 4, learning_rate: 0.01},"
              " {name: joint, train: [thinking, heads, lora], max_steps: 8, learning_rate: 0.01}]")
    common = ["experts=[{name: reconstruction, weight: 0.1}]", stages, "training.save_steps=3"]
    straight, straight_result = _run(_config(tmp_path / "a", *common))
    with pytest.raises(KeyboardInterrupt):
        run_training(_config(tmp_path / "b", *common), callbacks=[_Interrupt("stage-1-joint", 5)])
    stage = tmp_path / "b" / "train" / "stage-1-joint"
    assert (stage / "checkpoint-3").is_dir() and not (stage / "adapter").exists()
    # what `kill -9` leaves while the Trainer writes checkpoint-6: a 0-byte optimizer.pt, no trainer_state.json
    import shutil

    shutil.copytree(stage / "checkpoint-3", stage / "checkpoint-6")
    (stage / "checkpoint-6" / "optimizer.pt").write_bytes(b"")
    (stage / "checkpoint-6" / "trainer_state.json").unlink()
    # and what a kill inside an adapter save left before saves were atomic: the config, no weights
    first = tmp_path / "b" / "train" / "stage-0-thinking_and_heads" / "adapter"
    (first / "coat_model.safetensors").unlink()
    shutil.rmtree(first / "lora")
    capsys.readouterr()
    resumed, resumed_result = _run(_config(tmp_path / "b", *common))
    out = capsys.readouterr().out
    assert "stage-1-joint: skipping incomplete checkpoint-6 (trainer_state.json missing); removed it" in out
    assert "stage-1-joint: resuming from checkpoint-3" in out
    a = straight.model.coat_state_dict()
    b = resumed.model.coat_state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    lora_a = {n: p for n, p in straight.model.named_parameters() if "lora_" in n}
    lora_b = {n: p for n, p in resumed.model.named_parameters() if "lora_" in n}
    assert all(torch.allclose(lora_a[n], lora_b[n], atol=1e-6) for n in lora_a)
    assert _curve(straight_result.log_history, "text_loss")[-1] == pytest.approx(
        _curve(resumed_result.log_history, "text_loss")[-1], abs=1e-5)


class _Snapshot(TrainerCallback):
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.heads = {k: v.clone() for k, v in model.heads.state_dict().items()}
        self.thinking = model.thinking_embedding.thinking.detach().clone()


def test_zero_expert_weights_train_a_pause_style_block_and_leave_heads_alone(tmp_path):
    stages = "stages=[{name: joint, train: [thinking, heads, lora], max_steps: 3, learning_rate: 0.01}]"
    config = _config(tmp_path, "experts=[{name: reconstruction, weight: 0.0}]", stages)
    snapshot = _Snapshot()
    recipe, result = _run(config, callbacks=[snapshot])
    history = result.log_history
    assert not any(k.startswith("loss_") for e in history for k in e)
    assert _curve(history, "text_loss")
    heads_after = recipe.model.heads.state_dict()
    for name, value in snapshot.heads.items():
        assert torch.equal(heads_after[name], value), name  # no gradient ever reached them
    assert not torch.equal(recipe.model.thinking_embedding.thinking, snapshot.thinking)


def test_a_cache_missing_examples_is_an_error_naming_them(tiny_run, tmp_path):
    tmp, _, _ = tiny_run
    # same caches, more training examples than were extracted
    config = _config(tmp, "data.synth.train_size=52", "targets.compute=false", f"training.output_dir={tmp_path}")
    with pytest.raises(FileNotFoundError, match="no target cache of expert 'pitch'"):
        run_training(config)


ONE_STAGE = "stages=[{name: joint, train: [thinking, lora], max_steps: 2, learning_rate: 0.01}]"

# A custom expert in a module of its own, registered when `targets.imports` names the module.
PEAK_EXPERT = '''
import numpy as np
from coat.experts import Expert, TargetSpec, register_expert


class PeakExpert(Expert):
    name = "peak"

    def specs(self):
        return (TargetSpec("peak", self.sample_rate, 50.0, 1, "regression"),)

    def params(self):
        return {}

    def compute(self, waveforms, lengths):
        spec = self.specs()[0]
        out = []
        for wave, n in zip(waveforms.abs().cpu().numpy(), lengths.tolist()):
            frames = spec.num_frames(int(n))
            hop = -(-int(n) // frames)
            out.append({"peak": np.array([[wave[i * hop:(i + 1) * hop].max(initial=0.0)] for i in range(frames)],
                                         np.float32)})
        return out


register_expert("peak", PeakExpert)
'''


def test_a_custom_expert_from_imports_trains_and_coat_targets_computes_the_cache_train_opens(tmp_path, monkeypatch,
                                                                                          capsys):
    """`targets.imports` registers a custom expert for `coat train` as for `coat targets`; the two commands, given the
    same targets section (here non-default checks), compute and open the same cache: one folder, computed once."""
    from coat.cli import main

    (tmp_path / "peak_expert.py").write_text(PEAK_EXPERT)
    monkeypatch.syspath_prepend(str(tmp_path))
    manifest = _manifest(tmp_path, n=4)
    sections = [f"data.source.path={manifest}", "experts=[peak]", "targets.imports=[peak_expert]",
                f"targets.cache_dir={tmp_path}/targets", "targets.checks.min_seconds=0.5"]
    assert main(["targets", *sections, "progress=false"]) == 0
    config = _config(tmp_path, "data.synth=null", *sections, "targets.compute=false",
                     "stages=[{name: joint, train: [thinking, heads], max_steps: 2, learning_rate: 0.01}]",
                     "training.logging_steps=1")
    result = run_training(config)
    assert _curve(result.log_history, "loss_peak")
    assert [p.name.split("-")[0] for p in (tmp_path / "targets").glob("peak-*")] == ["peak"]  # one cache for both
    capsys.readouterr()  # computing again finds it finished: nothing is computed twice
    run_training(_config(tmp_path, "data.synth=null", *sections, "targets.compute=true", ONE_STAGE,
                         f"training.output_dir={tmp_path}/again"))
    assert "(reused, nothing computed)" in capsys.readouterr().out
    assert len(list((tmp_path / "targets").glob("peak-*"))) == 1


def _manifest(tmp_path, n=6, **replace):
    """A JSONL manifest of ``n`` synthetic examples; ``replace``: index -> (id, audio) written as a float wav."""
    import soundfile as sf

    from coat.data.synth import SynthConfig, generate_split, write_manifest

    examples = generate_split(SynthConfig(train_size=n, validation_size=0, test_size=0), "train")
    manifest = write_manifest(examples, tmp_path / "data")
    if replace:
        rows = [json.loads(line) for line in manifest.read_text().splitlines()]
        for index, (id_, audio) in replace.items():
            rows[int(index)] |= {"id": id_, "audio": f"{id_}.wav"}
            sf.write(tmp_path / "data" / f"{id_}.wav", audio, 16000, subtype="FLOAT")
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def test_bad_audio_is_reported_and_left_out_before_training(tmp_path, capsys):
    """The target cache reports a silent clip; training leaves it out, saying so, and trains on the rest."""
    import numpy as np

    manifest = _manifest(tmp_path, **{"2": ("silent-one", np.zeros(16000, np.float32))})
    config = _config(tmp_path, "data.synth=null", f"data.source={{path: {manifest}}}",
                     "experts=[{name: reconstruction}]", ONE_STAGE)
    recipe, _ = _run(config)
    assert len(recipe.dataset) == 5 and "silent-one" not in recipe.dataset.source.ids()
    assert "left out 1 of 6 training example(s) with bad audio: 'silent-one' (silent" in capsys.readouterr().out
    assert json.loads((tmp_path / "train" / "bad_audio.jsonl").read_text())["reason"] == "silent"


def test_non_finite_audio_never_trains_a_nan_adapter_without_experts(tmp_path, capsys):
    """The pause / no-thinking baselines have no target cache: training checks the audio itself."""
    import numpy as np
    from safetensors.torch import load_file

    audio = np.full(16000, 0.1, np.float32)
    audio[:1000] = np.inf
    manifest = _manifest(tmp_path, **{"1": ("inf-one", audio)})
    config = _config(tmp_path, "data.synth=null", f"data.source={{path: {manifest}}}", "experts=[]", ONE_STAGE)
    recipe, _ = _run(config)
    for file in ("coat_model.safetensors", "lora/adapter_model.safetensors"):
        assert all(torch.isfinite(t).all() for t in load_file(tmp_path / "train" / "adapter" / file).values())
    assert "'inf-one' (nonfinite: 1000 NaN/inf samples)" in capsys.readouterr().out
    assert len(recipe.dataset) == 5

    alone = tmp_path / "alone.jsonl"
    alone.write_text(manifest.read_text().splitlines()[1] + "\n")
    config = _config(tmp_path, "data.synth=null", f"data.source={{path: {alone}}}", "experts=[]", ONE_STAGE,
                     f"training.output_dir={tmp_path}/alone")
    with pytest.raises(ValueError, match="no training examples left: all 1 have bad audio"):
        run_training(config)


class _Diverge(TrainerCallback):
    """Weights go NaN before step 2 (as after a diverged update): step 2's loss is NaN."""

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == 1:
            with torch.no_grad():
                model.thinking_embedding.thinking.fill_(float("nan"))


def test_a_non_finite_loss_stops_the_run_naming_the_batch_and_saves_nothing(tmp_path):
    from coat.training import NonFiniteLossError

    manifest = _manifest(tmp_path)
    ids = [json.loads(line)["id"] for line in manifest.read_text().splitlines()]
    config = _config(tmp_path, "data.synth=null", f"data.source={{path: {manifest}}}", "experts=[]", ONE_STAGE,
                     "training.save_steps=1")
    with pytest.raises(NonFiniteLossError, match=r"stage-0-joint: the loss is nan at step 2 .* on the batch of "
                                                 r"examples \[('[^']+', ){5}'[^']+'\]") as err:
        run_training(config, callbacks=[_Diverge()])
    assert set(ids) == set(re.findall(r"'([^']+)'", str(err.value).split("examples")[1]))
    stage = tmp_path / "train" / "stage-0-joint"
    assert not (stage / "adapter").exists() and not (tmp_path / "train" / "adapter").exists()
    assert sorted(p.name for p in stage.iterdir()) == ["checkpoint-1"]  # from before the NaN: finite


def test_a_row_without_audio_is_named(tmp_path, capsys):
    manifest = tmp_path / "train.jsonl"
    manifest.write_text(json.dumps({"id": "ex1", "audio": "missing.wav", "question": "q", "answer": "a"}) + "\n")
    config = _config(tmp_path, "data.synth=null", f"data.source={{path: {manifest}}}", "experts=[]")
    with pytest.raises(ValueError, match="no training examples left: all 1 have bad audio"):
        run_training(config)
    assert "'ex1' (unreadable: " in capsys.readouterr().out and "missing.wav: file not found" in \
        (tmp_path / "train" / "bad_audio.jsonl").read_text()
    manifest.write_text(json.dumps({"id": "ex2", "question": "q", "answer": "a"}) + "\n")
    with pytest.raises(ValueError, match="needs an 'audio' field"):
        run_training(config)
    manifest.write_text(json.dumps({"id": "ex3", "audio": None, "question": "q", "answer": "a"}) + "\n")
    with pytest.raises(ValueError, match=r"train.jsonl:1: 'audio' must be the path of an audio file .*got None"):
        run_training(config)
    manifest.write_text("")
    with pytest.raises(ValueError, match="has no examples"):
        run_training(config)


def test_a_stage_name_cannot_leave_the_output_folder(tmp_path):
    for name in ("../escape", "a/b", "..", ".hidden"):
        with pytest.raises(ConfigError, match="must be a folder name"):
            _config(tmp_path, f"stages=[{{name: '{name}', train: [thinking]}}]")


def test_two_processes_train_with_the_same_loss_curve_shape(tmp_path, accelerate_launch):
    """accelerate launch on 2 CPU processes (gloo): same stages, falling losses, like one process."""
    import os
    import subprocess
    import sys

    stages = "stages=[{name: joint, train: [thinking, heads, lora], max_steps: 6, learning_rate: 0.01}]"
    args = ["-m", "coat", "train", str(TINY), f"model.name_or_path={tmp_path}/model",
            f"targets.cache_dir={tmp_path}/targets", "experts=[{name: reconstruction, weight: 0.1}]", stages,
            "training.logging_steps=2", "training.save_steps=100"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = accelerate_launch(2, "--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend",
                               "no")
    two = subprocess.run([*launch, *args, f"training.output_dir={tmp_path}/two"], env=env, capture_output=True,
                         text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, *args, f"training.output_dir={tmp_path}/one"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    # a log file, not a terminal: progress as plain lines (no carriage returns), log lines with the stage name and
    # numbers as numbers, once per run (not once per process), no weight-loading bars for a tiny model
    for run in (one, two):
        assert "\r" not in run.stdout + run.stderr
        assert "[joint] step 2/" in run.stdout and "'" not in run.stdout.split("[joint] step 2/")[1].splitlines()[0]
        assert run.stdout.count("[joint] step 2/") == 1
        assert "Loading weights" not in run.stderr and "Writing model shards" not in run.stderr
    curves = {}
    for name in ("one", "two"):
        history = json.loads((tmp_path / name / "log_history.json").read_text())
        curves[name] = {k: _curve(history, k) for k in ("text_loss", "loss_logmel")}
        assert (tmp_path / name / "adapter" / "coat_model.safetensors").is_file()
    assert [e["epoch"] for e in json.loads((tmp_path / "two" / "log_history.json").read_text()) if "loss" in e] \
        == [2 * e["epoch"] for e in json.loads((tmp_path / "one" / "log_history.json").read_text()) if "loss" in e]
    for key in ("text_loss", "loss_logmel"):
        assert len(curves["one"][key]) == len(curves["two"][key]) == 3
        assert curves["one"][key][-1] < curves["one"][key][0] and curves["two"][key][-1] < curves["two"][key][0]


def test_config_typo_is_an_error_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match="training.per_device_batch_sise"):
        _config(tmp_path, "training.per_device_batch_sise=4")
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text().replace("num_frames:", "num_frame:"))
    with pytest.raises(ConfigError, match="heads.num_frame"):
        load_config(TrainConfig, bad)
    with pytest.raises(ConfigError, match="stage 'x'"):
        _config(tmp_path, "stages=[{name: x, train: [everything]}]")


def test_a_damaged_target_cache_is_computed_again_by_a_run_that_computes_targets(tmp_path, capsys):
    import shutil

    from coat.experts.config import load_experts, target_caches
    from coat.training import training_source

    manifest = _manifest(tmp_path, n=3)
    config = _config(tmp_path, "data.synth=null", f"data.source={{path: {manifest}}}",
                     "experts=[{name: reconstruction}]")
    source, experts = training_source(config), load_experts(config.targets, config.experts)
    (cache,) = target_caches(config.targets, source, experts)
    shutil.rmtree(cache.path / "data")  # deleted by hand (or a disk cleanup): never reported as reused
    (again,) = target_caches(config.targets, source, experts)
    assert "is damaged (data/ is missing); computing it again" in capsys.readouterr().out
    assert again.ids() == source.ids()
    shutil.rmtree(again.path / "data")
    config.targets.compute = False
    with pytest.raises(FileNotFoundError, match=r"is damaged: data/ is missing.*Run `coat targets` with the same"):
        target_caches(config.targets, source, experts)


def test_the_newest_complete_checkpoint_is_chosen(load_tiny, tmp_path):
    from coat.training import last_complete_checkpoint

    model = coat.wrap(load_tiny("qwen2_audio"), num_thinking=2)
    for step in (3, 6, 9, 12):
        checkpoint = tmp_path / f"checkpoint-{step}"
        model.save_pretrained(checkpoint)
        (checkpoint / "optimizer.pt").write_bytes(b"state")
        (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (tmp_path / "checkpoint-12" / "trainer_state.json").write_text('{"global_st')  # killed while writing it
    (tmp_path / "checkpoint-9" / "optimizer.pt").write_bytes(b"")
    (tmp_path / "checkpoint-6" / "coat_model.safetensors").unlink()
    last, incomplete = last_complete_checkpoint(tmp_path)
    assert last.name == "checkpoint-3"
    assert [(p.name, why) for p, why in incomplete] == [
        ("checkpoint-12", "trainer_state.json does not parse"), ("checkpoint-9", "optimizer.pt empty"),
        ("checkpoint-6", "coat_model.safetensors is missing")]
