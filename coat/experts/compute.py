"""Computing the target cache (the writing side of coat/experts/cache.py, which documents the layout on disk).

:func:`compute_targets` runs in three steps, each readable on its own:

1. :func:`plan_caches`: the fingerprint and folder of each expert's cache; a finished cache whose every byte checks
   out is reused, the others list what their complete parts already hold;
2. :func:`extract_targets`: this process's shard of the examples (example ``i`` goes to process ``i %
   num_processes`` under ``accelerate launch``), decoded once and checked (bad audio is reported, never fatal),
   batched by length (sorted by duration, each batch filling a budget of padded audio seconds), run through every
   expert that still needs it, and written batch by batch as atomic parts;
3. :func:`merge_caches`: on the main process, each cache's parts into ``data/`` in source order, its report and
   ``cache.json``; then the counts of every process.

So extraction scales to several GPUs and nodes (the cache folder must be on a filesystem they share), and a run
killed at any point resumes without recomputing or duplicating anything.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coat.data.checks import AudioChecks, decode_and_check
from coat.data.sources import AudioSource, resample
from coat.experts.base import Expert
from coat.experts.cache import (
    CACHE_FORMAT,
    audio_fingerprint,
    cache_fingerprint,
    cache_path,
    cache_problem,
    expert_fingerprint,
    file_record,
    folder_records,
    records_problem,
)
from coat.experts.storage import TargetCodec, grid_key, stored_frames, to_stored_frames
from coat.files import write_atomic
from coat.targets import FrameGrid


@dataclass
class CacheRun:
    """What :func:`compute_targets` did for one expert (counts are over all processes, on the main process)."""

    expert: str
    path: Path
    fingerprint: str
    num_examples: int
    cached: int = 0
    computed: int = 0
    reused: bool = False
    bad: dict[str, int] = field(default_factory=dict)
    lossy: list[str] = field(default_factory=list)

    def summary(self) -> str:
        bad = sum(self.bad.values())
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(self.bad.items()))
        how = "reused, nothing computed" if self.reused else f"{self.computed} computed in this run"
        line = f"targets {self.expert}: {self.cached}/{self.num_examples} examples cached in {self.path} ({how})"
        if bad:
            line += f"; {bad} bad ({reasons}), see {self.path / 'report.jsonl'}"
        for note in self.lossy:
            line += f"\nwarning: {note}"
        return line


# a top-k target whose frames leave out more than this on average (probability mass, or a label's value) is not
# "a negligible tail": the run says so, with the setting that keeps more
TAIL_WARNING = 0.01


def lossy_targets(expert: str, summary: dict[str, dict[str, Any]]) -> list[str]:
    """Warnings for the top-k targets of a cache's storage summary whose tail is not negligible."""
    notes = []
    for name, figures in summary.items():
        if figures.get("form") == "top-k" and figures.get("mean_tail", 0.0) > TAIL_WARNING:
            notes.append(f"target {name!r} keeps the top {figures['top_k']} classes per frame and leaves out "
                         f"{figures['mean_tail']:.3f} per frame on average (at most {figures['max_tail']:.3f}); "
                         f"to keep more set experts[{expert}].storage.top_k higher, or null for every class")
    return notes


@dataclass
class _Pending:
    """A cache still to compute: its expert and folder, the ids its complete parts hold, what its ``cache.json``
    will record, and what was found damaged (a finished cache or parts whose bytes changed after writing);
    ``codecs``: how each cached target is stored, ``grid``: the heads' frames the cache is made for."""

    expert: Expert
    path: Path
    done: set[str]
    info: dict[str, Any]
    damaged: list[tuple[Path, str]]
    codecs: list[TargetCodec] = field(default_factory=list)
    grid: FrameGrid | None = None


# ---------------------------------------------------------------------------------------------------------
# batching


