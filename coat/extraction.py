"""``coat targets``: the expert targets of a data section, computed once into the target caches that training reads.

Its config has the four sections ``coat train`` has for the same purpose, with the same keys (``data``,
``experts``, ``targets``, and ``heads``, whose frame count the caches keep), so the targets a training run needs are
computed by running ``coat targets`` on the same sections, or by the run itself with ``targets.compute: true``: both
write and open the same caches (coat/experts/config.py). Runs on one process, or on several with ``accelerate
launch`` (one shard each; the main process merges). The cache layout: coat/experts/cache.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from coat.config_io import ConfigError
from coat.data.config import DataConfig, open_data
from coat.errors import CoatError
from coat.experts.base import ExpertConfig
from coat.experts.compute import CacheRun, process_state
from coat.experts.config import TargetsConfig, compute_caches, load_experts
from coat.heads import HeadConfig


@dataclass
class ExtractConfig:
    """What ``coat targets`` computes: the experts' targets of every example of ``data``, into the target caches."""

    data: DataConfig | None = field(default=None, metadata={
        "help": "the audio: a source, or synth (the synthetic benchmark, written to source.path when that .jsonl "
                "does not exist yet: the example config's own data)"})
    experts: list[ExpertConfig] = field(
        default_factory=list, metadata={"help": "experts to run: names, or {name, params} mappings"})
    targets: TargetsConfig = field(default_factory=TargetsConfig, metadata={
        "help": "where the caches go and how they are computed (the same section as coat train's)"})
    heads: HeadConfig = field(default_factory=HeadConfig, metadata={
        "help": "the heads the targets are for (coat train's heads section): frame-level targets keep at most "
                "heads.num_frames frames per clip (heads on relative time); only num_frames and max_duration matter "
                "here, and both go into the cache fingerprint"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def __post_init__(self):
        if self.data is None:
            raise ValueError("data is required, e.g. data: {source: {path: data/clips}}")
        self.experts = [ExpertConfig(name=e) if isinstance(e, str) else e for e in self.experts]
        if not self.experts:
            raise ValueError("experts must list at least one expert, e.g. experts: [pitch, reconstruction]")


def run_extraction(config: ExtractConfig) -> dict[str, CacheRun]:
    """Build the experts (after ``targets.imports``), open the data (the main process writes synthetic data
    first), and compute, resume or reuse every expert's cache. Returns expert name -> :class:`CacheRun`."""
    experts = load_experts(config.targets, config.experts)
    with process_state(config.targets.device).main_process_first():
        try:
            source = open_data(config.data, config.targets.cache_dir)
        except (CoatError, ValueError, FileNotFoundError) as err:
            raise ConfigError(str(err)) from err
    if len(source) == 0:
        raise ConfigError(f"data: {source.description} has no examples (no audio files or rows)")
    return compute_caches(config.targets, source, experts, config.heads, progress=config.progress)
