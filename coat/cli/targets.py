"""coat targets [config.yaml] [key=value ...]: compute the expert targets of a dataset into the target cache.

Runs on one process, or on several with accelerate launch (one shard each; the main process merges). See
configs/targets_example.yaml and coat/experts/cache.py for the cache layout.
"""

from __future__ import annotations

from coat.config_help import command_help
from coat.config_io import ConfigError, load_config

USAGE = "coat targets [config.yaml] [key=value ...]"
SUMMARY = ("Computes the expert targets (pitch, emotion, sound events, phonetics, log-mel, ...) of every example "
           "of a source once, batched by length, into a fingerprinted Arrow cache per expert under cache_dir, "
           "which training reads. Bad audio is reported per example in report.jsonl and left out; an interrupted "
           "run resumes where it stopped.")
NOTES = ("Several processes: accelerate launch --multi_gpu --num_processes N -m coat targets <config> (one shard "
         "per process; add --num_machines/--machine_rank/--main_process_ip for several nodes, with cache_dir on a "
         "shared disk). Without CUDA the same command starts N CPU processes in a gloo group (accelerate's --cpu "
         "--num_processes N starts only one unless it is given an MPI hostfile).")
EXAMPLES = [
    "coat targets configs/targets_example.yaml             # 48 synthetic clips, written on first use",
    "coat targets configs/targets_example.yaml data.source.path=runs/targets_example/data   # an audio folder",
    "accelerate launch --multi_gpu --num_processes 2 -m coat targets configs/targets_example.yaml",
]


def help_text(argv=()) -> str:
    from coat.extraction import ExtractConfig

    return command_help("coat targets", SUMMARY, ExtractConfig, usage=USAGE, notes=NOTES, examples=EXAMPLES)


def main(argv: list[str]) -> int:
    from coat.extraction import ExtractConfig, run_extraction

    if argv and argv[0].startswith("-"):
        raise ConfigError(f"usage: {USAGE} (coat targets --help lists the keys)")
    path, overrides = (argv[0], argv[1:]) if argv and "=" not in argv[0] else (None, argv)
    run_extraction(load_config(ExtractConfig, path, overrides))
    return 0
