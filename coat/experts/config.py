"""The ``targets:`` section, shared by ``coat targets`` and ``coat train`` (and ``coat analyze``'s cache probes).

One :class:`TargetsConfig` says where the expert target caches are, which modules register custom experts, which
audio counts as bad, and how targets are computed. Both commands build their experts with :func:`load_experts`
(``imports`` first, so a custom expert works from either) and compute with the same settings, so they compute
and open the same cache folder: its fingerprint covers the expert, the audio, ``checks`` and ``resample``
(coat/experts/cache.py), and :func:`target_caches` opens exactly the folder :func:`compute_caches` writes.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from coat.config_io import ConfigError
from coat.data.checks import AudioChecks
from coat.data.sources import AudioSource
from coat.errors import SourceNotFoundError
from coat.experts.base import Expert, ExpertConfig, build_experts
from coat.experts.cache import (
    CACHE_FORMAT,
    OldCacheFormatError,
    TargetCache,
    audio_fingerprint,
    cache_fingerprint,
    cache_format,
    cache_path,
)
from coat.experts.compute import CacheRun, compute_targets
from coat.targets import FrameGrid


@dataclass
class TargetsConfig:
    """Where the expert target caches are and how they are computed (the same in every command)."""

    cache_dir: str = field(default="runs/targets", metadata={
        "help": "root of the target caches (one folder per expert and fingerprint; synthetic data goes here too)"})
    compute: bool = field(default=False, metadata={
        "help": "coat train: compute the caches it lacks before training (resumable); coat targets always does"})
    imports: list[str] = field(default_factory=list, metadata={
        "help": "modules to import first: they may register_expert their own experts (examples/custom_expert.py)"})
    checks: AudioChecks = field(default_factory=AudioChecks, metadata={
        "help": "what counts as bad audio: reported (report.jsonl; coat train also <output_dir>/bad_audio.jsonl) and "
                "left out"})
    resample: str = field(default="soxr_hq", metadata={
        "help": "librosa resampler (res_type) to each expert's rate; part of the cache fingerprint"})
    device: str | None = field(default=None, metadata={
        "help": "where experts run: cpu, cuda, cuda:1...; null: accelerate's device for this process"})
    batch_seconds: float = field(default=60.0, metadata={
        "help": "padded audio seconds per batch (clips sorted by duration)"})
    max_batch_size: int = field(default=64, metadata={"help": "most clips per batch"})
    num_workers: int = field(default=2, metadata={"help": "threads decoding audio ahead of the experts"})

    def __post_init__(self):
        if self.batch_seconds <= 0 or self.max_batch_size < 1:
            raise ValueError("targets.batch_seconds must be > 0 and targets.max_batch_size >= 1")


def load_experts(targets: TargetsConfig, experts: Sequence[ExpertConfig | str]) -> list[Expert]:
    """Import ``targets.imports`` (where custom experts register themselves), then build every configured expert;
    a module that does not import or an unknown expert is a :class:`~coat.config_io.ConfigError`."""
    for module in targets.imports:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"targets.imports: cannot import {module!r}: {err}") from err
    try:
        return build_experts(list(experts))
    except ValueError as err:
        raise ConfigError(str(err)) from err


def compute_caches(targets: TargetsConfig, source: AudioSource, experts: Sequence[Expert], grid: FrameGrid | None,
                   progress: bool = True) -> dict[str, CacheRun]:
    """:func:`~coat.experts.compute.compute_targets` with the section's settings: computes, resumes or reuses.
    ``grid``: the heads the caches are for (``heads:`` section; coat/experts/storage.py)."""
    return compute_targets(source, experts, targets.cache_dir, device=targets.device,
                           batch_seconds=targets.batch_seconds, max_batch_size=targets.max_batch_size,
                           checks=targets.checks, res_type=targets.resample, num_workers=targets.num_workers,
                           progress=progress, grid=grid)


def target_caches(targets: TargetsConfig, source: AudioSource, experts: Sequence[Expert],
                  grid: FrameGrid | None) -> list[TargetCache]:
    """The target cache of every expert with targets made offline, for exactly this audio, these settings and the
    heads' frame ``grid`` (computed first when ``targets.compute``); a missing, damaged or old-format one is an
    error that says how to get it. Experts whose targets are all made during training have no cache."""
    experts = [e for e in experts if e.cached_specs()]
    if targets.compute and experts:
        compute_caches(targets, source, experts, grid)
    audio_fp = audio_fingerprint(source) if experts else None  # once, not once per expert
    # just computed or checked byte for byte when targets.compute is set; else checked in full here, once per run
    verify = "size" if targets.compute else "full"
    caches = []
    for expert in experts:
        path = cache_path(targets.cache_dir, expert,
                          cache_fingerprint(expert, audio_fp, targets.checks, targets.resample, grid))
        try:
            if not path.is_dir():
                _refuse_old_caches(targets.cache_dir, expert, audio_fp)
                raise FileNotFoundError(f"none at {path}")
            caches.append(TargetCache(path, verify))
        except (FileNotFoundError, ValueError) as err:
            advice = "" if targets.compute else (". Run `coat targets` with the same data, experts, targets and "
                                                 "heads sections first (the heads' num_frames decides the frames a "
                                                 "cache keeps), or set targets.compute=true")
            raise SourceNotFoundError(
                f"no target cache of expert {expert.name!r} for this data under {targets.cache_dir!r} ({err})"
                f"{advice}") from err
    return caches


def _refuse_old_caches(cache_dir: str, expert: Expert, audio_fp: str) -> None:
    """Raise :class:`OldCacheFormatError` when the only caches of ``expert`` for this audio are of an older format:
    the user has targets, but in a form this coat cannot read, and is told how to recompute them."""
    for path in sorted(Path(cache_dir).glob(f"{expert.name}-*")):
        found = cache_format(path)
        if found is not None and found != CACHE_FORMAT:
            info = json.loads((path / "cache.json").read_text())
            if info.get("audio_fingerprint") == audio_fp:
                raise OldCacheFormatError(path, found)
