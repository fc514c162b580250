"""Target extraction throughput: audio seconds processed per second, batched by length vs one clip at a time.

``coat bench targets [config.yaml] [key=value ...]`` (fields of :class:`BenchTargetsConfig`). Both ways run side
by side in one process on the same clips, for each expert: batched uses the cache's own batching
(``length_batches``: sorted by duration, a budget of padded seconds per batch); one-at-a-time calls the expert
per clip. Audio is synthesised and already at the expert's rate, so only the expert's compute is timed (no
decoding, resampling or Arrow writing). Each way is timed ``repeats`` times after a warm-up call; the best time
counts. Writes ``results.json`` and ``results.md`` to ``out_dir`` and prints the table.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import main_of  # noqa: E402
from coat.files import write_atomic  # noqa: E402
from coat.reports import markdown_table  # noqa: E402


@dataclass
class BenchTargetsConfig:
    experts: list[str] = field(default_factory=lambda: ["pitch", "reconstruction"], metadata={"help": "names"})
    expert_params: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"pitch": {"model": "tiny"}}, metadata={"help": "expert name -> its parameters"}
    )
    num_clips: int = field(default=16, metadata={"help": "clips per expert"})
    min_seconds: float = field(default=1.0, metadata={"help": "shortest clip"})
    max_seconds: float = field(default=4.0, metadata={"help": "longest clip"})
    batch_seconds: float = field(default=30.0, metadata={"help": "padded audio seconds per batch"})
    max_batch_size: int = field(default=64, metadata={"help": "most clips per batch"})
    repeats: int = field(default=1, metadata={"help": "timings per way; the best counts"})
    device: str = field(default="cuda" if torch.cuda.is_available() else "cpu", metadata={"help": "where to run"})
    seed: int = field(default=0, metadata={"help": "seed of the clip lengths and contents"})
    out_dir: str = field(default="runs/bench/targets", metadata={"help": "where results go"})

    def __post_init__(self):
        if self.num_clips < 1 or self.repeats < 1:
            raise ValueError("num_clips and repeats must be >= 1")
        if not 0 < self.min_seconds <= self.max_seconds:
            raise ValueError("need 0 < min_seconds <= max_seconds")


def make_clips(n: int, sr: int, min_s: float, max_s: float, seed: int) -> list[np.ndarray]:
    """Harmonic tones with a gliding pitch in light noise: something for both pitch and log-mel to chew on."""
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(n):
        samples = int(rng.uniform(min_s, max_s) * sr)
        t = np.arange(samples) / sr
        f0 = rng.uniform(100, 400) * 2 ** (rng.uniform(-0.5, 0.5) * t / max(t[-1], 1e-3))
        phase = 2 * np.pi * np.cumsum(f0) / sr
        tone = sum(np.sin(k * phase) / k for k in range(1, 5))
        clips.append((0.2 * tone + 0.01 * rng.standard_normal(samples)).astype(np.float32))
    return clips


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_time(fn, repeats: int, device: torch.device) -> float:
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def bench_expert(name: str, params: dict[str, Any], config: BenchTargetsConfig) -> dict[str, Any]:
    from coat.experts import build_expert
    from coat.experts.compute import length_batches, pad_batch

    device = torch.device(config.device)
    expert = build_expert(name, **params).to(device)
    sr = expert.sample_rate
    clips = make_clips(config.num_clips, sr, config.min_seconds, config.max_seconds, config.seed)
    seconds = [len(c) / sr for c in clips]
    batches = length_batches(seconds, config.batch_seconds, config.max_batch_size)
    expert(*pad_batch(clips[:1]))  # warm-up: loads the weights, first-call kernels

    def batched():
        for batch in batches:
            expert(*pad_batch([clips[i] for i in batch]))

    def one_at_a_time():
        for clip in clips:
            expert(*pad_batch([clip]))

    t_batched = _best_time(batched, config.repeats, device)
    t_single = _best_time(one_at_a_time, config.repeats, device)
    audio = float(sum(seconds))
    return {
        "expert": name, "params": params, "clips": len(clips), "audio_seconds": round(audio, 3),
        "batches": len(batches), "batched_seconds": t_batched, "single_seconds": t_single,
        "batched_audio_s_per_s": audio / t_batched, "single_audio_s_per_s": audio / t_single,
        "ratio": t_single / t_batched,
    }


def results_table(rows: list[dict[str, Any]], env: dict[str, Any]) -> str:
    head = (f"Target extraction throughput on {env['device']} ({env['device_name']}, torch {env['torch']}, "
            f"{env['threads']} threads); audio seconds per second of compute.")
    header = ["expert", "clips", "audio s", "batches", "batched (audio s/s)", "one at a time (audio s/s)",
              "batched / single"]
    cells = [[r["expert"], r["clips"], f"{r['audio_seconds']:.1f}", r["batches"], f"{r['batched_audio_s_per_s']:.1f}",
              f"{r['single_audio_s_per_s']:.1f}", f"{r['ratio']:.2f}x"] for r in rows]
    return f"{head}\n\n{markdown_table(header, cells)}"


def run(config: BenchTargetsConfig) -> dict[str, Any]:
    device = torch.device(config.device)
    env = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version(),
    }
    rows = [bench_expert(name, config.expert_params.get(name, {}), config) for name in config.experts]
    result = {"benchmark": "targets", "config": asdict(config), "env": env, "results": rows}
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "results.json", json.dumps(result, indent=2))
    table = results_table(rows, env)
    write_atomic(out / "results.md", table)
    print(table)
    print(f"written to {out / 'results.json'} and {out / 'results.md'}")
    return result


def bench(config: BenchTargetsConfig) -> None:
    """Target extraction throughput: audio seconds processed per second by each expert, batched by length (the
    cache's own batching) next to one clip at a time, side by side in one process on the same synthesised clips.
    Writes results.json and results.md to out_dir and prints the table.

    Examples:
        coat bench targets
        coat bench targets num_clips=64 repeats=3 device=cuda
    """
    run(config)


main = main_of("targets")

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
