"""The ``coat`` command: a small table from subcommand name to the module that runs it.

Each subcommand takes a YAML config and ``key=value`` overrides. Subcommand modules are imported only when
called, so ``coat --help`` stays fast (no torch). Every subcommand module has ``main(argv)`` and
``help_text(argv)``; ``coat <command> --help`` prints the latter (usage, options, every config key with its type,
default and help: coat/config_help.py). Errors the user can fix (:class:`coat.errors.CoatError`: a config key, a
missing path, an unreachable hub) print as one line and exit with status 2.
"""

from __future__ import annotations

import importlib
import sys

from coat.config_help import wants_help
from coat.errors import CoatError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("coat.cli.train", "distillation training: thinking table, expert heads, LoRA"),
    "targets": ("coat.cli.targets", "compute expert targets into the target cache (resumable)"),
    "analyze": ("coat.cli.analyze", "attention shares and linear probes: CoAT adapters vs the base"),
    "bench": ("coat.cli.bench", "run a benchmark from benchmarks/: coat bench <subject> [options]"),
    "eval": ("coat.cli.eval", "evaluate a base model and CoAT adapters side by side on a task suite"),
    "demo": ("coat.cli.demo", "offline demo: no thinking vs thinking vs CoAT on synthetic acoustic QA"),
    "ablate": ("coat.cli.ablate", "train and evaluate a grid of expert sets (same seed and budget)"),
}


def _usage() -> str:
    lines = ["usage: coat <command> [config.yaml] [key=value ...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "coat <command> --help lists the command's options and config keys. Outputs go under runs/ "
                  "(or the folder a config names)."]
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
    module = importlib.import_module(COMMANDS[name][0])
    try:
        if wants_help(rest):
            print(module.help_text(rest), end="")
            return 0
        return int(module.main(rest) or 0)
    except CoatError as err:
        print(f"coat {name}: {err}", file=sys.stderr)
        return 2
