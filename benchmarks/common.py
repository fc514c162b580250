"""What every model benchmark shares: its settings for the model (a config section every subject's config starts
with, so ``--size``, ``--device``, ``--threads`` ... work the same way everywhere) and the report it writes."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from coat import zoo
from coat.files import write_atomic
from coat.loading import DTYPES

SIZES = ("tiny", "mid", "7b")


@dataclass
class BenchModelConfig:
    """The random-weight model a benchmark runs and where its report goes (the keys every subject shares)."""

    out: str = field(default="runs/bench", metadata={"help": "folder for <subject>.json / .md"})
    family: str = field(default="qwen2_audio", metadata={"help": f"model family (random weights), of {zoo.FAMILIES}"})
    size: str = field(default="mid", metadata={"help": f"of {SIZES}: tiny, mid (zoo configs) or the released 7B"})
    device: str = field(default="cuda" if torch.cuda.is_available() else "cpu",
                        metadata={"help": "cpu, cuda, cuda:1, ... (default: cuda when available)"})
    dtype: str | None = field(default=None, metadata={"help": "float32, bfloat16 or float16; null: bfloat16 on cuda, "
                                                               "else float32"})
    threads: int | None = field(default=None, metadata={
        "help": "torch CPU threads (null: 1 on cpu, where the README's figures were measured: ratios of side-by-side "
                "timings are steadier on one thread than with threads that share cores with other work; torch's own "
                "default on cuda)"})
    seed: int = field(default=0, metadata={"help": "seed of the random weights and inputs"})

    def __post_init__(self):
        if self.family not in zoo.FAMILIES:
            raise ValueError(f"family must be one of {zoo.FAMILIES}, got {self.family!r}")
        if self.size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {self.size!r}")
        if self.dtype is not None and (self.dtype == "auto" or self.dtype not in DTYPES):
            raise ValueError(f"dtype must be one of {sorted(set(DTYPES) - {'auto'})}, got {self.dtype!r}")


def apply_model_settings(config: BenchModelConfig) -> str:
    """Set the thread count (``threads``; 1 on cpu when not given); return the dtype name to run in."""
    on_cpu = not str(config.device).startswith("cuda")
    threads = config.threads or (1 if on_cpu else None)
    if threads:
        torch.set_num_threads(threads)
    return config.dtype or ("float32" if on_cpu else "bfloat16")


def write_report(result: dict, out: str | Path, subject: str, to_markdown: Callable[[dict], str]) -> Path:
    """``<out>/<subject>.json`` and ``<out>/<subject>.md``, each written atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / f"{subject}.json", json.dumps(result, indent=2) + "\n")
    write_atomic(out / f"{subject}.md", to_markdown(result))
    return out


def main_of(subject: str) -> Callable[[list[str] | None], int]:
    """A benchmark file's ``main(argv)``: ``python benchmarks/<subject>.py [config.yaml] [key=value | --key value
    ...]`` runs as ``coat bench <subject>`` does."""

    def main(argv: list[str] | None = None) -> int:
        from coat.cli import main as coat

        return coat(["bench", subject, *(argv or [])])

    return main
