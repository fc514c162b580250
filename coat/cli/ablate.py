"""``coat ablate <config.yaml> [key=value ...]``: train and evaluate a grid of expert sets (see coat/ablation.py).

    coat ablate configs/ablate_tiny.yaml
    coat ablate configs/ablate_tiny.yaml "runs=[no_thinking, pause, all]" output_dir=runs/ablate_small

Running it again skips the finished runs and resumes the unfinished one.
"""

from __future__ import annotations

from coat.config_io import ConfigError


def main(argv: list[str]) -> int:
    from coat.ablation import load_ablation_config, run_ablation

    if not argv or argv[0].startswith("-") or "=" in argv[0]:
        raise ConfigError("usage: coat ablate <config.yaml> [key=value ...]  (e.g. configs/ablate_tiny.yaml)")
    config = load_ablation_config(argv[0], argv[1:])
    summary = run_ablation(config)
    print(summary["markdown"], end="")
    print(f"results: {summary['md']}, {summary['csv']}, {summary['png']} ({summary['metric']})")
    return 0
