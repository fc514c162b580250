"""The ``coat`` command: a small table from subcommand name to the function that runs it.

Each subcommand takes a YAML config and ``key=value`` overrides. Subcommand modules are imported
only when called, so ``coat --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

from coat.config_io import ConfigError

# name -> (module, function, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("coat.cli.train", "main", "distillation training: thinking table, expert heads, LoRA"),
    "targets": ("coat.cli.targets", "main", "compute expert targets into the target cache (resumable)"),
    "analyze": ("coat.cli.analyze", "main", "attention shares and linear probes: CoAT adapters vs the base"),
    "bench": ("coat.cli.bench", "main", "run a benchmark from benchmarks/: coat bench <subject> [config] [k=v]"),
    "eval": ("coat.cli.eval", "main", "evaluate a base model and CoAT adapters side by side on a task suite"),
    "demo": ("coat.cli.demo", "main", "offline demo: no thinking vs thinking vs CoAT on synthetic acoustic QA"),
    "ablate": ("coat.cli.ablate", "main", "train and evaluate a grid of expert sets (same seed and budget)"),
}


def _usage() -> str:
    lines = ["usage: coat <command> [config.yaml] [key=value ...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"coat: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module, func, _ = COMMANDS[name]
    try:
        return int(getattr(importlib.import_module(module), func)(rest) or 0)
    except ConfigError as err:
        print(f"coat {name}: {err}", file=sys.stderr)
        return 2
