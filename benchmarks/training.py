"""`coat bench training`: what a CoAT training step costs next to the same LoRA fine-tuning step without CoAT.

Variants, all on the same batch (audio + question + answer, ``labels`` on the answer), LoRA (peft) on the language
model's attention projections (the adapter's ``lora_target_modules``, restricted to the decoder layers; the audio
tower and every base weight frozen), AdamW over what trains:

- ``lora``: the base model with LoRA, text loss (the baseline);
- ``coat text``: + CoAT with K thinking positions, text loss only (isolates the cost of the K longer sequence);
- ``coat``: + expert heads and cached targets (``model(**inputs, labels=..., expert_targets=...)``): pitch as a
  360-bin distribution at 100 Hz weighted by voicing, an 80-bin log-mel regression at 100 Hz and a 527-class
  multilabel clip target, random arrays of those specs and of each clip's length.

Step time (forward + backward + optimizer step) is the median over interleaved steps after warm-up steps, all
variants in one process. Peak memory is measured for each variant in its own subprocess, so no other model
counts: on CUDA ``torch.cuda.max_memory_allocated`` over the steps, on CPU the process's peak resident set size
(``VmHWM``, reset after set-up through ``/proc/self/clear_refs``) over the steps, with the resident size after
set-up reported next to it. FLOPs per step (one more step under torch's FlopCounterMode; matmuls and the CUDA
SDPA kernels, not the CPU SDPA one) split the cost machine-independently: ``coat text`` - ``lora`` is the
K-longer sequence, ``coat`` - ``coat text`` the heads. ``profile`` adds a torch.profiler table per variant.

    coat bench training --size mid --steps 5      (python benchmarks/training.py: the same)
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import coat  # noqa: E402
from benchmarks.common import BenchModelConfig, apply_model_settings, main_of, write_report  # noqa: E402
from benchmarks.generation import build  # noqa: E402
from coat import zoo  # noqa: E402
from coat.adapters import get_adapter  # noqa: E402
from coat.files import write_atomic  # noqa: E402
from coat.heads import HeadConfig, prepare_active_targets  # noqa: E402
from coat.loading import DTYPES  # noqa: E402
from coat.model_io import lora_target_pattern  # noqa: E402
from coat.reports import markdown_table  # noqa: E402
from coat.targets import TargetSpec  # noqa: E402

SUBJECT = "training"
_MEMORY_CHILD = "--memory-child"  # how _memory_subprocess starts this file: one variant's peak memory, as JSON
VARIANTS = ("lora", "coat text", "coat")

TARGET_SPECS = (
    TargetSpec("pitch", 16000, 100.0, 360, "distribution", weight_by="voicing"),
    TargetSpec("voicing", 16000, 100.0, 1, "regression"),
    TargetSpec("logmel", 16000, 100.0, 80, "regression"),
    TargetSpec("sound_event", 16000, None, 527, "multilabel"),
)


def random_targets(clip_seconds: list[float], seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Cached-target-like arrays for clips of the given durations: ``(frames, dim)`` float32 per clip."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {s.name: [] for s in TARGET_SPECS}
    for seconds in clip_seconds:
        frames = max(1, int(round(seconds * 100)))
        logits = rng.standard_normal((frames, 360)).astype(np.float32) * 3
        pitch = np.exp(logits - logits.max(1, keepdims=True))
        out["pitch"].append(pitch / pitch.sum(1, keepdims=True))
        out["voicing"].append((rng.random((frames, 1)) > 0.3).astype(np.float32))
        out["logmel"].append(rng.standard_normal((frames, 80)).astype(np.float32))
        out["sound_event"].append((rng.random((1, 527)) < 0.02).astype(np.float32))
    return out


def lora_target_names(model: torch.nn.Module) -> list[str]:
    """Full names of the adapter's LoRA targets inside the language model's decoder layers (not the audio tower):
    what ``CoATModel.add_lora`` targets, found with the same pattern."""
    adapter = get_adapter(model)
    layers = adapter.decoder_layers(adapter.text_model(model))
    pattern = lora_target_pattern(model, layers, adapter.lora_target_modules)
    return [n for n, _ in model.named_modules() if re.fullmatch(pattern, n)]


class Setup:
    """One variant, ready to step: model, optimizer, batch."""

    def __init__(self, variant: str, family: str, size: str, device: str, dtype: torch.dtype, k: int, batch: int,
                 answer_len: int, lora_rank: int, seed: int = 0, head_config: HeadConfig | None = None):
        from peft import LoraConfig, inject_adapter_in_model

        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.variant = variant
        base = build(family, size, device, dtype, seed)
        targets = lora_target_names(base)
        self.lora_modules = get_adapter(base).lora_target_modules
        base.train()
        inputs = zoo.make_inputs(base, audios_per_prompt=(1,) * batch, padding_side="right", answer_len=answer_len,
                                 seed=seed, family=family)
        self.inputs = {name: (v.to(device, dtype) if v.is_floating_point() else v.to(device))
                       for name, v in inputs.items()}
        mask_name = next((n for n in ("feature_attention_mask", "input_features_mask") if n in inputs), None)
        frames = (inputs[mask_name].sum(1).tolist() if mask_name
                  else [inputs["input_features"].shape[-1]] * batch)
        self.expert_targets = None
        if variant == "lora":
            self.model = base
        else:
            torch.manual_seed(seed)
            self.model = coat.wrap(base, coat.CoATConfig(num_thinking=k))
            if variant == "coat":
                self.model.add_heads(list(TARGET_SPECS), head_config or HeadConfig())
                # cached targets arrive resampled from the data loader (CoATCollator), as in `coat train`
                heads = self.model.heads
                seconds = [f / zoo.MEL_FRAMES_PER_SECOND for f in frames]
                self.expert_targets = prepare_active_targets(random_targets(seconds, seed),
                                                             heads.specs, heads.config, self.model.expert_weights)
        for p in base.parameters():
            p.requires_grad_(False)
        lora = LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, lora_dropout=0.0, target_modules=targets)
        inject_adapter_in_model(lora, base)
        self.model.to(device)
        self.model.train()
        trainable = [p for n, p in self.model.named_parameters() if "lora_" in n]
        if variant != "lora":
            trainable.append(self.model.thinking_embedding.thinking)
            if self.model.heads is not None:
                trainable += list(self.model.heads.parameters())
        for p in self.model.parameters():
            p.requires_grad_(False)
        for p in trainable:
            p.requires_grad_(True)
        self.trainable_params = sum(p.numel() for p in trainable)
        heads = getattr(self.model, "heads", None)
        self.head_params = sum(p.numel() for p in heads.parameters()) if heads is not None else 0
        self.optimizer = torch.optim.AdamW(trainable, lr=1e-4)
        self.calls = 0
        self.sequence = 0  # measured: the length of the ids the base model gets
        base.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs):
        self.calls += 1
        self.sequence = int(kwargs["input_ids"].shape[1])

    def step(self) -> dict:
        kwargs = {} if self.expert_targets is None else {"expert_targets": self.expert_targets}
        out = self.model(**self.inputs, **kwargs)
        out["loss"].backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"loss": float(out["loss"].detach())}


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _rss_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def measure_memory(variant: str, opts: dict) -> dict:
    """Peak memory of ``steps`` steps of one variant; call it in a fresh process (see :func:`_memory_subprocess`)."""
    device = opts["device"]
    runtime_kb = _rss_kb("VmRSS") or 0  # python + torch + transformers, before any model exists
    torch.set_num_threads(opts.get("threads") or torch.get_num_threads())
    setup = Setup(variant, opts["family"], opts["size"], device, DTYPES[opts["dtype"]], opts["k"], opts["batch"],
                  opts["answer_len"], opts["lora_rank"], opts["seed"], HeadConfig(**opts["head"]))
    setup.step()  # optimizer state exists from here on, as in training
    _sync(device)
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        for _ in range(opts["memory_steps"]):
            setup.step()
        _sync(device)
        peak = torch.cuda.max_memory_allocated()
        return {"memory_method": "torch.cuda.max_memory_allocated (own process)", "peak_mb": peak / 2**20,
                "setup_mb": before / 2**20, "runtime_mb": 0.0}
    method = "peak RSS (VmHWM, reset after set-up via /proc/self/clear_refs; own process)"
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        method = "peak RSS (ru_maxrss of the whole process, including set-up; own process)"
    before = _rss_kb("VmRSS") or 0
    for _ in range(opts["memory_steps"]):
        setup.step()
    import resource

    peak = _rss_kb("VmHWM") if "VmHWM" in method else None
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"memory_method": method, "peak_mb": peak / 1024, "setup_mb": before / 1024,
            "runtime_mb": runtime_kb / 1024}


def _memory_subprocess(variant: str, opts: dict) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), _MEMORY_CHILD, variant, json.dumps(opts)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory measurement of {variant!r} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def count_flops(setup: Setup) -> dict:
    """FLOPs of one step (forward + backward; torch's FlopCounterMode, matmul/attention/conv): machine-independent,
    so the CoAT/LoRA ratio and the heads' share hold whatever else the machine runs."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        setup.step()
    counts = counter.get_flop_counts()
    total = sum(counts.get("Global", {}).values())
    heads = [name for name in counts if name.endswith(".heads")]
    head_flops = sum(counts[min(heads, key=len)].values()) if heads else 0
    return {"step_gflops": total / 1e9, "head_gflops": head_flops / 1e9}


def _profile(setup: Setup, device: str, out: Path) -> dict:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if str(device).startswith("cuda") else [])
    with profile(activities=activities) as prof:
        setup.step()
        _sync(device)
    sort = "cuda_time_total" if str(device).startswith("cuda") else "cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=25)
    path = out / f"{SUBJECT}_profile_{setup.variant.replace(' ', '_')}.txt"
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(path, table + "\n")
    return {"table": str(path)}


