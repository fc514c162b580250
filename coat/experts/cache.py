"""The target cache: expert targets computed once, batched, resumable, fingerprinted, in Arrow; read by training.

Writing side, :func:`compute_targets`: decode each example once, check it (bad audio is reported, never fatal),
resample it to each expert's rate, batch by length (sorted by duration, each batch fills a budget of padded
audio seconds) and run the experts on the chosen device. Under ``accelerate launch`` every process takes one
shard of the examples (example ``i`` goes to process ``i % num_processes``); the main process merges once all are
done, so extraction scales to several GPUs and nodes (the cache folder must be on a filesystem they share).

Reading side, :class:`TargetCache`: ``TargetCache.open(dir, expert=...)`` -> ``specs``, ``ids()``, ``id in cache``,
``cache[id] -> {target name: (frames, dim) float32}``; a missing id raises :class:`MissingTargetsError` (a
``KeyError``) naming the ids and, where known, why they are missing (the bad-audio report).

Fingerprint (one cache folder per expert and fingerprint): a hash of the cache format version, the expert's
``fingerprint_params()`` (expert, class, sample rate, checkpoint and parameters, target specs), the audio checks,
the resampler, and the audio: every example id with its source's ``audio_key``. That key is a content hash of
the audio (blake2b of the samples or encoded bytes) for datasets and in-memory examples, and the file's path,
size and mtime for audio folders and JSONL manifests (hashing every file up front would mean reading the whole
corpus before starting). A changed parameter or changed audio gives a new folder; the same inputs reuse the old
one without computing anything.

On-disk layout::

    <cache_dir>/<expert>-<fingerprint[:16]>/
        cache.json          written last, atomically: a folder without it is unfinished. Holds the full
                            fingerprint, the expert's fingerprint params, the target specs, the source
                            description, counts, bad-audio reasons and ``data_files``: the size and xxh3-128
                            checksum of every file of ``data/``.
        data/               the merged targets, a ``datasets`` dataset (``save_to_disk``) in source order:
                            ``id`` (string), ``num_samples`` (int64, at the expert's rate), and per target a
                            column ``Array2D(shape=(None, dim), float32)``: (frames, dim); clip-level targets have
                            one frame.
        report.jsonl        one line per bad example: {"id", "reason", "detail"}; reasons: unreadable, empty,
                            nonfinite, silent, too_short, too_long, nonfinite_target.
        parts/              only while unfinished: one folder per batch and process, ``r<rank>-<uuid>/`` with
                            ``targets.arrow`` (Arrow stream file, the columns above) and ``part.json`` (the ids it
                            holds, the bad examples of that batch, and the size and checksum of its targets).
                            Parts are built under ``parts/.tmp-*`` and appear by ``os.replace``, so a part is
                            either complete or absent.

Resuming: a run reads the ids of all parts present and computes only the rest, so killing it at any point
(``kill -9`` included) loses at most the batches in flight and never duplicates an example. The merge writes
``data/`` under a temporary name, replaces it, then writes ``cache.json``, then removes ``parts/``; a kill in
between is repaired by the next run. Writes are atomic against process death, not against power loss (no fsync).

Checking itself: what is on disk is compared with what was written. A run verifies every part it resumes from
(size and checksum) and every finished cache it would reuse (every file of ``data/``, size and checksum); a
damaged part is removed and its examples computed again, a damaged cache is computed again, and the run says so.
:class:`TargetCache` checks the recorded files and sizes whenever it opens a cache (``verify="full"``: the
checksums too) and raises :class:`DamagedCacheError` naming what is wrong; a row with NaN/inf targets (never
cached by extraction) is the same error. A source with no examples, or with only bad audio, gives a valid empty
cache.
"""

from __future__ import annotations

import hashlib
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

from coat.data.sources import AudioDecodeError, AudioSource, resample
from coat.experts.base import Expert, TargetSpec
from coat.files import write_atomic

CACHE_FORMAT = 1
BAD_REASONS = ("unreadable", "empty", "nonfinite", "silent", "too_short", "too_long", "nonfinite_target")


