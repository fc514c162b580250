"""Where ``coat bench`` finds its benchmarks: the checkout's ``benchmarks/`` folder, at the top of the repository next
to the ``coat`` package (not inside it). Benchmarks ship with the source tree, not with the installed package, so
``coat bench`` needs a checkout (an editable install). The subjects are in the table of coat/cli/__init__.py."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from coat.errors import CoatError


class BenchmarkNotFound(CoatError, FileNotFoundError):
    """The benchmark file is not in this checkout (an installed package has no benchmarks/)."""


def benchmarks_dir() -> Path:
    """``benchmarks/`` of the checkout this ``coat`` package was imported from."""
    import coat

    return Path(coat.__file__).resolve().parent.parent / "benchmarks"


def import_benchmark(module: str):
    """``benchmarks.<name>``, imported from the checkout as a package (the way the benchmarks' own tests import
    them, so they can share helpers)."""
    folder = benchmarks_dir()
    file = folder / f"{module.split('.', 1)[1]}.py"
    if not file.is_file():
        raise BenchmarkNotFound(f"{file} not found. Benchmarks live in the source checkout's benchmarks/ folder; run "
                                "from a clone installed with `pip install -e .`.")
    if str(folder.parent) not in sys.path:
        sys.path.insert(0, str(folder.parent))
    loaded = importlib.import_module(module)
    if Path(loaded.__file__).resolve() != file.resolve():
        raise BenchmarkNotFound(f"imported {loaded.__file__}, not {file} (another `benchmarks` package is shadowing "
                                "the checkout's)")
    return loaded
