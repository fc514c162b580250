"""``coat targets <config.yaml> [key=value ...]``: compute the expert targets of a dataset into the target cache.

Runs on one process, or on several with ``accelerate launch --multi_gpu --num_processes N -m coat targets ...``
(add ``--num_machines``/``--machine_rank``/``--main_process_ip`` for several nodes; the cache folder must be
shared): each process takes one shard and the main process merges. On a host without CUDA the same command
starts N CPU processes in a gloo group (accelerate's ``--cpu --num_processes N`` starts only one unless it is
given an MPI hostfile). Interrupted runs resume where they stopped. See ``configs/targets_example.yaml`` and
:mod:`coat.experts.cache` for the cache layout.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from coat.config_io import ConfigError, load_config
from coat.data.sources import SourceConfig
from coat.experts.base import ExpertConfig
from coat.experts.cache import AudioChecks


@dataclass
class TargetsConfig:
    """What ``coat targets`` computes, and how."""

    source: SourceConfig | None = field(default=None, metadata={"help": "where the audio comes from"})
    experts: list[ExpertConfig] = field(
        default_factory=list, metadata={"help": "experts to run: names, or {name, params} mappings"}
    )
    cache_dir: str = field(default="cache/targets", metadata={"help": "root folder of the target caches"})
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


def main(argv: list[str]) -> int:
    from coat.data.sources import open_source
    from coat.experts.cache import compute_targets

    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    path, overrides = (argv[0], argv[1:]) if argv and "=" not in argv[0] else (None, argv)
    config = load_config(TargetsConfig, path, overrides)
    experts = build_experts(config)
    try:
        source = open_source(config.source)
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(f"source: {err}") from err
    if len(source) == 0:
        raise ConfigError(f"source: {source.description} has no examples (no audio files or rows)")
    compute_targets(source, experts, config.cache_dir, device=config.device, batch_seconds=config.batch_seconds,
                    max_batch_size=config.max_batch_size, checks=config.checks, res_type=config.resample,
                    num_workers=config.num_workers, progress=config.progress)
    return 0
