"""``coat train <config.yaml> [key=value ...]``: distillation training (see coat/training.py)."""

import os
import sys

from coat.config_io import load_config


def main(argv: list[str]) -> int:
    from coat.training import TrainConfig, TrainingDataError, run_training

    if not argv or argv[0].startswith("-") or "=" in argv[0]:
        print("usage: coat train <config.yaml> [key=value ...]   (e.g. coat train configs/tiny.yaml)")
        return 2
    config = load_config(TrainConfig, argv[0], argv[1:])
    try:
        result = run_training(config)
    except (FloatingPointError, TrainingDataError) as err:  # a NaN loss, NaN weights, no usable examples
        print(f"coat train: {err}", file=sys.stderr)
        return 1
    if int(os.environ.get("RANK", "0")) == 0:  # once, not once per process
        print(f"adapter saved to {result['adapter']}")
    return 0
