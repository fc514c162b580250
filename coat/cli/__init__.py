"""The ``coat`` command: one table from command name to (config class, run function), one convention for all::

    coat <command> [config.yaml] [key=value ...]
    coat bench <subject> [config.yaml] [key=value ...]

A command's config is its dataclass's defaults, then the YAML file, then the ``key=value`` overrides (dotted for
sections, YAML for lists: ``experts=[pitch]``). Every top-level key is also an option, ``--key value`` (dashes for
underscores; ``--key`` alone sets a true/false key, ``--no-key`` clears it; a comma list fills a list key), and a
command may name short aliases (``coat demo --output DIR``). ``coat <command> --help`` prints every key with its
type, default and help, from the dataclass (coat/config_help.py). Classes and functions are import paths, imported
when the command runs, so ``coat --help`` loads no torch. Errors the user can fix (:class:`coat.errors.CoatError`:
a config key, a missing path, an unreachable hub) print as one line and exit with status 2.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import typing
from dataclasses import dataclass, field

from coat.config_help import command_help, wants_help
from coat.errors import CoatError

USAGE = "coat <command> [config.yaml] [key=value ...]"


@dataclass(frozen=True)
class Command:
    """One command: its config class and its run function (``(config) -> exit status``), as ``module:name``; the
    line ``coat --help`` shows; flag aliases of keys; and, for configs with includes or presets, the function that
    loads them (``(path, overrides) -> config``). The run function's docstring is the command's ``--help``: a
    summary, notes, and a last paragraph ``Examples:`` with one command line each."""

    config: str
    run: str
    help: str
    aliases: dict[str, str] = field(default_factory=dict)
    load: str = ""


@dataclass(frozen=True)
class Group:
    """A command whose first argument picks one of several commands (``coat bench <subject>``)."""

    help: str
    commands: dict[str, Command]


BENCHMARKS: dict[str, Command] = {
    "generation": Command("benchmarks.generation:GenerationBenchConfig", "benchmarks.generation:bench",
                          "time to first token, decode tok/s, forward calls: base vs CoAT vs multi-pass latent vs "
                          "text chain of thought"),
    "training": Command("benchmarks.training:TrainingBenchConfig", "benchmarks.training:bench",
                        "step time and peak memory: CoAT training step vs the same LoRA step"),
    "targets": Command("benchmarks.targets:BenchTargetsConfig", "benchmarks.targets:bench",
                       "expert target extraction: audio seconds per second, batched vs one clip at a time"),
    "widths": Command("benchmarks.widths:WidthsBenchConfig", "benchmarks.widths:bench",
                      "the released models at full depth: what CoAT adds, one training step's memory (estimate)"),
}

COMMANDS: dict[str, Command | Group] = {
    "train": Command("coat.training:TrainConfig", "coat.cli.commands:train",
                     "distillation training: thinking table, expert heads, LoRA"),
    "targets": Command("coat.extraction:ExtractConfig", "coat.cli.commands:targets",
                       "compute expert targets into the target cache (resumable)"),
    "analyze": Command("coat.analysis:AnalyzeConfig", "coat.cli.commands:analyze",
                       "attention shares and linear probes: CoAT adapters vs the base"),
    "bench": Group("run a benchmark from benchmarks/: coat bench <subject> [config.yaml] [key=value ...]",
                   BENCHMARKS),
    "eval": Command("coat.evaluation:EvalConfig", "coat.cli.commands:evaluate",
                    "evaluate a base model and CoAT adapters side by side on a task suite"),
    "demo": Command("coat.demo:DemoConfig", "coat.cli.commands:demo",
                    "offline demo: no thinking vs thinking vs CoAT on synthetic acoustic QA",
                    aliases={"--output": "output_dir"}, load="coat.demo:load_demo_config"),
    "ablate": Command("coat.ablation:AblationConfig", "coat.cli.commands:ablate",
                      "train and evaluate a grid of expert sets (same seed and budget)",
                      load="coat.ablation:load_ablation_config"),
}


def _import(path: str):
    """``module:name`` -> the object; ``benchmarks.*`` modules come from the checkout (coat/cli/bench.py)."""
    module, _, name = path.partition(":")
    if module.startswith("benchmarks."):
        from coat.cli.bench import import_benchmark

        return getattr(import_benchmark(module), name)
    return getattr(importlib.import_module(module), name)


def _usage(title: str, usage: str, table: dict) -> str:
    lines = [f"usage: {usage}", "", f"{title}:"]
    lines += [f"  {name:<10} {entry.help}" for name, entry in table.items()]
    return "\n".join(lines)


def _top_usage() -> str:
    return _usage("commands", USAGE, COMMANDS) + (
        "\n\ncoat <command> --help lists the command's config keys. Outputs go under runs/ (or the folder a config "
        "names).")


def help_text(prog: str, command: Command) -> str:
    """``coat <command> --help``: usage, the run function's docstring, options, every config key, examples."""
    paragraphs = (inspect.getdoc(_import(command.run)) or command.help).split("\n\n")
    examples = paragraphs.pop().splitlines()[1:] if paragraphs[-1].startswith("Examples:") else []
    summary, notes = paragraphs[0], " ".join(paragraphs[1:])
    options = [(flag, f"sets {key}") for flag, key in command.aliases.items()]
    options.append(("--key VALUE", "every top-level key below as an option (dashes for underscores): --key alone "
                                   "sets a true/false key, --no-key clears it, a comma list fills a list key"))
    return command_help(prog, summary, _import(command.config), usage=f"{prog} [config.yaml] [key=value ...]",
                        options=options, examples=[line.strip() for line in examples], notes=notes)