@dataclass
class AudioChecks:
    """Which examples count as bad audio: reported in ``report.jsonl`` and left out of the cache."""

    min_seconds: float = field(default=0.05, metadata={"help": "shorter clips are bad (too_short)"})
    max_seconds: float | None = field(default=None, metadata={"help": "longer clips are bad (too_long); null: any"})
    silence_db: float | None = field(
        default=-80.0, metadata={"help": "clips whose peak is below this level in dBFS are bad (silent); null: keep"}
    )

    def __post_init__(self):
        if self.min_seconds < 0:
            raise ValueError(f"checks.min_seconds must be >= 0, got {self.min_seconds}")
        if self.max_seconds is not None and self.max_seconds <= self.min_seconds:
            raise ValueError("checks.max_seconds must be > checks.min_seconds")

    def problem(self, audio: np.ndarray, sr: int) -> tuple[str, str] | None:
        """(reason, detail) if ``audio`` ((samples,) at ``sr``) is bad, else None."""
        if audio.size == 0:
            return "empty", "no samples"
        if not np.isfinite(audio).all():
            return "nonfinite", f"{int((~np.isfinite(audio)).sum())} NaN/inf samples"
        seconds = audio.size / sr
        if seconds < self.min_seconds:
            return "too_short", f"{seconds:.3f} s < min_seconds {self.min_seconds}"
        if self.max_seconds is not None and seconds > self.max_seconds:
            return "too_long", f"{seconds:.3f} s > max_seconds {self.max_seconds}"
        if self.silence_db is not None:
            peak = float(np.abs(audio).max())
            peak_db = 20 * np.log10(peak) if peak > 0 else -np.inf
            if peak_db < self.silence_db:
                return "silent", f"peak {peak_db:.1f} dBFS < silence_db {self.silence_db}"
        return None


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

    def summary(self) -> str:
        bad = sum(self.bad.values())
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(self.bad.items()))
        how = "reused, nothing computed" if self.reused else f"{self.computed} computed in this run"
        line = f"targets {self.expert}: {self.cached}/{self.num_examples} examples cached in {self.path} ({how})"
        if bad:
            line += f"; {bad} bad ({reasons}), see {self.path / 'report.jsonl'}"
        return line


_RECOMPUTE = "run `coat targets` again (or train with targets.compute=true): it computes damaged caches again"


class DamagedCacheError(ValueError):
    """A target cache whose files no longer match what was written (truncated, deleted, overwritten)."""


class MissingTargetsError(KeyError):
    """Example ids that a target cache does not hold."""

    def __init__(self, message: str, ids: Sequence[str]):
        super().__init__(message)
        self.message, self.ids = message, list(ids)

    def __str__(self) -> str:
        return self.message


# ---------------------------------------------------------------------------------------------------------
# fingerprints


def _hash(obj: Any) -> str:
    return hashlib.blake2b(json.dumps(obj, sort_keys=True, default=str).encode(), digest_size=20).hexdigest()


def audio_fingerprint(source: AudioSource) -> str:
    """Hash of every (id, audio_key) of ``source`` (see the module docstring for what a key covers)."""
    h = hashlib.blake2b(digest_size=20)
    h.update(source.audio_key_kind.encode())
    for i, id_ in enumerate(source.ids()):
        h.update(json.dumps([id_, source.audio_key(i)]).encode())
    return h.hexdigest()


def expert_fingerprint(expert: Expert) -> str:
    return _hash(expert.fingerprint_params())


def cache_fingerprint(expert: Expert, audio_fp: str, checks: AudioChecks, res_type: str) -> str:
    return _hash({"format": CACHE_FORMAT, "expert": expert.fingerprint_params(), "audio": audio_fp,
                  "checks": asdict(checks), "resample": res_type})


def cache_path(cache_dir: str | os.PathLike, expert: Expert, fingerprint: str) -> Path:
    return Path(cache_dir) / f"{expert.name}-{fingerprint[:16]}"


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