def run(family: str = "qwen2_audio", size: str = "mid", device: str = "cpu", dtype: str = "float32", k: int = 16,
        batch: int = 4, answer_len: int = 16, lora_rank: int = 16, steps: int = 5, warmup: int = 2,
        memory: bool = True, memory_steps: int = 2, profile: bool = False, out: str | Path | None = None,
        head_config: HeadConfig | None = None, variants: tuple[str, ...] = VARIANTS, seed: int = 0) -> dict:
    """Time ``steps`` interleaved steps of every variant after ``warmup``; peak memory in subprocesses.

    ``variants``: a subset of :data:`VARIANTS` starting with ``lora`` (each holds its own model in the timing
    process: at the 7B shapes, ``("lora", "coat")`` halves what the GPU must hold)."""
    if not variants or variants[0] != "lora" or not set(variants) <= set(VARIANTS):
        raise ValueError(f"variants must start with 'lora' and come from {VARIANTS}, got {variants}")
    head_config = head_config or HeadConfig()
    opts = dict(head=asdict(head_config), family=family, size=size, device=device, dtype=dtype, k=k, batch=batch,
                answer_len=answer_len,
                lora_rank=lora_rank, seed=seed, memory_steps=memory_steps, threads=torch.get_num_threads())
    setups = [Setup(v, family, size, device, DTYPES[dtype], k, batch, answer_len, lora_rank, seed, head_config)
              for v in variants]
    times: dict[str, list[float]] = {s.variant: [] for s in setups}
    losses: dict[str, float] = {}
    for round_ in range(warmup + steps):
        shift = round_ % len(setups)
        for s in setups[shift:] + setups[:shift]:
            _sync(device)
            start = time.perf_counter()
            losses[s.variant] = s.step()["loss"]
            _sync(device)
            if round_ >= warmup:
                times[s.variant].append(time.perf_counter() - start)
    rows = []
    for s in setups:
        rows.append({"variant": s.variant, "sequence": s.sequence, "trainable_params": s.trainable_params,
                     "head_params": s.head_params, "forward_calls_per_step": s.calls // (warmup + steps),
                     "step_s": statistics.median(times[s.variant]),
                     "step_s_all": times[s.variant], "last_loss": losses[s.variant]})
    lora_modules = setups[0].lora_modules
    for s, row in zip(setups, rows):
        row.update(count_flops(s))
    profiles = {}
    if profile:
        for s in setups:
            profiles[s.variant] = _profile(s, device, Path(out or f"runs/bench/{SUBJECT}"))
    del setups
    if memory:
        for row in rows:
            row.update(_memory_subprocess(row["variant"], opts))
    base = rows[0]
    for row in rows:
        # median over rounds of (variant / lora of the same round): load drifts on shared machines cancel
        row["step_ratio"] = statistics.median(x / b for x, b in zip(row["step_s_all"], base["step_s_all"]))
        row["flops_ratio"] = row["step_gflops"] / base["step_gflops"]
        row["head_state_mb"] = row["head_params"] * 16 / 2**20  # fp32 weight + grad + 2 AdamW moments
        if memory:
            # on CPU the RSS includes the Python/torch runtime (the same for every variant): the ratio of what
            # the model and the training step add is the honest one, the whole-process ratio is reported too
            row["model_peak_mb"] = row["peak_mb"] - row["runtime_mb"]
            row["peak_ratio"] = row["model_peak_mb"] / (base["peak_mb"] - base["runtime_mb"])
            row["process_peak_ratio"] = row["peak_mb"] / base["peak_mb"]
            row["step_memory_mb"] = row["peak_mb"] - row["setup_mb"]
    coat_row = rows[-1]
    targets = {"step_time_within_10pct": coat_row["step_ratio"] <= 1.10}
    if memory:
        targets["peak_memory_within_5pct"] = coat_row["peak_ratio"] <= 1.05
    return {
        "subject": SUBJECT, "family": family, "size": size, "device": str(device), "dtype": dtype, "k": k,
        "batch": batch, "answer_len": answer_len, "lora_rank": lora_rank, "head": asdict(head_config),
        "lora_targets": "decoder layers' " + "/".join(lora_modules), "steps": steps, "warmup": warmup,
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "memory_method": rows[0].get("memory_method"), "expert_targets": [s.name for s in TARGET_SPECS],
        "timing": "median step (forward+backward+AdamW step) over interleaved steps after warm-up, one process",
        "rows": rows, "target_checks": targets, "profiles": profiles,
    }


