"""CoAT under sharding (coat/distributed.py): FSDP2 on CPU processes over gloo, for real; DeepSpeed ZeRO-3 where
deepspeed is installed (the `deepspeed` extra, part of `dev` and the lock; without it those tests skip, and say
so).

Two kinds of tests: functions run in 2 spawned processes of one gloo group (the DTensor and ZeRO-3 paths of the
module itself), and ``accelerate launch --config_file configs/accelerate/fsdp.yaml -m coat train`` as a subprocess
(the whole recipe: the Trainer's FSDP2 preparation, checkpoints and resume).

Tolerances (float32 on CPU, stated once here):
- FSDP and DDP on the same 2 processes see the same batches: every logged loss within 1e-4 relative (measured
  1.4e-5) and the reloaded adapters' logits within 1e-4 (measured 7.5e-7). The differences are the order of float
  sums in reduce-scatter versus all-reduce.
- 2 processes of 8 examples against 1 process of 16 (the same global batch, the same examples each step): the total
  and text losses within 1% at every logged step (measured 0.2%). Not closer, because each process averages its own
  half batch and the halves are averaged (examples weigh by their half's token and frame counts, not the batch's).
- Sharded and unsharded copies of one model in one process group: identical saved adapters (bit for bit) and logits
  within 1e-5.
"""

import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

import coat
from coat import distributed, zoo
from coat.experts.base import TargetSpec
from coat.heads import HeadConfig

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "configs" / "tiny.yaml"
SPECS = [TargetSpec("pitch", 16000, 100.0, 6, "distribution"), TargetSpec("event", 16000, None, 1, "multilabel")]


# ----------------------------------------------------------------------------------------------------- one process
@pytest.mark.parametrize("family", zoo.FAMILIES)
def test_fsdp_wraps_each_family_layer_by_layer(family, load_tiny):
    from accelerate.utils.dataclasses import get_module_class_from_name

    model = coat.wrap(load_tiny(family), num_thinking=2)
    names = model._no_split_modules
    decoder = type(model.adapter.decoder_layers(model.base_model)[0]).__name__
    assert names[0] == decoder
    assert type(model.adapter.audio_layers(model.base_model)[0]).__name__ in names
    for name in names:  # what accelerate's TRANSFORMER_BASED_WRAP looks up: every name is a class in the model
        assert get_module_class_from_name(model, name) is not None, name


@pytest.mark.parametrize("name, kind", [("ddp", "MULTI_GPU"), ("fsdp", "FSDP"), ("zero2", "DEEPSPEED"),
                                        ("zero3", "DEEPSPEED")])
def test_accelerate_configs_load_with_accelerate_and_name_what_they_use(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(ROOT / "configs" / "accelerate" / f"{name}.yaml"))  # unknown keys raise
    assert config.distributed_type.value == kind
    if kind == "FSDP":
        assert config.fsdp_config["fsdp_version"] == 2
        assert config.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    if kind == "DEEPSPEED":
        ds = json.loads((ROOT / config.deepspeed_config["deepspeed_config_file"]).read_text())
        assert ds["zero_optimization"]["stage"] == int(name[-1])
        assert ds["bf16"]["enabled"] == ds["train_micro_batch_size_per_gpu"] == "auto"  # from the coat config