def _flag_override(flag: str, value: str | None, types: dict, aliases: dict[str, str], prog: str):
    """``--name[=value]`` as ``key=value``; returns (override, whether it took the next argument as its value)."""
    name = flag.split("=", 1)[0]
    key = aliases.get(name) or name[2:].replace("-", "_")
    if "=" in flag:
        return f"{key}={flag.split('=', 1)[1]}", False
    if key not in types and key.startswith("no_") and types.get(key[3:]) is bool:
        return f"{key[3:]}=false", False
    if key not in types:
        raise CoatError(f"{prog}: unknown option {name}; options are the top-level config keys ({', '.join(types)}) "
                        f"as --key value{' and ' + ', '.join(aliases) if aliases else ''} ({prog} --help)")
    if types[key] is bool:
        return f"{key}=true", False
    if value is None:
        raise CoatError(f"{prog}: option {name} needs a value ({name} VALUE)")
    kinds = [types[key], *typing.get_args(types[key])]
    if any((typing.get_origin(t) or t) in (list, tuple) for t in kinds) and not value.lstrip().startswith("["):
        value = f"[{value}]"  # --ks 8,16,32
    return f"{key}={value}", True


def split_arguments(argv: list[str], cls, aliases: dict[str, str], prog: str) -> tuple[str | None, list[str]]:
    """``[config.yaml] [key=value | --key value ...]`` -> (the YAML path or None, the ``key=value`` overrides)."""
    from coat.config_io import field_types

    path = None
    if argv and not argv[0].startswith("-") and "=" not in argv[0]:
        path, argv = argv[0], argv[1:]
    types, overrides, i = field_types(cls), [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--"):
            value = argv[i + 1] if i + 1 < len(argv) else None
            override, took = _flag_override(arg, value, types, aliases, prog)
            overrides.append(override)
            i += 2 if took else 1
        elif "=" in arg:
            overrides.append(arg)
            i += 1
        else:
            raise CoatError(f"{prog}: unexpected argument {arg!r}; usage: {prog} [config.yaml] [key=value ...] "
                            f"({prog} --help lists the keys)")
    return path, overrides


def run_command(prog: str, command: Command, argv: list[str]) -> int:
    """Load the command's config from ``argv`` and run it."""
    if wants_help(argv):
        print(help_text(prog, command), end="")
        return 0
    cls = _import(command.config)
    path, overrides = split_arguments(argv, cls, command.aliases, prog)
    if command.load:
        config = _import(command.load)(path, overrides)
    else:
        from coat.config_io import load_config

        config = load_config(cls, path, overrides)
    return int(_import(command.run)(config) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_top_usage())
        return 0
    name, rest, prog = argv[0], argv[1:], f"coat {argv[0]}"
    entry = COMMANDS.get(name)
    if entry is None:
        print(f"coat: unknown command {name!r}\n\n{_top_usage()}", file=sys.stderr)
        return 2
    if isinstance(entry, Group):
        usage = f"{prog} <subject> [config.yaml] [key=value ...]"
        if not rest or rest[0] in ("-h", "--help"):
            print(_usage("subjects", usage, entry.commands) + f"\n\n{prog} <subject> --help lists its config keys.")
            return 0
        if rest[0] not in entry.commands:
            print(f"{prog}: unknown subject {rest[0]!r}\n\n{_usage('subjects', usage, entry.commands)}",
                  file=sys.stderr)
            return 2
        prog, entry, rest = f"{prog} {rest[0]}", entry.commands[rest[0]], rest[1:]
    try:
        return run_command(prog, entry, rest)
    except CoatError as err:
        message = str(err) if str(err).startswith(prog) else f"{prog}: {err}"
        if not rest:  # nothing given and the config needs something: say how it is called
            message += f"\nusage: {prog} [config.yaml] [key=value ...] ({prog} --help lists the keys)"
        print(message, file=sys.stderr)
        return 2