def to_markdown(result: dict) -> str:
    head = (f"training: {result['family']} {result['size']} on {result['device']} ({result['dtype']}), batch "
            f"{result['batch']}, K={result['k']}, LoRA r={result['lora_rank']} on {result['lora_targets']}, "
            f"median of {result['steps']} steps")
    mem = "peak_mb" in result["rows"][0]
    cols = ["variant", "seq", "trainable", "head params", "calls/step", "step ms", "xstep", "GFLOP/step",
            "xFLOP", "head GFLOP"]
    if mem:
        cols += ["peak MB (model+step)", "xpeak", "process peak MB", "xprocess", "step +MB"]
    rows = []
    for r in result["rows"]:
        cells = [r["variant"], str(r["sequence"]), f"{r['trainable_params']:,}", f"{r['head_params']:,}",
                 str(r["forward_calls_per_step"]), f"{r['step_s'] * 1000:.1f}", f"{r['step_ratio']:.3f}",
                 f"{r['step_gflops']:.2f}", f"{r['flops_ratio']:.3f}", f"{r['head_gflops']:.2f}"]
        if mem:
            cells += [f"{r['model_peak_mb']:.1f}", f"{r['peak_ratio']:.3f}", f"{r['peak_mb']:.1f}",
                      f"{r['process_peak_ratio']:.3f}", f"{r['step_memory_mb']:.1f}"]
        rows.append(cells)
    lines = [head, "", markdown_table(cols, rows).rstrip()]
    if mem:
        lines += ["", f"memory: {result['memory_method']}; 'model+step' = peak minus the process's size before "
                  "the model was built (Python, torch, transformers)"]
    lines += ["", "targets (coat vs lora): " + ", ".join(f"{k} {v}" for k, v in result["target_checks"].items())]
    return "\n".join(lines) + "\n"