def test_accelerate_state_is_left_alone_without_an_fsdp_or_deepspeed_launch(monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    assert distributed.enable_sharding_on_cpu() is None


def test_plain_weights_are_whole_and_the_thinking_init_is_the_unsharded_formula(load_tiny):
    base = load_tiny("qwen2_audio")
    weight = base.get_input_embeddings().weight
    mean, std = distributed.embedding_statistics(weight)
    assert torch.equal(mean, weight.detach().float().mean(0)) and torch.equal(std, weight.detach().float().std(0))
    assert not distributed.is_sharded_model(base)
    distributed.broadcast_coat_parameters([weight])  # no process group: nothing to do, nothing raised


def test_qwen2_5_omni_talker_is_outside_what_coat_trains_and_saves(tmp_path):
    model = zoo.build_full_omni(talker=True)
    assert hasattr(model, "talker") and hasattr(model, "token2wav")  # a full Omni model, speech output built
    wrapped = coat.wrap(model, num_thinking=2)
    wrapped.add_heads(SPECS, HeadConfig(num_frames=4, d_model=16, layers=1, heads=2))
    wrapped.add_lora(r=2, audio_target_modules=["q_proj"])
    wrapped.set_trainable(("thinking", "heads", "lora"))
    speech = {id(p) for p in [*model.talker.parameters(), *model.token2wav.parameters()]}
    assert not speech & {id(p) for p in wrapped.parameters()}  # the Trainer and its optimizer never see them
    tower = {n for n, p in wrapped.base_model.named_parameters() if "audio_tower" in n and p.requires_grad}
    assert tower and all("lora_" in n for n in tower)  # the audio tower trains only its LoRA, when asked
    wrapped.save_pretrained(tmp_path / "adapter")
    saved = [*load_file(tmp_path / "adapter" / "coat_model.safetensors"),
             *load_file(tmp_path / "adapter" / "lora" / "adapter_model.safetensors")]
    assert not [k for k in saved if "talker" in k or "token2wav" in k]
    assert [k for k in saved if "audio_tower" in k] and all("lora_" in k for k in saved if "audio_tower" in k)


# ----------------------------------------------------------------------------------------------------- 2 processes
def _spawn(fn, *args):
    """Run ``fn(rank, world, *args)`` in 2 processes of one gloo group; a failure in either fails the test.

    The processes meet through a file of their own (a FileStore), not a TCP port: a port picked free, released and
    bound again by rank 0 seconds later can be taken meanwhile by another run on the machine, and rank 1, connecting
    to it, then joins that run's group (gloo then fails in both with "Connection reset/closed by peer")."""
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(_worker, args=(fn, f"file://{folder}/store", args), nprocs=2, join=True)


def _worker(rank, fn, store, args):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=2)
    try:
        fn(rank, 2, *args)
    finally:
        dist.destroy_process_group()


def _coat_model(seed: int, thinking: int = 4):
    """The tiny Qwen2-Audio (always the same base weights) with CoAT, heads and LoRA drawn from ``seed``, every CoAT
    weight moved off its initial value (LoRA's B starts at zero)."""
    base = zoo.build_model("qwen2_audio", seed=0)
    torch.manual_seed(seed)
    model = coat.wrap(base, num_thinking=thinking)
    model.add_heads(SPECS, HeadConfig(num_frames=4, d_model=16, layers=1, heads=2))
    model.add_lora(r=2, alpha=4, dropout=0.0)
    with torch.no_grad():
        for param in model.coat_parameters():
            param.add_(torch.randn(param.shape, generator=torch.Generator().manual_seed(seed)) * 0.1)
    return model.eval()


def _shard(model):
    """fully_shard as accelerate's FSDP2 preparation does: every class coat names for it, bottom up, then the root."""
    from accelerate.utils.dataclasses import get_module_class_from_name
    from torch.distributed.fsdp import fully_shard

    classes = tuple(get_module_class_from_name(model, name) for name in model._no_split_modules)
    for module in reversed(list(model.modules())):
        if isinstance(module, classes):
            fully_shard(module)
    fully_shard(model)
    return model


