"""``coat eval <config.yaml> [key=value ...]``: evaluate a base LALM and CoAT adapters side by side.

See :mod:`coat.evaluation` for the task types, metrics and outputs, and ``configs/eval_tiny.yaml`` for a config
that runs offline.
"""

from __future__ import annotations

import sys

from coat.config_io import ConfigError, load_config


def main(argv: list[str]) -> int:
    from coat.evaluation import EvalConfig, EvalDataError, results_markdown, run_eval, summary_lines

    if not argv or argv[0].startswith("-") or "=" in argv[0]:
        raise ConfigError("usage: coat eval <config.yaml> [key=value ...]")
    config = load_config(EvalConfig, argv[0], argv[1:])
    try:
        results = run_eval(config)
    except EvalDataError as err:
        print(f"coat eval: {err}", file=sys.stderr)
        return 2
    print(results_markdown(results), end="")
    for line in summary_lines(results):
        print(line)
    print(f"results: {config.output_dir}/results.json, {config.output_dir}/results.md")
    for column, failure in results["failed"].items():
        print(f"coat eval: {column} ({failure['path'] or 'base model'}) failed: {failure['error']}", file=sys.stderr)
    return 1 if results["failed"] else 0