def _features(specs: Sequence[TargetSpec]):
    import datasets

    cols = {"id": datasets.Value("string"), "num_samples": datasets.Value("int64")}
    for spec in specs:
        cols[spec.name] = datasets.Array2D(shape=(None, spec.dim), dtype="float32")
    return datasets.Features(cols)


def _file_record(file: Path) -> dict[str, Any]:
    """Size and xxh3-128 checksum of ``file`` (several GB/s: verifying a cache costs little next to computing it)."""
    import xxhash

    h = xxhash.xxh3_128()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return {"size": file.stat().st_size, "xxh3": h.hexdigest()}


def _folder_records(folder: Path) -> dict[str, dict[str, Any]]:
    return {p.relative_to(folder).as_posix(): _file_record(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def _records_problem(folder: Path, records: dict[str, dict[str, Any]], full: bool) -> str | None:
    """Why the files under ``folder`` do not match ``records`` (missing, other size, other checksum), or None.
    ``full=False`` compares sizes only."""
    for name, record in records.items():
        file = folder / name
        if not file.is_file():
            return f"{folder.name}/{name} is missing"
        if file.stat().st_size != record["size"]:
            return f"{folder.name}/{name} has {file.stat().st_size} bytes, {record['size']} were written"
        if full and _file_record(file)["xxh3"] != record["xxh3"]:
            return f"{folder.name}/{name} does not match its checksum (its bytes changed after it was written)"
    return None


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
        return meta, _records_problem(part, meta["files"], full=True)
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


def _write_part(path: Path, rank: int, specs: Sequence[TargetSpec], rows: list[dict[str, Any]],
                bad: list[dict[str, str]]) -> None:
    """One batch's targets and bad examples, appearing atomically as ``parts/r<rank>-<uuid>``, with the size and
    checksum of its targets so that a damaged part is found and computed again."""
    from datasets.arrow_writer import ArrowWriter

    name = f"r{rank:03d}-{uuid.uuid4().hex[:12]}"
    tmp = path / "parts" / f".tmp-{name}"
    tmp.mkdir(parents=True)
    meta: dict[str, Any] = {"ids": [r["id"] for r in rows], "bad": bad, "rank": rank}
    if rows:
        writer = ArrowWriter(features=_features(specs), path=str(tmp / "targets.arrow"))
        writer.write_batch({key: [r[key] for r in rows] for key in rows[0]})
        writer.finalize()
        writer.close()
        meta["files"] = {"targets.arrow": _file_record(tmp / "targets.arrow")}
    (tmp / "part.json").write_text(json.dumps(meta))
    os.replace(tmp, path / "parts" / name)


def cache_problem(path: Path, info: dict[str, Any] | None = None, full: bool = False) -> str | None:
    """Why the finished cache at ``path`` cannot be trusted, or None. Cheap: the files of ``data/`` that
    ``cache.json`` records are all there with their sizes; ``full``: their checksums match too. A cache written
    before checksums were recorded is checked by reading ``data/`` back and counting its rows."""
    if info is None:
        try:
            info = json.loads((path / "cache.json").read_text())
        except (OSError, ValueError, UnicodeDecodeError) as err:
            return f"cache.json unreadable ({err})"
    if not (path / "data").is_dir():
        return "data/ is missing"
    if "data_files" in info:
        return _records_problem(path / "data", info["data_files"], full)
    if info.get("num_cached"):
        try:
            import datasets

            rows = datasets.load_from_disk(str(path / "data")).num_rows
        except Exception as err:  # noqa: BLE001 - any read failure means the data is damaged
            return f"data/ unreadable ({type(err).__name__}: {err})"
        if rows != info["num_cached"]:
            return f"data/ holds {rows} rows, cache.json says {info['num_cached']}"
    return None


def _merge(path: Path, source: AudioSource, expert: Expert, info: dict[str, Any]) -> CacheRun:
    """Concatenate all parts into ``data/`` (source order, each id once), write the report and cache.json."""
    import datasets

    order = {id_: i for i, id_ in enumerate(source.ids())}
    tables, bad, seen, by_rank = [], {}, set(), Counter()
    for part, meta in _read_parts(path):
        by_rank[f"process {meta['rank']}"] += len(meta["ids"]) + len(meta["bad"])
        for record in meta["bad"]:
            bad.setdefault(record["id"], record)
        if meta["ids"]:
            tables.append(datasets.Dataset.from_file(str(part / "targets.arrow")))
    merged = datasets.concatenate_datasets(tables) if tables else datasets.Dataset.from_dict(
        {k: [] for k in _features(expert.specs())}, features=_features(expert.specs()))
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
    data_files = _folder_records(tmp)
    if (path / "data").exists():
        shutil.rmtree(path / "data")
    os.replace(tmp, path / "data")
    records = sorted(bad.values(), key=lambda r: order[r["id"]])
    write_atomic(path / "report.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    reasons = dict(Counter(r["reason"] for r in records))
    info = {**info, "num_examples": len(order), "num_cached": len(seen), "num_bad": len(records),
            "data_files": data_files,
            "bad_reasons": reasons, "examples_by_process": dict(sorted(by_rank.items())),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_atomic(path / "cache.json", json.dumps(info, indent=2, default=str))
    shutil.rmtree(path / "parts", ignore_errors=True)
    return CacheRun(expert.name, path, info["fingerprint"], len(order), cached=len(seen), bad=reasons)


# ---------------------------------------------------------------------------------------------------------
# compute


def decode_and_check(source: AudioSource, i: int,
                     checks: AudioChecks) -> tuple[np.ndarray | None, int, tuple[str, str] | None]:
    """Example ``i`` of ``source`` decoded at its own rate and checked: ``(audio, rate, problem)``, problem being
    ``(reason, detail)`` for bad audio (unreadable included) or None. Never raises for a broken example."""
    try:
        audio, sr = source.read(i)
    except AudioDecodeError as err:
        return None, 0, ("unreadable", str(err))
    except Exception as err:  # noqa: BLE001 - a broken example must not stop the run
        return None, 0, ("unreadable", f"{type(err).__name__}: {err}")
    return audio, sr, checks.problem(audio, sr)


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
) -> dict[str, CacheRun]:
    """Compute (or resume, or reuse) one target cache per expert for every example of ``source``.

    device: where the experts run; None: this process's ``accelerate`` device (``cuda:<local rank>``, or cpu).
    batch_seconds: budget of padded audio seconds per batch; max_batch_size caps the clips per batch.
    checks: bad-audio thresholds (:class:`AudioChecks`); bad examples are reported, not cached.
    res_type: librosa resampler. num_workers: threads decoding the next batch while the experts run.
    Returns expert name -> :class:`CacheRun`; the counts are complete on the main process.
    """
    from coat.progress import progress_bar

    if not experts:
        raise ValueError("compute_targets needs at least one expert")
    names = [e.name for e in experts]
    if len(set(names)) != len(names):
        raise ValueError(f"experts must have distinct names (one cache each), got {names}")
    checks = checks or AudioChecks()
    state = process_state(device)
    rank, world = state.process_index, state.num_processes
    device = torch.device(device) if device is not None else state.device
    ids = source.ids()

    audio_fp = audio_fingerprint(source)
    runs: dict[str, CacheRun] = {}
    pending: list[tuple[Expert, Path, set[str], dict[str, Any]]] = []  # (expert, path, done ids, info)
    repairs: list[tuple[Expert, Path, list[tuple[Path, str]]]] = []  # damaged finished caches and parts
    for expert in experts:
        fp = cache_fingerprint(expert, audio_fp, checks, res_type)
        path = cache_path(cache_dir, expert, fp)
        run = CacheRun(expert.name, path, fp, len(ids))
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
        repairs.append((expert, path, damaged))
        info = {"format": CACHE_FORMAT, "fingerprint": fp, "expert": expert.name,
                "expert_fingerprint": expert_fingerprint(expert), "expert_params": expert.fingerprint_params(),
                "specs": [s.to_dict() for s in expert.specs()], "audio_fingerprint": audio_fp,
                "audio_key": source.audio_key_kind, "source": source.description, "checks": asdict(checks),
                "resample": res_type}
        pending.append((expert, path, done, info))
    if not pending:
        if state.is_main_process:
            for run in runs.values():
                print(run.summary())
        return runs

    state.wait_for_everyone()  # every process has read the parts before stale temp folders go
    if state.is_main_process:  # what a kill mid-write left: half-written parts, a half-saved merge
        for _, path, _, _ in pending:
            for tmp in [*(path / "parts").glob(".tmp-*"), *path.glob(".tmp-data-*")]:
                shutil.rmtree(tmp, ignore_errors=True)
        for expert, path, damaged in repairs:  # what was damaged after it was written: say so, compute it again
            for where, problem in damaged:
                if where.name == "cache.json":
                    print(f"targets {expert.name}: the cache in {path} is damaged ({problem}); computing it again")
                    for name in ("cache.json", "report.jsonl"):
                        (path / name).unlink(missing_ok=True)
                    shutil.rmtree(path / "data", ignore_errors=True)
                else:
                    print(f"targets {expert.name}: part {where.name} in {path} is damaged ({problem}); computing "
                          "its examples again")
                    shutil.rmtree(where, ignore_errors=True)
    state.wait_for_everyone()

    mine = [i for i in range(len(ids)) if i % world == rank]
    todo = [i for i in mine if any(ids[i] not in done for _, _, done, _ in pending)]
    durations = [source.duration(i) for i in todo]
    durations = [d if d is not None else 0.0 for d in durations]  # unknown: read it to know; sort first
    batches = [[todo[j] for j in b] for b in length_batches(durations, batch_seconds, max_batch_size)]
    for expert, _, _, _ in pending:
        expert.to(device)

    bar = progress_bar(total=len(todo), unit="clip", desc=f"targets ({', '.join(e.name for e, *_ in pending)})",
                       enabled=progress and state.is_local_main_process)
    seconds_done = 0.0
    with ThreadPoolExecutor(max(1, num_workers)) as pool:

        def submit(batch: list[int]) -> list[Future]:
            return [pool.submit(decode_and_check, source, i, checks) for i in batch]

        next_futures = submit(batches[0]) if batches else []
        for k, batch in enumerate(batches):
            decoded = [f.result() for f in next_futures]
            next_futures = submit(batches[k + 1]) if k + 1 < len(batches) else []
            for expert, path, done, _ in pending:
                need = [j for j, i in enumerate(batch) if ids[i] not in done]
                if not need:
                    continue
                rows, bad = _run_expert(expert, [batch[j] for j in need], [decoded[j] for j in need], ids, res_type)
                _write_part(path, rank, expert.specs(), rows, bad)
                runs[expert.name].computed += len(rows)
            seconds_done += sum(len(a) / sr for a, sr, _ in decoded if a is not None and sr)
            bar.update(len(batch))
            bar.set_postfix(audio_s=f"{seconds_done:.0f}")
    bar.close()

    state.wait_for_everyone()
    if state.is_main_process:
        for expert, path, _, info in pending:
            merged = _merge(path, source, expert, info)
            run = runs[expert.name]
            run.cached, run.bad = merged.cached, merged.bad
    # the counts of the other processes' work: every process computed its share, the main one reports all
    computed = torch.tensor([runs[e.name].computed for e, *_ in pending], dtype=torch.long)
    if world > 1:
        from accelerate.utils import reduce

        computed = reduce(computed.to(state.device), reduction="sum").cpu()
    for (expert, *_), n in zip(pending, computed.tolist()):
        runs[expert.name].computed = int(n)
    state.wait_for_everyone()
    if state.is_main_process:
        for run in runs.values():
            print(run.summary())
    return runs


def _run_expert(expert: Expert, indices: list[int], decoded: list[tuple], ids: list[str], res_type: str):
    """Rows (id, num_samples, targets) for the good examples of one batch and the bad-example records."""
    bad, good, clips = [], [], []
    for i, (audio, sr, problem) in zip(indices, decoded):
        if problem is not None:
            bad.append({"id": ids[i], "reason": problem[0], "detail": problem[1]})
            continue
        good.append(i)
        clips.append(resample(audio, sr, expert.sample_rate, res_type))
    rows = []
    if not clips:
        return rows, bad
    waveforms, lengths = pad_batch(clips)
    try:
        out = expert(waveforms, lengths)
    except Exception as err:
        raise RuntimeError(f"expert {expert.name!r} failed on a batch of {len(clips)} clips "
                           f"(ids {[ids[i] for i in good][:5]}...): {err}") from err
    specs = expert.specs()
    for i, clip, targets in zip(good, clips, out):
        row: dict[str, Any] = {"id": ids[i], "num_samples": len(clip)}
        for spec in specs:
            if spec.name not in targets:
                raise RuntimeError(f"expert {expert.name!r} returned no target {spec.name!r}")
            t = np.asarray(targets[spec.name], dtype=np.float32)
            expected = (spec.num_frames(len(clip)), spec.dim)
            if t.shape != expected:
                raise RuntimeError(f"expert {expert.name!r}, target {spec.name!r}, example {ids[i]!r}: shape "
                                   f"{t.shape}, expected (frames, dim) = {expected}")
            row[spec.name] = t
        if not all(np.isfinite(row[s.name]).all() for s in specs):
            bad.append({"id": ids[i], "reason": "nonfinite_target", "detail": f"expert {expert.name} gave NaN/inf"})
            continue
        rows.append(row)
    return rows, bad


# ---------------------------------------------------------------------------------------------------------
# reading


class TargetCache:
    """A finished target cache of one expert. ``cache[id]`` -> {target name: (frames, dim) float32 array}."""

    def __init__(self, path: str | os.PathLike, verify: str = "size"):
        """``verify``: ``"size"`` checks that the files ``cache.json`` records are there with their sizes (cheap,
        always); ``"full"`` also compares their checksums. A damaged cache raises :class:`DamagedCacheError`."""
        import datasets

        self.path = Path(path)
        info_file = self.path / "cache.json"
        if not info_file.is_file():
            hint = " (unfinished: run `coat targets` again to resume it)" if (self.path / "parts").is_dir() else ""
            raise FileNotFoundError(f"{self.path} is not a finished target cache: no cache.json{hint}")
        try:
            self.info: dict[str, Any] = json.loads(info_file.read_text())
        except (ValueError, UnicodeDecodeError) as err:
            raise DamagedCacheError(f"{self.path} is damaged: cache.json unreadable ({err}); {_RECOMPUTE}") from None
        problem = cache_problem(self.path, self.info, full=verify == "full")
        if problem is not None:
            raise DamagedCacheError(f"target cache {self.path} is damaged: {problem}; {_RECOMPUTE}")
        self.expert: str = self.info["expert"]
        self.specs: tuple[TargetSpec, ...] = tuple(TargetSpec(**s) for s in self.info["specs"])
        if self.info.get("num_cached", 1) == 0:  # every example was bad audio: a valid, empty cache
            self._data = None
            self._ids: list[str] = []
        else:
            self._data = datasets.load_from_disk(str(self.path / "data")).with_format("numpy")
            self._ids = [str(i) for i in self._data.with_format(None)["id"]]
            if len(self._ids) != self.info.get("num_cached", len(self._ids)):
                raise DamagedCacheError(f"target cache {self.path} is damaged: data/ holds {len(self._ids)} rows, "
                                        f"cache.json says {self.info['num_cached']}; {_RECOMPUTE}")
        self._index = {id_: row for row, id_ in enumerate(self._ids)}
        self._bad: dict[str, dict[str, str]] | None = None
        self._num_samples: list[int] | None = None

    @classmethod
    def open(cls, path_or_dir: str | os.PathLike, expert: str | Expert | None = None,
             source: AudioSource | None = None, audio_fp: str | None = None, verify: str = "size") -> TargetCache:
        """The cache at ``path_or_dir``, or the one of ``expert`` inside the cache root ``path_or_dir``.

        In a root, ``expert`` (a name, or an :class:`Expert` whose parameters must match) picks the caches;
        ``source`` keeps those of exactly that audio (same ids and audio keys). Anything but one match is an
        error (listing the matches when there are several). ``audio_fp``: ``audio_fingerprint(source)`` when the
        caller has it already (hashing a content-keyed source reads all its audio). ``verify``: see ``__init__``.
        """
        path = Path(path_or_dir)
        if (path / "cache.json").is_file() or (path / "parts").is_dir():
            cache = cls(path, verify)
            if expert is not None:
                name = expert if isinstance(expert, str) else expert.name
                if cache.expert != name:
                    raise ValueError(f"{path} holds targets of expert {cache.expert!r}, not {name!r}")
            return cache
        if expert is None:
            raise FileNotFoundError(f"{path} is not a target cache (no cache.json); to open one inside a cache "
                                    "root, pass expert=")
        name = expert if isinstance(expert, str) else expert.name
        found = sorted(p for p in path.glob(f"{name}-*") if (p / "cache.json").is_file())
        want = {}
        if not isinstance(expert, str):
            want["expert_fingerprint"] = expert_fingerprint(expert)
        if source is not None:
            want["audio_fingerprint"] = audio_fp or audio_fingerprint(source)
        if want:
            found = [p for p in found
                     if all(json.loads((p / "cache.json").read_text()).get(k) == v for k, v in want.items())]
        if len(found) != 1:
            what = "no finished" if not found else f"{len(found)}"
            raise FileNotFoundError(f"{what} target caches of expert {name!r} in {path}"
                                    + (f": {[p.name for p in found]}; open one by its folder" if found else ""))
        return cls(found[0], verify)

    def __len__(self) -> int:
        return len(self._ids)

    def ids(self) -> list[str]:
        return list(self._ids)

    def __contains__(self, id_: object) -> bool:
        return id_ in self._index

    def bad(self) -> dict[str, dict[str, str]]:
        """id -> {"id", "reason", "detail"} for the examples reported as bad audio."""
        if self._bad is None:
            report = self.path / "report.jsonl"
            lines = report.read_text().splitlines() if report.is_file() else []
            self._bad = {r["id"]: r for r in map(json.loads, filter(None, lines))}
        return self._bad

    def missing(self, ids: Sequence[str]) -> list[str]:
        return [i for i in ids if i not in self._index]

    def require(self, ids: Sequence[str]) -> None:
        """Raise :class:`MissingTargetsError` naming every id of ``ids`` that the cache lacks."""
        missing = self.missing(ids)
        if not missing:
            return
        bad = self.bad()
        shown = ", ".join(f"{i!r}" + (f" ({bad[i]['reason']})" if i in bad else "") for i in missing[:20])
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        why = "; reasons from report.jsonl in brackets" if any(i in bad for i in missing) else ""
        raise MissingTargetsError(f"{len(missing)} example id(s) not in the {self.expert!r} target cache "
                                  f"{self.path}: {shown}{more}{why}", missing)

    def __getitem__(self, id_: str) -> dict[str, np.ndarray]:
        self.require([id_])
        row = self._data[self._index[id_]]
        out = {s.name: np.asarray(row[s.name], dtype=np.float32).reshape(-1, s.dim) for s in self.specs}
        for name, value in out.items():
            if not np.isfinite(value).all():  # extraction never caches NaN/inf (nonfinite_target): damage
                raise DamagedCacheError(f"target cache {self.path} is damaged: example {id_!r} has NaN/inf values "
                                        f"in target {name!r}; {_RECOMPUTE}")
        return out

    def num_samples(self, id_: str) -> int:
        """Length of example ``id_``'s audio in samples at the expert's sample rate (``specs[i].sample_rate``)."""
        self.require([id_])
        if self._num_samples is None:
            self._num_samples = [int(n) for n in self._data.with_format(None)["num_samples"]]
        return self._num_samples[self._index[id_]]

    def get(self, ids: Sequence[str]) -> list[dict[str, np.ndarray]]:
        """Targets of several examples; one error naming all missing ids."""
        self.require(ids)
        return [self[i] for i in ids]

    def __repr__(self) -> str:
        return f"TargetCache({str(self.path)!r}, expert={self.expert!r}, {len(self)} examples)"
