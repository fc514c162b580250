"""coat train <config.yaml> [key=value ...]: distillation training (coat/training.py)."""

import os
import sys

from coat.config_help import command_help
from coat.config_io import ConfigError, load_config

USAGE = "coat train <config.yaml> [key=value ...]"
SUMMARY = ("Distillation training: a base LALM gets K thinking positions after every audio span, expert heads read "
           "them and learn the expert targets, LoRA adapts the language model; a schedule of stages, each a "
           "transformers Trainer run. Running the same command again resumes an interrupted run; a run whose "
           "stages are all finished trains nothing and says so.")
EXAMPLES = [
    "coat train configs/tiny.yaml                      # offline: a tiny random model, about a minute on a CPU",
    "coat train configs/tiny.yaml training.output_dir=runs/tiny2 coat.num_thinking=4",
    "coat train configs/qwen2_audio.yaml data.train.path=/data/train.jsonl   # a GPU and the model hub",
    "accelerate launch -m coat train configs/qwen2_audio.yaml data.train.path=/data/train.jsonl",
]


def help_text(argv=()) -> str:
    from coat.training import TrainConfig

    return command_help("coat train", SUMMARY, TrainConfig, usage=USAGE, examples=EXAMPLES)


def main(argv: list[str]) -> int:
    from coat.training import TrainConfig, TrainingDataError, run_training

    if not argv or argv[0].startswith("-") or "=" in argv[0]:
        raise ConfigError(f"usage: {USAGE}  (e.g. coat train configs/tiny.yaml; coat train --help lists the keys)")
    config = load_config(TrainConfig, argv[0], argv[1:])
    try:
        result = run_training(config)
    except (FloatingPointError, TrainingDataError) as err:  # a NaN loss, NaN weights, no usable examples
        print(f"coat train: {err}", file=sys.stderr)
        return 1
    if int(os.environ.get("RANK", "0")) == 0:  # once, not once per process
        if config.model.create_tiny:
            from coat.smoke import tiny_model_note

            print(tiny_model_note("coat train"))
        if result.trained_stages:
            print(f"trained {', '.join(result.trained_stages)}; adapter saved to {result.adapter}")
        else:
            print(f"nothing to train: every stage of {result.output_dir} finished in an earlier run; the "
                  f"adapter is {result.adapter} (another training.output_dir starts a new run)")
    return 0