def _thinking_init_on_a_sharded_embedding(rank, world):
    from torch.distributed.fsdp import fully_shard

    plain = zoo.build_model("qwen2_audio", seed=3)
    torch.manual_seed(0)  # rank 0's seed below: after the broadcast every process holds rank 0's draw
    expected = coat.wrap(plain, num_thinking=5).thinking_embedding.thinking.detach().clone()
    base = zoo.build_model("qwen2_audio", seed=3)
    embedding = base.get_input_embeddings()
    fully_shard(embedding)
    assert distributed.is_dtensor(embedding.weight)
    assert embedding.weight.to_local().shape[0] < embedding.num_embeddings  # this process holds a piece
    torch.manual_seed(rank)  # the noise each process draws differs: the broadcast below makes them agree
    model = coat.wrap(base, num_thinking=5)
    mean, std = distributed.embedding_statistics(embedding.weight)
    full = plain.get_input_embeddings().weight.detach().float()
    assert torch.equal(mean, full.mean(0)) and torch.equal(std, full.std(0))  # the whole table's, bit for bit
    table = model.thinking_embedding.thinking
    distributed.broadcast_coat_parameters([table])
    gathered = [torch.empty_like(table) for _ in range(world)]
    dist.all_gather(gathered, table.detach())
    assert torch.equal(gathered[0], gathered[1])
    assert torch.equal(table.detach(), expected)  # the table drawn on the sharded embedding is the unsharded one's


def test_thinking_table_initialised_from_an_fsdp_sharded_embedding_is_the_whole_tables():
    _spawn(_thinking_init_on_a_sharded_embedding)


def _sharded_adapter_round_trip(rank, world, folder):
    folder = Path(folder)
    model = _coat_model(seed=0)
    inputs = zoo.make_inputs(model.base_model, audios_per_prompt=[1, 1], answer_len=2, seed=1)
    with torch.no_grad():
        expected = model(**inputs).logits
    model.save_pretrained(folder / "plain", is_main_process=rank == 0)
    _shard(model)
    assert distributed.is_dtensor(model.thinking_embedding.thinking) and distributed.is_sharded_model(model)
    with torch.no_grad():
        got = model(**inputs).logits
    assert torch.allclose(got, expected, atol=1e-5)
    model.save_pretrained(folder / "sharded", is_main_process=rank == 0)  # every process gathers, rank 0 writes
    dist.barrier()
    for name in ("coat_model.safetensors", "lora/adapter_model.safetensors"):
        plain, sharded = load_file(folder / "plain" / name), load_file(folder / "sharded" / name)
        assert plain.keys() == sharded.keys() and all(torch.equal(plain[k], sharded[k]) for k in plain), name
    assert json.loads((folder / "plain" / "coat_config.json").read_text()) == json.loads(
        (folder / "sharded" / "coat_config.json").read_text())
    # resume: the adapter scattered into another sharded model (other initial weights) gives the same model back
    fresh = _shard(_coat_model(seed=7))
    fresh.load_adapter_weights(folder / "sharded")
    with torch.no_grad():
        assert torch.allclose(fresh(**inputs).logits, expected, atol=1e-5)
    saved = load_file(folder / "plain" / "coat_model.safetensors")
    assert all(torch.equal(v, fresh.coat_state_dict()[k]) for k, v in saved.items())


def test_sharded_model_saves_the_unsharded_adapter_and_loads_it_back(tmp_path):
    _spawn(_sharded_adapter_round_trip, str(tmp_path))
    reloaded = coat.CoATModel.from_pretrained(zoo.build_model("qwen2_audio", seed=0), tmp_path / "sharded")
    assert torch.equal(reloaded.coat_state_dict()["thinking"], _coat_model(seed=0).coat_state_dict()["thinking"])


# ----------------------------------------------------------------------------------------------------- ZeRO-3
ZERO3 = {"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 1, "zero_optimization": {"stage": 3},
         "optimizer": {"type": "AdamW", "params": {"lr": 1e-2, "torch_adam": True}}, "steps_per_print": 1000}


