"""Benchmarks of coat, run with ``coat bench <subject>`` from a source checkout (see coat/cli/bench.py)."""
