"""The target cache: expert targets computed once, batched, resumable, fingerprinted, in Arrow; read by training.

Writing side, :func:`coat.experts.compute.compute_targets` (coat/experts/compute.py): decode each example once,
check it (bad audio is reported, never fatal), resample it to each expert's rate, batch by length and run the
experts; under ``accelerate launch`` every process takes one shard and the main process merges.

Reading side, here, :class:`TargetCache`: ``TargetCache.open(dir, expert=...)`` -> ``specs``, ``ids()``,
``id in cache``, ``cache[id] -> {target name: (frames, dim) float32}`` (top-k targets dense again, a ``peak_std``
target's distribution rebuilt; ``cache.targets(id, peaks=True)`` leaves a peak target as its ``(frames, 1)`` peak
positions, what the collator resamples before rebuilding); a missing id raises :class:`MissingTargetsError` (a
``KeyError``) naming the ids and, where known, why they are missing (the bad-audio report). Only the targets made
offline (``computed_in="extraction"``) are cached: log-mel and the LALM-encoder target are made during training.

What each target costs on disk (format 2, coat/experts/storage.py, for every kind): peak targets (pitch) as
uint16 peak positions, distribution and multilabel targets of more than ``2 * top_k`` classes as their ``top_k``
(default 16) largest values per frame (uint16 index + float16 value), everything else as float16; frame-level targets
keep at most the heads' ``num_frames`` frames per clip (the values those heads read). CREPE pitch + voicing costs
under 2 MB per audio hour this way (format 1 kept the 360-bin float32 distribution at 100 frames/s: 525 MB/h).
A cache of format 1 is refused with the command that recomputes it (:class:`OldCacheFormatError`), never misread.

Fingerprint (one cache folder per expert and fingerprint): a hash of the cache format version, the expert's
``fingerprint_params()`` (expert, class, sample rate, checkpoint and parameters, target specs, storage), the heads'
frame count when targets are kept on the heads' frames, the audio checks, the resampler (both from the
``targets:`` section, :class:`coat.experts.config.TargetsConfig`, so ``coat targets`` and ``coat train`` compute
and open the same folder), and the audio: every example id with its source's
``audio_key``. That key is a content hash of the audio (blake2b of the samples or encoded bytes) for datasets and
in-memory examples, and the file's path, size and mtime for audio folders and JSONL manifests (hashing every file up
front would mean reading the whole corpus before starting). A changed parameter or changed audio gives a new
folder; the same inputs reuse the old one without computing anything.

On-disk layout::

    <cache_dir>/<expert>-<fingerprint[:16]>/
        cache.json          written last, atomically: a folder without it is unfinished. Holds the format
                            (2), the full fingerprint, the expert's fingerprint params, the cached target specs,
                            ``storage_config`` and ``grid`` (how they are stored), ``storage`` (per target: its
                            stored form and what storing lost: ``max_abs_error``, for top-k ``max_tail`` and
                            ``mean_tail``), the source description, counts, bad-audio reasons and ``data_files``:
                            the size and xxh3-128 checksum of every file of ``data/``.
        data/               the merged targets, a ``datasets`` dataset (``save_to_disk``) in source order:
                            ``id`` (string), ``num_samples`` (int64, at the expert's rate), and per target the
                            flat list columns of its stored form (coat/experts/storage.py): ``<name>`` (float16
                            values or uint16 peak positions) or ``<name>.index`` + ``<name>.value`` (top-k);
                            clip-level targets have one frame.
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
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coat.data.checks import AudioChecks
from coat.data.sources import AudioSource
from coat.experts.base import Expert
from coat.experts.storage import StorageConfig, TargetCodec, from_stored_frames, grid_key
from coat.targets import FrameGrid, TargetSpec, peak_distribution

# 1: float32 (frames, dim) arrays at the expert's frame rate; 2: stored forms per kind (coat/experts/storage.py)
CACHE_FORMAT = 2


_RECOMPUTE = "run `coat targets` again (or train with targets.compute=true): it computes damaged caches again"


class DamagedCacheError(ValueError):
    """A target cache whose files no longer match what was written (truncated, deleted, overwritten)."""


class OldCacheFormatError(ValueError):
    """A target cache written in another format than this coat reads: recompute it, never misread it."""

    def __init__(self, path: Path, found: Any):
        super().__init__(
            f"target cache {path} is in format {found} (float32 arrays of every expert frame, as coat wrote before "
            f"format {CACHE_FORMAT}); this coat reads format {CACHE_FORMAT} only, and would misread it. Recompute it: "
            "`coat targets <config.yaml>` with the data, experts and targets sections of your run (or `coat train "
            "<config.yaml> targets.compute=true`). It goes to a new folder; this one can then be deleted")


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


def cache_fingerprint(expert: Expert, audio_fp: str, checks: AudioChecks, res_type: str,
                      grid: FrameGrid | None = None) -> str:
    """The fingerprint of ``expert``'s cache; ``grid``: the heads' frames the cache keeps its targets on (only
    their ``num_frames`` counts, and only when a target is kept on them: coat/experts/storage.py)."""
    return _hash({"format": CACHE_FORMAT, "expert": expert.fingerprint_params(), "audio": audio_fp,
                  "checks": asdict(checks), "resample": res_type,
                  "grid": grid_key(expert.cached_specs(), expert.storage, grid)})


def cache_format(path: Path) -> Any:
    """The format a finished cache at ``path`` declares (1 for caches that predate the field), or None."""
    try:
        return json.loads((path / "cache.json").read_text()).get("format", 1)
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        return None


def cache_path(cache_dir: str | os.PathLike, expert: Expert, fingerprint: str) -> Path:
    return Path(cache_dir) / f"{expert.name}-{fingerprint[:16]}"


# ---------------------------------------------------------------------------------------------------------
# files and their records


def file_record(file: Path) -> dict[str, Any]:
    """Size and xxh3-128 checksum of ``file`` (several GB/s: verifying a cache costs little next to computing it)."""
    import xxhash

    h = xxhash.xxh3_128()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return {"size": file.stat().st_size, "xxh3": h.hexdigest()}


def folder_records(folder: Path) -> dict[str, dict[str, Any]]:
    return {p.relative_to(folder).as_posix(): file_record(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def records_problem(folder: Path, records: dict[str, dict[str, Any]], full: bool) -> str | None:
    """Why the files under ``folder`` do not match ``records`` (missing, other size, other checksum), or None.
    ``full=False`` compares sizes only."""
    for name, record in records.items():
        file = folder / name
        if not file.is_file():
            return f"{folder.name}/{name} is missing"
        if file.stat().st_size != record["size"]:
            return f"{folder.name}/{name} has {file.stat().st_size} bytes, {record['size']} were written"
        if full and file_record(file)["xxh3"] != record["xxh3"]:
            return f"{folder.name}/{name} does not match its checksum (its bytes changed after it was written)"
    return None


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
        return records_problem(path / "data", info["data_files"], full)
    if info.get("num_cached"):
        try:
            import datasets

            rows = datasets.load_from_disk(str(path / "data")).num_rows
        except Exception as err:  # noqa: BLE001 - any read failure means the data is damaged
            return f"data/ unreadable ({type(err).__name__}: {err})"
        if rows != info["num_cached"]:
            return f"data/ holds {rows} rows, cache.json says {info['num_cached']}"
    return None


# ---------------------------------------------------------------------------------------------------------
# reading


class TargetCache:
    """A finished target cache of one expert. ``cache[id]`` -> {target name: (frames, dim) float32 array}; frames
    are the stored ones (at most the heads' ``num_frames`` when kept on their grid)."""

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
        if not isinstance(self.info, dict):
            raise DamagedCacheError(f"{self.path} is damaged: cache.json is not a record; {_RECOMPUTE}")
        if self.info.get("format", 1) != CACHE_FORMAT:
            raise OldCacheFormatError(self.path, self.info.get("format", 1))
        problem = cache_problem(self.path, self.info, full=verify == "full")
        if problem is not None:
            raise DamagedCacheError(f"target cache {self.path} is damaged: {problem}; {_RECOMPUTE}")
        self.expert: str = self.info["expert"]
        self.specs: tuple[TargetSpec, ...] = tuple(TargetSpec(**s) for s in self.info["specs"])
        self.storage = StorageConfig(**self.info["storage_config"])
        self._codecs = [TargetCodec(spec, self.storage) for spec in self.specs]
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
        old = [p for p in found if cache_format(p) != CACHE_FORMAT]
        found = [p for p in found if p not in old]
        if old and not found:  # only caches this coat cannot read: say so, with the command that recomputes them
            raise OldCacheFormatError(old[0], cache_format(old[0]))
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
        return self.targets(id_)

    def targets(self, id_: str, peaks: bool = False) -> dict[str, np.ndarray]:
        """Example ``id_``'s targets: name -> ``(frames, dim)`` float32 (top-k dense again, rows of a distribution
        summing to 1). ``peaks``: a ``peak_std`` target as its ``(frames, 1)`` peak positions, as stored (the
        collator resamples those and rebuilds the distribution on the heads' frames); else its rebuilt
        distribution. Frames kept at a fixed ``storage.frame_rate`` come back on the expert's own frame rate."""
        self.require([id_])
        row = self._data[self._index[id_]]
        out = {}
        for codec in self._codecs:
            spec = codec.spec
            try:
                value = codec.decode(row)
            except (ValueError, KeyError) as err:  # a row whose lists do not fit its target's shape: damage
                raise DamagedCacheError(f"target cache {self.path} is damaged: example {id_!r}, target "
                                        f"{spec.name!r}: {err}; {_RECOMPUTE}") from None
            if not np.isfinite(value).all():  # extraction never caches NaN/inf (nonfinite_target): damage
                raise DamagedCacheError(f"target cache {self.path} is damaged: example {id_!r} has NaN/inf values "
                                        f"in target {spec.name!r}; {_RECOMPUTE}")
            value = from_stored_frames(value, spec, self.storage, int(row["num_samples"]))
            if spec.peak_std is not None and not peaks:
                value = peak_distribution(torch.from_numpy(value[:, 0]), spec.dim, spec.peak_std).float().numpy()
            out[spec.name] = value
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