def _zero3_round_trip(rank, world, folder, model_dir):
    """A Qwen2-Audio loaded by transformers under ZeRO-3 (``deepspeed.zero.Init``: every process holds a partition of
    each weight, an empty local tensor), wrapped, trained one step by a DeepSpeed engine, saved and loaded back."""
    import deepspeed
    import transformers as tf
    from transformers.integrations import HfDeepSpeedConfig

    folder = Path(folder)
    torch.manual_seed(0)
    plain = coat.wrap(tf.Qwen2AudioForConditionalGeneration.from_pretrained(model_dir), num_thinking=4).eval()
    keep = HfDeepSpeedConfig(ZERO3)  # noqa: F841 - while it lives, from_pretrained partitions as it loads
    base = tf.Qwen2AudioForConditionalGeneration.from_pretrained(model_dir)
    weight = base.get_input_embeddings().weight
    assert distributed.is_zero3(weight) and weight.numel() == 0  # what ZeRO-3 leaves this process of the embedding
    torch.manual_seed(0)
    model = coat.wrap(base, num_thinking=4)
    assert torch.equal(model.thinking_embedding.thinking.detach(), plain.thinking_embedding.thinking.detach())
    for wrapped in (plain, model):
        wrapped.add_heads(SPECS, HeadConfig(num_frames=4, d_model=16, layers=1, heads=2))
        wrapped.add_lora(r=2, alpha=4, dropout=0.0)
    with torch.no_grad():  # the same CoAT weights in both
        for p, q in zip(plain.coat_parameters(), model.coat_parameters()):
            q.copy_(p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.1))
    model.set_trainable(("thinking", "heads", "lora"))
    engine, *_ = deepspeed.initialize(model=model, config=ZERO3,
                                      model_parameters=[p for p in model.parameters() if p.requires_grad])
    assert distributed.is_zero3(model.thinking_embedding.thinking)  # the engine partitioned CoAT's weights too
    inputs = zoo.make_inputs(plain.base_model, audios_per_prompt=[1, 1], answer_len=2, seed=1)
    engine.eval()
    with torch.no_grad():
        assert torch.allclose(engine(**inputs).logits, plain(**inputs).logits, atol=1e-5)
    engine.train()
    loss = engine(**inputs).loss
    engine.backward(loss)
    engine.step()
    engine.eval()
    with torch.no_grad():
        trained = engine(**inputs).logits
    model.save_pretrained(folder / "zero3", is_main_process=rank == 0)  # every process gathers, rank 0 writes
    dist.barrier()
    # scatter a saved adapter back into the partitioned model: the untrained one, then the trained one again
    plain.save_pretrained(folder / "untrained", is_main_process=rank == 0)
    dist.barrier()
    model.load_adapter_weights(folder / "untrained")
    with torch.no_grad():
        assert torch.allclose(engine(**inputs).logits, plain(**inputs).logits, atol=1e-5)
    model.load_adapter_weights(folder / "zero3")
    with torch.no_grad():
        assert torch.equal(engine(**inputs).logits, trained)
    torch.save(trained, folder / f"trained_logits_{rank}.pt")


def test_zero3_partitioned_model_initialises_trains_saves_and_loads_like_a_whole_one(tmp_path, saved_tiny,
                                                                                   monkeypatch):
    """The ZeRO-3 paths of coat.distributed with a real deepspeed.zero.Init and engine, on 2 CPU processes (gloo).
    deepspeed comes with the `deepspeed` extra (in `dev`): without it this test is skipped."""
    pytest.importorskip("deepspeed", reason="deepspeed is not installed (the 'deepspeed' extra); the ZeRO-3 paths "
                                            "of coat.distributed are tested where it is")
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    _spawn(_zero3_round_trip, str(tmp_path), str(saved_tiny["qwen2_audio"]))
    import transformers as tf

    base = tf.Qwen2AudioForConditionalGeneration.from_pretrained(saved_tiny["qwen2_audio"])
    model = coat.CoATModel.from_pretrained(base, tmp_path / "zero3").eval()  # in one process, no DeepSpeed
    inputs = zoo.make_inputs(base, audios_per_prompt=[1, 1], answer_len=2, seed=1)
    with torch.no_grad():
        logits = model(**inputs).logits
    assert torch.allclose(logits, torch.load(tmp_path / "trained_logits_0.pt"), atol=1e-5)


