"""What every model benchmark shares: its command-line options for the model and the report it writes."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch

from coat import zoo

SIZES = ("tiny", "mid", "7b")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def add_model_arguments(parser: argparse.ArgumentParser, subject: str) -> None:
    parser.add_argument("--out", default=f"runs/bench/{subject}", help=f"folder for {subject}.json / .md")
    parser.add_argument("--family", default="qwen2_audio", choices=zoo.FAMILIES, help="model family (random weights)")
    parser.add_argument("--size", default="mid", choices=SIZES, help="tiny/mid: zoo configs; 7b: released shapes")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--dtype", default=None, choices=sorted(DTYPES), help="default: bfloat16 on cuda, else fp32")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: 1 on cpu, where the README's figures were measured: "
                             "ratios of side-by-side timings are steadier on one thread than with threads that "
                             "share cores with other work; torch's own default on cuda)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")


def apply_model_arguments(args: argparse.Namespace) -> str:
    """Set the thread count (``--threads``; 1 on cpu when not given); return the dtype name to run in."""
    on_cpu = not str(args.device).startswith("cuda")
    threads = args.threads or (1 if on_cpu else None)
    if threads:
        torch.set_num_threads(threads)
    return args.dtype or ("float32" if on_cpu else "bfloat16")


def write_report(result: dict, out: str | Path, subject: str, to_markdown: Callable[[dict], str]) -> Path:
    """``<out>/<subject>.json`` and ``<out>/<subject>.md``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{subject}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{subject}.md").write_text(to_markdown(result))
    return out