def write(result: dict, out: str | Path) -> Path:
    return write_report(result, out, SUBJECT, to_markdown)


@dataclass
class TrainingBenchConfig(BenchModelConfig):
    """``coat bench training``: the model, the CoAT settings and the steps timed."""

    out: str = field(default=f"runs/bench/{SUBJECT}", metadata={"help": "folder for training.json / .md"})
    k: int = field(default=16, metadata={"help": "thinking positions K"})
    batch: int = field(default=4, metadata={"help": "prompts per training step"})
    answer_len: int = field(default=16, metadata={"help": "answer tokens per prompt (the labels)"})
    lora_rank: int = field(default=16, metadata={"help": "LoRA rank of every variant"})
    head_d_model: int = field(default=HeadConfig.d_model, metadata={"help": "expert head width"})
    head_frames: int = field(default=HeadConfig.num_frames, metadata={"help": "F frames per head"})
    variants: list[str] = field(default_factory=lambda: list(VARIANTS),
                                metadata={"help": f"of {VARIANTS}, 'lora' first (--variants lora,coat)"})
    steps: int = field(default=5, metadata={"help": "timed steps per variant (interleaved)"})
    warmup: int = field(default=2, metadata={"help": "untimed steps per variant first"})
    memory_steps: int = field(default=2, metadata={"help": "steps in each peak-memory subprocess"})
    memory: bool = field(default=True, metadata={"help": "measure peak memory in subprocesses (--no-memory: skip)"})
    profile: bool = field(default=False, metadata={"help": "a torch.profiler table of one step per variant"})


def bench(config: TrainingBenchConfig) -> None:
    """What a CoAT training step costs next to the same LoRA fine-tuning step without CoAT: step time (interleaved,
    one process), peak memory (a subprocess per variant) and FLOPs of lora, coat text (the K-longer sequence) and
    coat (with heads and cached targets). Writes training.json and training.md to out.

    Examples:
        coat bench training --size mid        # ~5 min on 2 CPU cores
        coat bench training --size mid --head-d-model 128
    """
    dtype = apply_model_settings(config)
    result = run(family=config.family, size=config.size, device=config.device, dtype=dtype, k=config.k,
                 batch=config.batch, answer_len=config.answer_len, lora_rank=config.lora_rank, steps=config.steps,
                 warmup=config.warmup, memory=config.memory, memory_steps=config.memory_steps, profile=config.profile,
                 out=config.out, head_config=HeadConfig(d_model=config.head_d_model, num_frames=config.head_frames),
                 variants=tuple(config.variants), seed=config.seed)
    write(result, config.out)
    print(to_markdown(result))


main = main_of(SUBJECT)

if __name__ == "__main__":
    if sys.argv[1:2] == [_MEMORY_CHILD]:
        print(json.dumps(measure_memory(sys.argv[2], json.loads(sys.argv[3]))))
        raise SystemExit(0)
    raise SystemExit(main(sys.argv[1:]))