# ----------------------------------------------------------------------------------------------------- coat train
ACCELERATE = ROOT / "configs" / "accelerate"


def _deepspeed_or_skip():
    pytest.importorskip("deepspeed", reason="deepspeed is not installed (the 'deepspeed' extra): the ZeRO runs of "
                                            "coat train are tested where it is")


@pytest.fixture(scope="session")
def train(accelerate_launch):
    """train(tmp_path, name, *overrides, processes=2, config="fsdp", script=("-m", "coat")): ``coat train`` of the
    tiny config (both stages, fewer steps) in ``processes`` processes launched with
    ``configs/accelerate/<config>.yaml``, from the repository root (the ZeRO configs name their JSON from there)."""
    return functools.partial(_train, accelerate_launch)


def _train(launch, tmp_path, name, *overrides, processes=2, config="fsdp", script=("-m", "coat")):
    args = [*script, "train", str(TINY), f"model.name_or_path={tmp_path}/model",
            f"targets.cache_dir={tmp_path}/targets", f"training.output_dir={tmp_path}/{name}",
            "training.progress=false", "training.save_steps=3",
            "stages=[{name: thinking_and_heads, train: [thinking, heads], max_steps: 3, learning_rate: 0.01}, "
            "{name: joint, train: [thinking, heads, lora], max_steps: 6, learning_rate: 0.01}]", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"}
    command = [sys.executable, *args]
    if processes > 1:
        command = [*launch(processes, "--config_file", str(ACCELERATE / f"{config}.yaml")), *args]
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)


def _ok(run):
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def _losses(run_dir: Path) -> list[dict]:
    return [e for e in json.loads((run_dir / "log_history.json").read_text()) if "loss" in e and "text_loss" in e]


def _logits(model_dir: Path, adapter: Path):
    from coat.data import DataConfig, open_data
    from coat.data.collate import CoATCollator, QADataset
    from coat.data.sources import SourceConfig
    from coat.loading import ModelConfig, load_model_and_processor

    base, processor = load_model_and_processor(ModelConfig(name_or_path=str(model_dir)))
    model = coat.CoATModel.from_pretrained(base, adapter).eval()
    manifest = next(model_dir.parent.glob("targets/synth-*/train/manifest.jsonl"))
    data = DataConfig(source=SourceConfig(path=str(manifest)))
    dataset = QADataset(open_data(data, model_dir.parent), data, 16000)
    batch = CoATCollator(processor, 16000)([dataset[i] for i in range(4)])
    batch.pop("expert_targets", None)
    with torch.no_grad():
        return model(**batch).logits


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory, train):
    """The tiny config trained with DDP on 2 processes (configs/accelerate/ddp.yaml) and in 1 process with the same
    global batch (16); the sharded runs below share their model and target caches."""
    tmp = tmp_path_factory.mktemp("train")
    _ok(train(tmp, "ddp", config="ddp"))
    _ok(train(tmp, "one", "training.per_device_batch_size=16", processes=1))
    return tmp


