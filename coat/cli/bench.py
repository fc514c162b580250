"""coat bench <subject> [options]: run one benchmark from the checkout's benchmarks/ folder.

A small table maps each subject to its module in ``benchmarks/`` (at the top of the repository, next to the
``coat`` package, not inside it); the module's ``main(argv)`` gets the remaining arguments. Benchmarks ship with
the source tree, not with the installed package, so this needs a checkout (an editable install).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from coat.errors import CoatError


class BenchmarkNotFound(CoatError, FileNotFoundError):
    """The benchmark file is not in this checkout (an installed package has no benchmarks/)."""


# subject -> (module file in benchmarks/, one-line help)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "generation": ("generation.py", "time to first token, decode tok/s, forward calls: base vs CoAT vs multi-pass "
                   "latent vs text chain of thought"),
    "training": ("training.py", "step time and peak memory: CoAT training step vs the same LoRA step"),
    "targets": ("targets.py", "expert target extraction: audio seconds per second, batched vs one clip at a time"),
}


def benchmarks_dir() -> Path:
    """``benchmarks/`` of the checkout this ``coat`` package was imported from."""
    import coat

    return Path(coat.__file__).resolve().parent.parent / "benchmarks"


def _usage() -> str:
    lines = ["usage: coat bench <subject> [config.yaml] [key=value ...]", "", "subjects:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in BENCHMARKS.items()]
    return "\n".join(lines)


def load_benchmark(subject: str):
    """The benchmark module of ``subject``, imported as ``benchmarks.<name>`` from the checkout."""
    folder = benchmarks_dir()
    file = folder / BENCHMARKS[subject][0]
    if not file.is_file():
        raise BenchmarkNotFound(
            f"coat bench {subject}: {file} not found. Benchmarks live in the source checkout's benchmarks/ "
            "folder; run from a clone installed with `pip install -e .`."
        )
    # as a package, the way the benchmarks' own tests import them, so they can share helpers
    if str(folder.parent) not in sys.path:
        sys.path.insert(0, str(folder.parent))
    module = importlib.import_module(f"benchmarks.{file.stem}")
    if Path(module.__file__).resolve() != file.resolve():
        raise BenchmarkNotFound(f"coat bench {subject}: imported {module.__file__}, not {file} (another "
                                "`benchmarks` package is shadowing the checkout's)")
    return module


def help_text(argv=()) -> str:
    """``coat bench --help``: the subjects; ``coat bench <subject> --help``: that benchmark's options."""
    if not argv or argv[0] not in BENCHMARKS:
        return _usage() + "\n\ncoat bench <subject> --help lists the subject's options.\n"
    return load_benchmark(argv[0]).help_text(argv[1:])


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(help_text())
        return 0
    subject, rest = argv[0], argv[1:]
    if subject not in BENCHMARKS:
        print(f"coat bench: unknown subject {subject!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        module = load_benchmark(subject)
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 2
    return int(module.main(rest) or 0)
