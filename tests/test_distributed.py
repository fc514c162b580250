"""CoAT under sharding (coat/distributed.py): FSDP2 on CPU processes over gloo, for real; DeepSpeed ZeRO-3 where
deepspeed is installed (it is not in the lock: those tests skip, and say so).

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

import json
import os
import socket
import subprocess
import sys
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
FSDP_CONFIG = ROOT / "configs" / "accelerate" / "fsdp.yaml"
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


def test_fsdp_on_cpu_is_left_alone_without_an_fsdp_launch(monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    assert distributed.enable_fsdp_on_cpu() is False


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
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(fn, *args):
    """Run ``fn(rank, world, *args)`` in 2 processes of one gloo group; a failure in either fails the test."""
    mp.spawn(_worker, args=(fn, _free_port(), args), nprocs=2, join=True)


def _worker(rank, fn, port, args):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
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
    torch.manual_seed(0)
    again = coat.wrap(zoo.build_model("qwen2_audio", seed=3), num_thinking=5).thinking_embedding.thinking
    assert torch.equal(expected, again.detach())  # the plain path draws the same table as before


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


# ----------------------------------------------------------------------------------------------------- coat train
def _train(tmp_path, name, *overrides, processes=2, config=FSDP_CONFIG, script=("-m", "coat")):
    """``coat train`` of the tiny config (both stages, fewer steps) in ``processes`` processes; returns its log."""
    args = [*script, "train", str(TINY), f"model.name_or_path={tmp_path}/model",
            f"targets.cache_dir={tmp_path}/targets", f"training.output_dir={tmp_path}/{name}",
            "training.progress=false", "training.save_steps=3",
            "stages=[{name: thinking_and_heads, train: [thinking, heads], max_steps: 3, learning_rate: 0.01}, "
            "{name: joint, train: [thinking, heads, lora], max_steps: 6, learning_rate: 0.01}]", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if processes == 1:
        command = [sys.executable, *args]
    else:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes)]
        command += ["--config_file", str(config)] if config else ["--multi_gpu", "--num_machines", "1",
                                                                   "--mixed_precision", "no", "--dynamo_backend", "no"]
        command += args
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)


def _losses(run_dir: Path) -> list[dict]:
    return [e for e in json.loads((run_dir / "log_history.json").read_text()) if "loss" in e and "text_loss" in e]


def _logits(model_dir: Path, adapter: Path):
    from coat.data.collate import CoATCollator, QAColumns, QADataset
    from coat.data.sources import SourceConfig, open_source
    from coat.loading import ModelConfig, load_model_and_processor

    base, processor = load_model_and_processor(ModelConfig(name_or_path=str(model_dir)))
    model = coat.CoATModel.from_pretrained(base, adapter).eval()
    manifest = next(model_dir.parent.glob("targets/synth-*/train/manifest.jsonl"))
    dataset = QADataset(open_source(SourceConfig(path=str(manifest))), 16000, QAColumns(), [])
    batch = CoATCollator(processor, 16000)([dataset[i] for i in range(4)])
    batch.pop("expert_targets", None)
    with torch.no_grad():
        return model(**batch).logits


def test_fsdp_on_two_processes_trains_like_ddp_and_like_one_process_and_its_adapter_reloads(tmp_path):
    fsdp = _train(tmp_path, "fsdp")
    assert fsdp.returncode == 0, fsdp.stderr[-3000:]
    ddp = _train(tmp_path, "ddp", config=None)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one = _train(tmp_path, "one", "training.per_device_batch_size=16", processes=1)
    assert one.returncode == 0, one.stderr[-3000:]
    # FSDP really sharded: the Trainer's FSDP checkpoint layout (optimizer states per process), not DDP's optimizer.pt
    checkpoint = tmp_path / "fsdp" / "stage-1-joint" / "checkpoint-6"
    assert sorted(p.name for p in (checkpoint / "optimizer_0").glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert not (checkpoint / "optimizer.pt").exists() and (tmp_path / "ddp/stage-1-joint/checkpoint-6/optimizer.pt")
    # the adapter, written once, with rank 1's RNG state beside it in the same checkpoint
    assert {"coat_model.safetensors", "rng_state_0.pth", "rng_state_1.pth"} <= {p.name for p in checkpoint.iterdir()}
    runs = {name: _losses(tmp_path / name) for name in ("fsdp", "ddp", "one")}
    assert [e["step"] for e in runs["fsdp"]] == [e["step"] for e in runs["one"]] == [3, 3, 6]
    for f, d, o in zip(runs["fsdp"], runs["ddp"], runs["one"]):
        for key in ("loss", "text_loss", "loss_pitch", "loss_voicing", "loss_logmel"):
            assert f[key] == pytest.approx(d[key], rel=1e-4), (key, f, d)
        for key in ("loss", "text_loss"):
            assert f[key] == pytest.approx(o[key], rel=1e-2), (key, f, o)
    joint = [e for e in runs["fsdp"] if e["stage"] == "joint"]
    assert joint[-1]["loss"] < joint[0]["loss"] and runs["fsdp"][0]["loss"] > joint[-1]["loss"]
    fsdp_logits = _logits(tmp_path / "model", tmp_path / "fsdp" / "adapter")
    assert torch.allclose(fsdp_logits, _logits(tmp_path / "model", tmp_path / "ddp" / "adapter"), atol=1e-4)


def test_an_interrupted_fsdp_run_resumes_to_the_adapter_of_an_uninterrupted_one(tmp_path):
    experts = "experts=[{name: reconstruction, weight: 0.1}]"  # no pitch targets to compute: a faster test
    straight = _train(tmp_path, "straight", experts)
    assert straight.returncode == 0, straight.stderr[-3000:]
    interrupt = (str(ROOT / "tests" / "interrupted_train.py"), "stage-1-joint", "4")
    stopped = _train(tmp_path, "resumed", experts, script=interrupt)
    assert stopped.returncode != 0 and "simulated interruption after step 4" in stopped.stderr
    stage = tmp_path / "resumed" / "stage-1-joint"
    assert (stage / "checkpoint-3" / "trainer_state.json").is_file() and not (stage / "adapter").exists()
    assert (stage / "checkpoint-3" / "optimizer_0").is_dir()  # the sharded optimizer states to resume from
    # what a kill while the Trainer wrote checkpoint-6 leaves: its files so far, no trainer_state.json (written last)
    import shutil

    shutil.copytree(stage / "checkpoint-3", stage / "checkpoint-6")
    (stage / "checkpoint-6" / "trainer_state.json").unlink()
    resumed = _train(tmp_path, "resumed", experts)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
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
