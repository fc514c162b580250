"""coat eval <config.yaml> [key=value ...]: a base LALM and CoAT adapters side by side (coat/evaluation.py)."""

from __future__ import annotations

import sys

from coat.config_help import command_help
from coat.config_io import ConfigError, load_config

USAGE = "coat eval <config.yaml> [key=value ...]"
SUMMARY = ("Evaluate a base LALM and CoAT adapters side by side on a suite of tasks, with batched greedy "
           "generation: multiple-choice audio QA (MMAU/MMAR format; accuracy overall and per category), "
           "classification by prompt (accuracy, macro-F1) and transcription (WER). Writes results.json (every "
           "prediction) and results.md to output_dir.")
EXAMPLES = [
    "coat eval configs/eval_tiny.yaml                               # offline: a tiny random model (scores ~0)",
    "coat eval configs/eval_tiny.yaml adapters=[runs/tiny/train/adapter]   # after coat train configs/tiny.yaml",
]


def help_text(argv=()) -> str:
    from coat.evaluation import EvalConfig

    return command_help("coat eval", SUMMARY, EvalConfig, usage=USAGE, examples=EXAMPLES)


def main(argv: list[str]) -> int:
    from coat.evaluation import EvalConfig, results_markdown, run_eval, summary_lines
    from coat.smoke import tiny_model_note

    if not argv or argv[0].startswith("-") or "=" in argv[0]:
        raise ConfigError(f"usage: {USAGE}  (e.g. coat eval configs/eval_tiny.yaml; coat eval --help lists the keys)")
    config = load_config(EvalConfig, argv[0], argv[1:])
    results = run_eval(config)
    print(results_markdown(results), end="")
    for line in summary_lines(results):
        print(line)
    if config.model.create_tiny:
        print(tiny_model_note("coat eval"))
    print(f"results: {config.output_dir}/results.json, {config.output_dir}/results.md")
    for column, failure in results["failed"].items():
        print(f"coat eval: {column} ({failure['path'] or 'base model'}) failed: {failure['error']}", file=sys.stderr)
    return 1 if results["failed"] else 0
