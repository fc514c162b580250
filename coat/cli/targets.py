"""coat targets [config.yaml] [key=value ...]: compute the expert targets of a dataset into the target cache.

Runs on one process, or on several with accelerate launch (one shard each; the main process merges). See
configs/targets_example.yaml and coat/experts/cache.py for the cache layout.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from coat.config_help import command_help
from coat.config_io import ConfigError, load_config
from coat.data.sources import SourceConfig
from coat.data.synth import SynthConfig
from coat.errors import CoatError
from coat.experts.base import ExpertConfig
from coat.experts.cache import AudioChecks


@dataclass
class TargetsConfig:
    """What ``coat targets`` computes, and how."""

    source: SourceConfig | None = field(default=None, metadata={"help": "where the audio comes from"})
    experts: list[ExpertConfig] = field(
        default_factory=list, metadata={"help": "experts to run: names, or {name, params} mappings"}
    )
    synth: SynthConfig | None = field(default=None, metadata={
        "help": "the synthetic benchmark (coat.data.synth): when source.path is a .jsonl manifest that does not "
                "exist yet, this split is written there first (wavs next to it). The example config's own data"})
    synth_split: str = field(default="train", metadata={"help": "which synthetic split synth writes"})
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
        if self.source is None:
            raise ValueError("source is required, e.g. source: {path: data/clips}")
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
    "coat targets configs/targets_example.yaml source.path=runs/targets_example/data   # an audio folder",
    "accelerate launch --multi_gpu --num_processes 2 -m coat targets configs/targets_example.yaml",
]


def help_text(argv=()) -> str:
    return command_help("coat targets", SUMMARY, TargetsConfig, usage=USAGE, notes=NOTES, examples=EXAMPLES)


def prepare_synth(config: TargetsConfig, state) -> None:
    """Write the config's synthetic data to ``source.path`` when that manifest does not exist yet (once: the main
    process writes, the others wait)."""
    from coat.data.synth import write_split_if_missing

    if config.synth is None:
        return
    path = Path(config.source.path)
    if path.exists() or path.suffix != ".jsonl":  # an existing source, or the user's own (missing) path
        return
    with state.main_process_first():
        if state.is_main_process and not path.exists():
            n = config.synth.split_size(config.synth_split)
            print(f"coat targets: writing the synthetic {config.synth_split} split ({n} clips, synth:) to {path}")
            write_split_if_missing(path, config.synth, config.synth_split)


def main(argv: list[str]) -> int:
    from coat.data.sources import open_source
    from coat.experts.cache import compute_targets, process_state

    if argv and argv[0].startswith("-"):
        raise ConfigError(f"usage: {USAGE} (coat targets --help lists the keys)")
    path, overrides = (argv[0], argv[1:]) if argv and "=" not in argv[0] else (None, argv)
    config = load_config(TargetsConfig, path, overrides)
    experts = build_experts(config)
    prepare_synth(config, process_state(config.device))
    try:
        source = open_source(config.source)
    except (CoatError, ValueError, FileNotFoundError) as err:
        raise ConfigError(f"source: {err}") from err
    if len(source) == 0:
        raise ConfigError(f"source: {source.description} has no examples (no audio files or rows)")
    compute_targets(source, experts, config.cache_dir, device=config.device, batch_seconds=config.batch_seconds,
                    max_batch_size=config.max_batch_size, checks=config.checks, res_type=config.resample,
                    num_workers=config.num_workers, progress=config.progress)
    return 0