def _same_training(tmp: Path, name: str, layout: str):
    """The sharded run ``name`` trained like DDP (see the tolerances at the top) and its adapter reloads in one
    process to the DDP adapter's logits; its checkpoints have the sharded ``layout``."""
    checkpoint = tmp / name / "stage-1-joint" / "checkpoint-6"
    names = {p.relative_to(checkpoint).as_posix() for p in checkpoint.rglob("*") if p.is_file()}
    assert not {"optimizer.pt"} & names and (tmp / "ddp/stage-1-joint/checkpoint-6/optimizer.pt").is_file()
    assert {"coat_model.safetensors", "lora/adapter_model.safetensors", "rng_state_0.pth", "rng_state_1.pth"} <= names
    assert {n for n in names if n.startswith(layout)}, (layout, names)  # the optimizer states, one file per process
    runs = {n: _losses(tmp / n) for n in (name, "ddp", "one")}
    assert [e["step"] for e in runs[name]] == [e["step"] for e in runs["one"]] == [3, 3, 6]
    for s, d, o in zip(runs[name], runs["ddp"], runs["one"]):
        for key in ("loss", "text_loss", "loss_pitch", "loss_voicing", "loss_logmel"):
            assert s[key] == pytest.approx(d[key], rel=1e-4), (key, s, d)
        for key in ("loss", "text_loss"):
            assert s[key] == pytest.approx(o[key], rel=1e-2), (key, s, o)
    joint = [e for e in runs[name] if e["stage"] == "joint"]
    assert joint[-1]["loss"] < joint[0]["loss"] < runs[name][0]["loss"]
    logits = _logits(tmp / "model", tmp / name / "adapter")
    assert torch.allclose(logits, _logits(tmp / "model", tmp / "ddp" / "adapter"), atol=1e-4)


def test_fsdp_on_two_processes_trains_like_ddp_and_like_one_process_and_its_adapter_reloads(reference_runs, train):
    _ok(train(reference_runs, "fsdp", config="fsdp"))
    _same_training(reference_runs, "fsdp", "optimizer_0/__1_0.distcp")


@pytest.mark.parametrize("zero", ["zero2", "zero3"])
def test_deepspeed_zero_on_two_cpu_processes_trains_like_ddp_and_its_adapter_reloads(reference_runs, train, zero):
    _deepspeed_or_skip()
    _ok(train(reference_runs, zero, config=zero))
    _same_training(reference_runs, zero, "global_step6/zero_pp_rank_1_mp_rank_00_optim_states.pt")


@pytest.mark.parametrize("config", ["fsdp", pytest.param("zero3", marks=pytest.mark.slow)])  # zero3: 85 s
def test_an_interrupted_sharded_run_resumes_to_the_adapter_of_an_uninterrupted_one(tmp_path, train, config):
    if config != "fsdp":
        _deepspeed_or_skip()
    experts = "experts=[{name: reconstruction, weight: 0.1}]"  # no pitch targets to compute: a faster test
    _ok(train(tmp_path, "straight", experts, config=config))
    interrupt = (str(ROOT / "tests" / "interrupted_train.py"), "stage-1-joint", "4")
    stopped = train(tmp_path, "resumed", experts, config=config, script=interrupt)
    assert stopped.returncode != 0 and "simulated interruption after step 4" in stopped.stderr
    stage = tmp_path / "resumed" / "stage-1-joint"
    assert (stage / "checkpoint-3" / "trainer_state.json").is_file() and not (stage / "adapter").exists()
    # what a kill while the Trainer wrote checkpoint-6 leaves: its files so far, no trainer_state.json (written last)
    import shutil

    shutil.copytree(stage / "checkpoint-3", stage / "checkpoint-6")
    (stage / "checkpoint-6" / "trainer_state.json").unlink()
    resumed = _ok(train(tmp_path, "resumed", experts, config=config))
    assert "stage-1-joint: skipping incomplete checkpoint-6 (trainer_state.json missing); removed it" in resumed.stdout
    assert "stage-1-joint: resuming from checkpoint-3" in resumed.stdout
    assert "stage thinking_and_heads: finished in an earlier run" in resumed.stdout
    for name in ("coat_model.safetensors", "lora/adapter_model.safetensors"):
        a = load_file(tmp_path / "straight" / "adapter" / name)
        b = load_file(tmp_path / "resumed" / "adapter" / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.allclose(a[key], b[key], atol=1e-6), (name, key, (a[key] - b[key]).abs().max())
    assert _losses(tmp_path / "straight")[-1]["loss"] == pytest.approx(_losses(tmp_path / "resumed")[-1]["loss"],
                                                                       rel=1e-5)
