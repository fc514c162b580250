"""coat targets [config.yaml] [key=value ...]: compute the expert targets of a dataset into the target cache.

Runs on one process, or on several with accelerate launch (one shard each; the main process merges). See
configs/targets_example.yaml and coat/experts/cache.py for the cache layout.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from coat.config_help import command_help
from coat.config_io import ConfigError, load_config
from coat.data.config import DataConfig
from coat.errors import CoatError
from coat.experts.base import ExpertConfig
from coat.experts.cache import AudioChecks


@dataclass
class TargetsConfig:
    """What ``coat targets`` computes, and how."""

    data: DataConfig | None = field(default=None, metadata={
        "help": "the audio: a source, or synth (the synthetic benchmark, written to source.path when that .jsonl "
                "does not exist yet: the example config's own data)"})
    experts: list[ExpertConfig] = field(
        default_factory=list, metadata={"help": "experts to run: names, or {name, params} mappings"}
    )
    cache_dir: str = field(default="runs/targets", metadata={"help": "root folder of the target caches"})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1...; null: accelerate's device"})
    batch_seconds: float = field(default=60.0, metadata={"help": "padded audio seconds per batch"})
    max_batch_size: int = field(default=64, metadata={"help": "most clips per batch"})
    checks: AudioChecks = field(default_factory=AudioChecks, metadata={"help": "what counts as bad audio"})
    resample: str = field(default="soxr_hq", metadata={"help": "librosa resampler (res_type)"})
    num_workers: int = field(default=2, metadata={"help": "threads decoding audio ahead of the experts"})
    imports: list[str] = field(
        default_factory=list, metadata={"help": "modules to import first (they may register_expert their own)"}
    )
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def __post_init__(self):
        if self.data is None:
            raise ValueError("data is required, e.g. data: {source: {path: data/clips}}")
        self.experts = [ExpertConfig(name=e) if isinstance(e, str) else e for e in self.experts]
        if not self.experts:
            raise ValueError("experts must list at least one expert, e.g. experts: [pitch, reconstruction]")
        if self.batch_seconds <= 0 or self.max_batch_size < 1:
            raise ValueError("batch_seconds must be > 0 and max_batch_size >= 1")


def build_experts(config: TargetsConfig):
    """Import ``config.imports``, then build every configured expert (errors become ConfigError)."""
    from coat.experts import build_experts as build

    for module in config.imports:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"imports: cannot import {module!r}: {err}") from err
    try:
        return build(config.experts)
    except ValueError as err:
        raise ConfigError(str(err)) from err


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
    return command_help("coat targets", SUMMARY, TargetsConfig, usage=USAGE, notes=NOTES, examples=EXAMPLES)


def main(argv: list[str]) -> int:
    from coat.data.config import open_data
    from coat.experts.cache import compute_targets, process_state

    if argv and argv[0].startswith("-"):
        raise ConfigError(f"usage: {USAGE} (coat targets --help lists the keys)")
    path, overrides = (argv[0], argv[1:]) if argv and "=" not in argv[0] else (None, argv)
    config = load_config(TargetsConfig, path, overrides)
    experts = build_experts(config)
    with process_state(config.device).main_process_first():  # the main process writes synthetic data first
        try:
            source = open_data(config.data, config.cache_dir)
        except (CoatError, ValueError, FileNotFoundError) as err:
            raise ConfigError(str(err)) from err
    if len(source) == 0:
        raise ConfigError(f"data: {source.description} has no examples (no audio files or rows)")
    compute_targets(source, experts, config.cache_dir, device=config.device, batch_seconds=config.batch_seconds,
                    max_batch_size=config.max_batch_size, checks=config.checks, res_type=config.resample,
                    num_workers=config.num_workers, progress=config.progress)
    return 0