def length_batches(durations: Sequence[float], batch_seconds: float, max_batch_size: int = 64) -> list[list[int]]:
    """Indices into ``durations`` grouped into batches, shortest first.

    A batch is padded to its longest clip, so it costs ``len(batch) * longest`` seconds; clips are added in
    ascending order while that stays within ``batch_seconds`` (a clip longer than the budget is alone).
    """
    order = sorted(range(len(durations)), key=lambda i: (durations[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and ((len(current) + 1) * durations[i] > batch_seconds or len(current) >= max_batch_size):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def pad_batch(clips: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, max_samples) right-zero-padded float32 waveforms and (batch,) lengths."""
    lengths = torch.tensor([len(c) for c in clips], dtype=torch.long)
    waveforms = torch.zeros(len(clips), int(lengths.max()) if len(clips) else 0)
    for b, clip in enumerate(clips):
        waveforms[b, : len(clip)] = torch.from_numpy(clip)
    return waveforms, lengths


# ---------------------------------------------------------------------------------------------------------
# parts (one per batch, process and expert) and the merge


def _features(codecs: Sequence[TargetCodec]):
    import datasets

    cols = {"id": datasets.Value("string"), "num_samples": datasets.Value("int64")}
    for codec in codecs:
        cols.update(codec.features())
    return datasets.Features(cols)


def _part_problem(part: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(part.json, None) for a complete part, (whatever was read, why) for one that a kill or a hand damaged."""
    try:
        meta = json.loads((part / "part.json").read_text())
        if not isinstance(meta, dict) or not isinstance(meta.get("ids"), list):
            raise ValueError("not a part record")
    except (OSError, ValueError, UnicodeDecodeError) as err:
        return None, f"part.json unreadable ({err})"
    if not meta["ids"]:
        return meta, None
    if "files" in meta:
        return meta, records_problem(part, meta["files"], full=True)
    try:  # a part written before parts recorded checksums: it must at least read back whole
        import datasets

        rows = datasets.Dataset.from_file(str(part / "targets.arrow")).num_rows
    except Exception as err:  # noqa: BLE001 - any read failure means the part is damaged
        return meta, f"targets.arrow unreadable ({type(err).__name__})"
    return meta, None if rows == len(meta["ids"]) else f"targets.arrow holds {rows} rows, not {len(meta['ids'])}"


def _read_parts(path: Path, damaged: list | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """The complete parts of an unfinished cache; damaged ones go to ``damaged`` as (part, why) when given."""
    parts_dir = path / "parts"
    if not parts_dir.is_dir():
        return []
    out = []
    for part in sorted(parts_dir.iterdir()):
        if part.name.startswith(".") or not part.is_dir():
            continue
        meta, problem = _part_problem(part)
        if problem is None:
            out.append((part, meta))
        elif damaged is not None:
            damaged.append((part, problem))
    return out


def _write_part(path: Path, rank: int, codecs: Sequence[TargetCodec], rows: list[dict[str, Any]],
                bad: list[dict[str, str]], stats: dict[str, dict[str, float]]) -> None:
    """One batch's targets and bad examples, appearing atomically as ``parts/r<rank>-<uuid>``, with the size and
    checksum of its targets so that a damaged part is found and computed again, and what storing them lost."""
    from datasets.arrow_writer import ArrowWriter

    name = f"r{rank:03d}-{uuid.uuid4().hex[:12]}"
    tmp = path / "parts" / f".tmp-{name}"
    tmp.mkdir(parents=True)
    meta: dict[str, Any] = {"ids": [r["id"] for r in rows], "bad": bad, "rank": rank, "storage": stats}
    if rows:
        writer = ArrowWriter(features=_features(codecs), path=str(tmp / "targets.arrow"))
        writer.write_batch({key: [r[key] for r in rows] for key in rows[0]})
        writer.finalize()
        writer.close()
        meta["files"] = {"targets.arrow": file_record(tmp / "targets.arrow")}
    (tmp / "part.json").write_text(json.dumps(meta))
    os.replace(tmp, path / "parts" / name)


def _merge_stats(total: dict[str, dict[str, float]], part: dict[str, dict[str, float]]) -> None:
    """Add one part's storage figures (coat/experts/storage.py, ``TargetCodec.encode``) into ``total``."""
    for name, figures in part.items():
        into = total.setdefault(name, {})
        for key, value in figures.items():
            into[key] = max(into.get(key, 0.0), value) if key.startswith("max") else into.get(key, 0.0) + value


def storage_summary(codecs: Sequence[TargetCodec], stats: dict[str, dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Per cached target: its stored form and what storing it lost over the whole cache (``max_abs_error``;
    for top-k, ``max_tail`` and ``mean_tail``: the probability mass or the largest value left out per frame)."""
    out = {}
    for codec in codecs:
        figures = dict(stats.get(codec.spec.name, {}))
        frames = figures.pop("frames", 0)
        if "sum_tail" in figures:
            figures["mean_tail"] = figures.pop("sum_tail") / max(frames, 1)
        out[codec.spec.name] = {**codec.describe(), **figures, "frames": int(frames)}
    return out


def merge_cache(path: Path, source: AudioSource, expert: Expert, info: dict[str, Any],
                codecs: Sequence[TargetCodec]) -> CacheRun:
    """Concatenate all parts into ``data/`` (source order, each id once), write the report and cache.json."""
    import datasets

    order = {id_: i for i, id_ in enumerate(source.ids())}
    tables, bad, seen, by_rank, stats = [], {}, set(), Counter(), {}
    for part, meta in _read_parts(path):
        by_rank[f"process {meta['rank']}"] += len(meta["ids"]) + len(meta["bad"])
        for record in meta["bad"]:
            bad.setdefault(record["id"], record)
        _merge_stats(stats, meta.get("storage", {}))
        if meta["ids"]:
            tables.append(datasets.Dataset.from_file(str(part / "targets.arrow")))
    merged = datasets.concatenate_datasets(tables) if tables else datasets.Dataset.from_dict(
        {k: [] for k in _features(codecs)}, features=_features(codecs))
    keep = []
    ids_col = [str(i) for i in merged["id"]]
    for row, id_ in enumerate(ids_col):
        if id_ in order and id_ not in seen:  # a duplicate could only come from a crash mid-merge: keep one
            seen.add(id_)
            keep.append(row)
    keep.sort(key=lambda row: order[ids_col[row]])
    merged = merged.select(keep)
    bad = {k: v for k, v in bad.items() if k not in seen and k in order}
    missing = [id_ for id_ in order if id_ not in seen and id_ not in bad]
    if missing:
        raise RuntimeError(f"target cache {path}: {len(missing)} examples were not computed by any process "
                           f"(first: {missing[:5]}); run again to resume")
    tmp = path / f".tmp-data-{uuid.uuid4().hex[:8]}"
    bars_were_off = datasets.utils.are_progress_bars_disabled()
    datasets.utils.disable_progress_bars()  # our own summary line says what was saved
    try:
        merged.save_to_disk(str(tmp))
    finally:
        if not bars_were_off:
            datasets.utils.enable_progress_bars()
    del merged, tables
    data_files = folder_records(tmp)
    if (path / "data").exists():
        shutil.rmtree(path / "data")
    os.replace(tmp, path / "data")
    records = sorted(bad.values(), key=lambda r: order[r["id"]])
    write_atomic(path / "report.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    reasons = dict(Counter(r["reason"] for r in records))
    storage = storage_summary(codecs, stats)
    info = {**info, "num_examples": len(order), "num_cached": len(seen), "num_bad": len(records),
            "data_files": data_files, "storage": storage,
            "bad_reasons": reasons, "examples_by_process": dict(sorted(by_rank.items())),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_atomic(path / "cache.json", json.dumps(info, indent=2, default=str))
    shutil.rmtree(path / "parts", ignore_errors=True)
    return CacheRun(expert.name, path, info["fingerprint"], len(order), cached=len(seen), bad=reasons,
                    lossy=lossy_targets(expert.name, storage))


# ---------------------------------------------------------------------------------------------------------
# compute


def process_state(device: str | torch.device | None = None):
    """accelerate's ``PartialState`` of this process (rank, world size, device) for target extraction."""
    from accelerate import PartialState

    # PartialState only sets up multi-process CPU runs (gloo) when told it is on CPU
    on_cpu = (not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
              or (device is not None and torch.device(device).type == "cpu"))
    return PartialState(cpu=on_cpu)


def compute_targets(
    source: AudioSource,
    experts: Sequence[Expert],
    cache_dir: str | os.PathLike,
    device: str | torch.device | None = None,
    batch_seconds: float = 60.0,
    max_batch_size: int = 64,
    checks: AudioChecks | None = None,
    res_type: str = "soxr_hq",
    num_workers: int = 2,
    progress: bool = True,
    grid: FrameGrid | None = None,
) -> dict[str, CacheRun]:
    """Compute (or resume, or reuse) one target cache per expert for every example of ``source``.

    device: where the experts run; None: this process's ``accelerate`` device (``cuda:<local rank>``, or cpu).
    batch_seconds: budget of padded audio seconds per batch; max_batch_size caps the clips per batch.
    checks: bad-audio thresholds (:class:`AudioChecks`); bad examples are reported, not cached.
    res_type: librosa resampler. num_workers: threads decoding the next batch while the experts run.
    grid: the heads' frames the caches are made for (a :class:`coat.heads.HeadConfig`; its ``num_frames`` and
        ``max_duration``): frame-level targets keep no more frames than those heads read (coat/experts/storage.py);
        None keeps every expert frame.
    Only targets made offline (``computed_in="extraction"``) are cached; an expert with none has no cache.
    Returns expert name -> :class:`CacheRun` for the experts with a cache; the counts are complete on the main
    process.
    """
    if not experts:
        raise ValueError("compute_targets needs at least one expert")
    names = [e.name for e in experts]
    if len(set(names)) != len(names):
        raise ValueError(f"experts must have distinct names (one cache each), got {names}")
    checks = checks or AudioChecks()
    state = process_state(device)
    device = torch.device(device) if device is not None else state.device
    cached = [e for e in experts if e.cached_specs()]
    runs, pending = plan_caches(source, cached, cache_dir, checks, res_type, grid) if cached else ({}, [])
    if pending:
        _clean_up(pending, state)
        extract_targets(source, pending, runs, state, device, checks, res_type, batch_seconds, max_batch_size,
                        num_workers, progress)
        merge_caches(source, pending, runs, state)
    if state.is_main_process:
        for expert in experts:
            if expert.name in runs:
                print(runs[expert.name].summary())
            else:
                where = ", ".join(f"{s.name} in the {'data loader' if s.computed_in == 'loader' else 'forward'}"
                                  for s in expert.specs())
                print(f"targets {expert.name}: nothing to cache (made during training: {where})")
    return runs


def plan_caches(source: AudioSource, experts: Sequence[Expert], cache_dir: str | os.PathLike, checks: AudioChecks,
                res_type: str, grid: FrameGrid | None = None) -> tuple[dict[str, CacheRun], list[_Pending]]:
    """A :class:`CacheRun` per expert, and the caches still to compute. A finished cache is reused only when every
    byte of it checks out; a damaged one is listed as damaged and computed again."""
    audio_fp = audio_fingerprint(source)
    runs: dict[str, CacheRun] = {}
    pending: list[_Pending] = []
    for expert in experts:
        fp = cache_fingerprint(expert, audio_fp, checks, res_type, grid)
        path = cache_path(cache_dir, expert, fp)
        run = CacheRun(expert.name, path, fp, len(source))
        runs[expert.name] = run
        damaged: list[tuple[Path, str]] = []
        if (path / "cache.json").is_file():
            problem = cache_problem(path, full=True)  # reusing means trusting every byte: check them all
            if problem is None:
                info = json.loads((path / "cache.json").read_text())
                run.reused, run.cached, run.bad = True, info["num_cached"], info.get("bad_reasons", {})
                continue
            damaged.append((path / "cache.json", problem))
        (path / "parts").mkdir(parents=True, exist_ok=True)
        parts = _read_parts(path, damaged)
        done = {id_ for _, meta in parts for id_ in meta["ids"] + [b["id"] for b in meta["bad"]]}
        specs = expert.cached_specs()
        info = {"format": CACHE_FORMAT, "fingerprint": fp, "expert": expert.name,
                "expert_fingerprint": expert_fingerprint(expert), "expert_params": expert.fingerprint_params(),
                "specs": [s.to_dict() for s in specs], "storage_config": expert.storage.to_dict(),
                "grid": grid_key(specs, expert.storage, grid), "audio_fingerprint": audio_fp,
                "audio_key": source.audio_key_kind, "source": source.description, "checks": asdict(checks),
                "resample": res_type}
        codecs = [TargetCodec(spec, expert.storage) for spec in specs]
        pending.append(_Pending(expert, path, done, info, damaged, codecs, grid))
    return runs, pending


def _clean_up(pending: list[_Pending], state) -> None:
    """Remove what a kill mid-write left (half-written parts, a half-saved merge) and what was damaged after it
    was written, saying so; every process has read the parts before, and waits for this after."""
    state.wait_for_everyone()
    if state.is_main_process:
        for cache in pending:
            for tmp in [*(cache.path / "parts").glob(".tmp-*"), *cache.path.glob(".tmp-data-*")]:
                shutil.rmtree(tmp, ignore_errors=True)
            for where, problem in cache.damaged:
                if where.name == "cache.json":
                    print(f"targets {cache.expert.name}: the cache in {cache.path} is damaged ({problem}); computing "
                          "it again")
                    for name in ("cache.json", "report.jsonl"):
                        (cache.path / name).unlink(missing_ok=True)
                    shutil.rmtree(cache.path / "data", ignore_errors=True)
                else:
                    print(f"targets {cache.expert.name}: part {where.name} in {cache.path} is damaged ({problem}); "
                          "computing its examples again")
                    shutil.rmtree(where, ignore_errors=True)
    state.wait_for_everyone()


def extract_targets(source: AudioSource, pending: list[_Pending], runs: dict[str, CacheRun], state, device,
                    checks: AudioChecks, res_type: str, batch_seconds: float, max_batch_size: int, num_workers: int,
                    progress: bool) -> None:
    """This process's shard of the examples that some cache still lacks, in batches by length: decoded and checked
    once (the next batch decodes in threads while the experts run), then each expert that needs them; every
    batch becomes a part of each cache."""
    from coat.progress import progress_bar

    ids, rank, world = source.ids(), state.process_index, state.num_processes
    mine = [i for i in range(len(ids)) if i % world == rank]
    todo = [i for i in mine if any(ids[i] not in cache.done for cache in pending)]
    durations = [source.duration(i) for i in todo]
    durations = [d if d is not None else 0.0 for d in durations]  # unknown: read it to know; sort first
    batches = [[todo[j] for j in b] for b in length_batches(durations, batch_seconds, max_batch_size)]
    for cache in pending:
        cache.expert.to(device)
    bar = progress_bar(total=len(todo), unit="clip", desc=f"targets ({', '.join(c.expert.name for c in pending)})",
                       enabled=progress and state.is_local_main_process)
    seconds_done = 0.0
    with ThreadPoolExecutor(max(1, num_workers)) as pool:

        def submit(batch: list[int]) -> list[Future]:
            return [pool.submit(decode_and_check, source, i, checks) for i in batch]

        next_futures = submit(batches[0]) if batches else []
        for k, batch in enumerate(batches):
            decoded = [f.result() for f in next_futures]
            next_futures = submit(batches[k + 1]) if k + 1 < len(batches) else []
            for cache in pending:
                need = [j for j, i in enumerate(batch) if ids[i] not in cache.done]
                if not need:
                    continue
                rows, bad, stats = _run_expert(cache, [batch[j] for j in need], [decoded[j] for j in need], ids,
                                               res_type)
                _write_part(cache.path, rank, cache.codecs, rows, bad, stats)
                runs[cache.expert.name].computed += len(rows)
            seconds_done += sum(len(a) / sr for a, sr, _ in decoded if a is not None and sr)
            bar.update(len(batch))
            bar.set_postfix(audio_s=f"{seconds_done:.0f}")
    bar.close()


def merge_caches(source: AudioSource, pending: list[_Pending], runs: dict[str, CacheRun], state) -> None:
    """Once every process is done: the main process merges each cache (:func:`merge_cache`); every process's
    computed count is summed into ``runs``."""
    state.wait_for_everyone()
    if state.is_main_process:
        for cache in pending:
            merged = merge_cache(cache.path, source, cache.expert, cache.info, cache.codecs)
            run = runs[cache.expert.name]
            run.cached, run.bad, run.lossy = merged.cached, merged.bad, merged.lossy
    # the counts of the other processes' work: every process computed its share, the main one reports all
    computed = torch.tensor([runs[c.expert.name].computed for c in pending], dtype=torch.long)
    if state.num_processes > 1:
        from accelerate.utils import reduce

        computed = reduce(computed.to(state.device), reduction="sum").cpu()
    for cache, n in zip(pending, computed.tolist()):
        runs[cache.expert.name].computed = int(n)
    state.wait_for_everyone()


def _run_expert(cache: _Pending, indices: list[int], decoded: list[tuple], ids: list[str], res_type: str):
    """Rows (id, num_samples, stored targets) for the good examples of one batch, the bad-example records, and what
    storing the targets lost (per target, for ``cache.json``)."""
    expert = cache.expert
    bad, good, clips = [], [], []
    for i, (audio, sr, problem) in zip(indices, decoded):
        if problem is not None:
            bad.append({"id": ids[i], "reason": problem[0], "detail": problem[1]})
            continue
        good.append(i)
        clips.append(resample(audio, sr, expert.sample_rate, res_type))
    rows: list[dict[str, Any]] = []
    stats: dict[str, dict[str, float]] = {}
    if not clips:
        return rows, bad, stats
    waveforms, lengths = pad_batch(clips)
    try:
        out = expert(waveforms, lengths)
    except Exception as err:
        raise RuntimeError(f"expert {expert.name!r} failed on a batch of {len(clips)} clips "
                           f"(ids {[ids[i] for i in good][:5]}...): {err}") from err
    for i, clip, targets in zip(good, clips, out):
        arrays = {}
        for codec in cache.codecs:
            spec = codec.spec
            if spec.name not in targets:
                raise RuntimeError(f"expert {expert.name!r} returned no target {spec.name!r}")
            t = np.asarray(targets[spec.name], dtype=np.float32)
            expected = (spec.num_frames(len(clip)), spec.width)
            if t.shape != expected:
                raise RuntimeError(f"expert {expert.name!r}, target {spec.name!r}, example {ids[i]!r}: shape "
                                   f"{t.shape}, expected (frames, {'1: peak positions' if spec.peak_std else 'dim'})"
                                   f" = {expected}")
            arrays[spec.name] = t
        if not all(np.isfinite(t).all() for t in arrays.values()):
            bad.append({"id": ids[i], "reason": "nonfinite_target", "detail": f"expert {expert.name} gave NaN/inf"})
            continue
        row: dict[str, Any] = {"id": ids[i], "num_samples": len(clip)}
        for codec in cache.codecs:
            kept = to_stored_frames(arrays[codec.spec.name],
                                    stored_frames(codec.spec, expert.storage, cache.grid, len(clip)))
            try:
                columns, figures = codec.encode(kept)
            except ValueError as err:
                raise RuntimeError(f"expert {expert.name!r}, example {ids[i]!r}: {err}") from None
            row.update(columns)
            _merge_stats(stats, {codec.spec.name: figures})
        rows.append(row)
    return rows, bad, stats
