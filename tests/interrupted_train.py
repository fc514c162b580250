"""``coat train`` that stops after a given step of a given stage, as a kill between two steps would: run by
tests/test_distributed.py under ``accelerate launch`` to interrupt a sharded run (a CLI cannot take a callback).

    python tests/interrupted_train.py STAGE_DIR_NAME STEP train CONFIG [key=value ...]
"""

import sys

from transformers import TrainerCallback

from coat.config_io import load_config
from coat.training import TrainConfig, run_training


class StopAfter(TrainerCallback):
    def __init__(self, stage_dir_name: str, step: int):
        self.stage_dir_name, self.step = stage_dir_name, step

    def on_step_end(self, args, state, control, **kwargs):
        if args.output_dir.endswith(self.stage_dir_name) and state.global_step == self.step:
            raise KeyboardInterrupt(f"simulated interruption after step {self.step} of {self.stage_dir_name}")


if __name__ == "__main__":
    stage, step, command, config, *overrides = sys.argv[1:]
    assert command == "train", command
    run_training(load_config(TrainConfig, config, overrides), callbacks=[StopAfter(stage, int(step))])
