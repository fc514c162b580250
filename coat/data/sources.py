"""Audio example sources: one interface over a ``datasets`` dataset, an audio folder, a JSONL manifest or a list.

Target extraction, training and evaluation all read audio through an :class:`AudioSource`:

- ``ids()`` and ``metadata(i)`` are cheap (no audio is decoded); ``duration(i)`` reads only a file header
  where it can, so work can be sorted by length before any audio is read;
- ``audio_key(i)`` is what identifies example ``i``'s audio for cache fingerprints (see each source);
- ``load(i, sample_rate)`` decodes one example to mono float32 and resamples it; ``iter(sample_rate)`` yields
  all of them.

Every example has a stable string id: a column of the dataset (or its row number), the path relative to the
folder, or the manifest's ``id`` field. Ids must be unique; a duplicate is an error naming it.

Kinds (``SourceConfig.type``):

- ``dataset``: ``datasets.load_from_disk(path)`` when ``path`` is a saved dataset, else ``load_dataset(path,
  name, split)`` (a hub id or a loading script). The audio column may be a ``datasets.Audio`` feature (read
  undecoded, then decoded here with soundfile/librosa, so no torchcodec is needed), a struct with ``array`` and
  ``sampling_rate`` (what ``coat.data.synth.to_dataset`` writes), or a string column of file paths.
- ``folder``: every ``.wav/.flac/.mp3/.ogg`` file below ``path`` (recursive, sorted); id = relative path.
- ``jsonl``: one JSON object per line, ``{"id": ..., "audio": "path relative to the manifest", ...}``, or a ``.json``
  file holding one array of them (MMAU's layout); the other fields are kept as metadata.
- ``auto`` (default): ``.jsonl`` or ``.json`` file -> jsonl, folder with a saved dataset (``state.json`` or
  ``dataset_dict.json``) -> dataset, other folder -> folder, an ``owner/name`` that is no local path -> dataset
  (hub id, :func:`coat.hub.is_hub_id`). Any other path that does not exist is a :class:`SourceNotFoundError`
  that says so; nothing is looked up on the network for it.

:class:`ExampleListSource` wraps in-memory examples (``{"id", "audio", "sampling_rate", ...}``, e.g. from
``coat.data.synth``) for tests, benchmarks and notebooks.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import struct
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coat.errors import HubUnreachableError, SourceNotFoundError
from coat.hub import hub_offline, is_hub_id, require_hub

AUDIO_EXTENSIONS = ("wav", "flac", "mp3", "ogg")
SOURCE_TYPES = ("auto", "dataset", "folder", "jsonl")


class AudioDecodeError(RuntimeError):
    """An example whose audio cannot be read (missing file, unreadable bytes, unsupported format)."""


@dataclass
class SourceConfig:
    """Where audio examples come from."""

    path: str = field(default="", metadata={
        "help": "saved dataset folder, hub id, audio folder, .jsonl manifest or .json array (MMAU)"})
    type: str = field(default="auto", metadata={"help": f"one of {SOURCE_TYPES}"})
    split: str | None = field(default=None, metadata={"help": "dataset split (needed when there are several)"})
    name: str | None = field(default=None, metadata={"help": "hub dataset configuration name"})
    audio_column: str = field(default="audio", metadata={"help": "dataset column (or JSONL field) with the audio"})
    id_column: str | None = field(
        default="id", metadata={"help": "dataset column (or JSONL field) with the example id; null: row number"}
    )
    extensions: tuple[str, ...] = field(default=AUDIO_EXTENSIONS, metadata={"help": "audio folder file types"})
    limit: int | None = field(default=None, metadata={"help": "use only the first N examples (by source order)"})

    def __post_init__(self):
        self.extensions = tuple(e.lower().lstrip(".") for e in self.extensions)
        if self.type not in SOURCE_TYPES:
            raise ValueError(f"source type must be one of {SOURCE_TYPES}, got {self.type!r}")
        if not self.path:
            raise ValueError("source.path is required (a saved dataset, hub id, audio folder or .jsonl manifest)")
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"source.limit must be >= 0, got {self.limit}")


@dataclass
class AudioExample:
    """One decoded example. audio: (samples,) float32 mono at ``sampling_rate``."""

    id: str
    audio: np.ndarray
    sampling_rate: int
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sampling_rate


# ---------------------------------------------------------------------------------------------------------
# decoding


def _not_a_regular_file(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as an audio file without risk (a FIFO would block forever), or None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "file not found"
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode) else "a device or socket"
        return f"not a regular file ({kind}); refused"
    return None


def _wav_declared_frames(file: str | os.PathLike | bytes) -> int | None:
    """Frames the data chunk of a RIFF/WAVE header declares (libsndfile reports only what the file holds), or None
    when the header does not say (not a WAV, a streaming size of 0 or 0xFFFFFFFF)."""
    if isinstance(file, bytes):
        head = file[:1 << 16]
    else:
        with open(file, "rb") as f:
            head = f.read(1 << 16)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset, block_align = 12, 0
    while offset + 8 <= len(head):
        chunk, size = head[offset:offset + 4], struct.unpack("<I", head[offset + 4:offset + 8])[0]
        if chunk == b"fmt " and offset + 22 <= len(head):
            block_align = struct.unpack("<H", head[offset + 20:offset + 22])[0]
        elif chunk == b"data":
            return size // block_align if block_align and size not in (0, 0xFFFFFFFF) else None
        offset += 8 + size + (size & 1)
    return None


def decode_audio(file: str | os.PathLike | bytes) -> tuple[np.ndarray, int]:
    """Decode a file path or encoded bytes to ``((samples,) float32 mono, sample rate)``.

    soundfile first (wav, flac, ogg, mp3 with libsndfile >= 1.1), then librosa's fallback decoders.
    Raises :class:`AudioDecodeError` naming the file and the reason: not found, not a regular file (a FIFO is
    refused, never opened), undecodable, or truncated (fewer frames than its header declares).
    """
    import soundfile as sf

    what = "audio bytes" if isinstance(file, bytes) else str(file)
    if not isinstance(file, bytes):
        problem = _not_a_regular_file(file)
        if problem is not None:
            raise AudioDecodeError(f"{what}: {problem}")
    try:
        with sf.SoundFile(io.BytesIO(file) if isinstance(file, bytes) else file) as f:
            declared, sr, kind = f.frames, int(f.samplerate), f.format
            data = f.read(dtype="float32", always_2d=True)
    except Exception as sf_err:  # noqa: BLE001 - any decoder failure becomes one clear error
        try:
            import librosa

            with warnings.catch_warnings():  # librosa warns that soundfile failed: we know, and say why below
                warnings.simplefilter("ignore")
                data, sr = librosa.load(io.BytesIO(file) if isinstance(file, bytes) else file, sr=None, mono=False)
            return to_mono(np.atleast_2d(data)), int(sr)
        except Exception as err:  # noqa: BLE001
            raise AudioDecodeError(f"{what}: cannot decode ({type(sf_err).__name__}: {sf_err})") from err
    if kind == "WAV":
        declared = _wav_declared_frames(file) or declared
    # lossless formats decode exactly what the header declares; compressed ones may differ by a codec frame
    slack = 0 if kind in ("WAV", "FLAC", "AIFF") else max(2304, declared // 100)
    if len(data) + slack < declared:
        raise AudioDecodeError(f"{what}: truncated: the header declares {declared} frames ({declared / sr:.2f} s) "
                               f"but the file holds {len(data)} ({len(data) / sr:.2f} s)")
    return to_mono(data.T), sr


def to_mono(audio: np.ndarray) -> np.ndarray:
    """(channels, samples) or (samples,) -> (samples,) float32, channels averaged."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(0) if audio.shape[0] > 1 else audio[0]
    return np.ascontiguousarray(audio.reshape(-1), dtype=np.float32)


def resample(audio: np.ndarray, orig_sr: int, target_sr: int | None, res_type: str = "soxr_hq") -> np.ndarray:
    """(samples,) at ``orig_sr`` -> (samples',) float32 at ``target_sr`` (unchanged if None or equal).

    res_type: a librosa resampler name (``soxr_hq``, ``soxr_vhq``, ``kaiser_best``, ``polyphase``, ...).
    """
    if target_sr is None or int(orig_sr) == int(target_sr) or len(audio) == 0:
        return audio
    if res_type.startswith("soxr_"):  # what librosa would call, without its slow first-call import chain
        import soxr

        out = soxr.resample(audio, int(orig_sr), int(target_sr), quality=res_type[len("soxr_"):].upper())
    else:
        import librosa

        out = librosa.resample(audio, orig_sr=int(orig_sr), target_sr=int(target_sr), res_type=res_type)
    return np.ascontiguousarray(out, dtype=np.float32)


def _file_header_duration(path: str) -> float | None:
    if _not_a_regular_file(path) is not None:  # never open a FIFO (it blocks): decoding reports it
        return None
    try:
        import soundfile as sf

        info = sf.info(path)
        return info.frames / info.samplerate if info.samplerate else None
    except Exception:  # noqa: BLE001 - unknown until decoded; the caller treats None as "read it to know"
        return None


def _stat_key(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}|missing"
    return f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"


def _hash_bytes(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(p)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------------
# sources


class AudioSource:
    """Base class: examples addressed by position ``0..len-1``, each with a unique string id."""

    #: how ``audio_key`` identifies audio: ``"content"`` (hash of the samples/bytes) or ``"file"`` (path, size,
    #: mtime: cheap, so the fingerprint never decodes a folder of files up front).
    audio_key_kind = "content"

    def __init__(self, ids: Sequence[str], description: str):
        self._ids = [str(i) for i in ids]
        self.description = description
        self._index: dict[str, int] = {}
        dupes = []
        for pos, id_ in enumerate(self._ids):
            if id_ in self._index:
                dupes.append(id_)
            self._index[id_] = pos
        if dupes:
            raise ValueError(f"{description}: duplicate example ids {sorted(set(dupes))[:10]} (ids must be unique)")

    def __len__(self) -> int:
        return len(self._ids)

    def ids(self) -> list[str]:
        return list(self._ids)

    def index_of(self, id_: str) -> int:
        try:
            return self._index[id_]
        except KeyError:
            raise KeyError(f"{self.description}: no example with id {id_!r}") from None

    def metadata(self, i: int) -> dict[str, Any]:
        """Fields of example ``i`` other than its audio (cheap: no decoding)."""
        return {"id": self._ids[i]}

    def duration(self, i: int) -> float | None:
        """Seconds of example ``i`` where it is cheap to know, else None."""
        return None

    def audio_key(self, i: int) -> str:
        raise NotImplementedError

    def read(self, i: int) -> tuple[np.ndarray, int]:
        """Raw audio of example ``i``: ((samples,) float32 mono, native rate). Raises AudioDecodeError."""
        raise NotImplementedError

    def load(self, i: int, sample_rate: int | None = None, res_type: str = "soxr_hq") -> AudioExample:
        audio, sr = self.read(i)
        audio = resample(audio, sr, sample_rate, res_type)
        return AudioExample(self._ids[i], audio, int(sample_rate or sr), self.metadata(i))

    def iter(self, sample_rate: int | None = None, indices: Iterable[int] | None = None) -> Iterator[AudioExample]:
        for i in range(len(self)) if indices is None else indices:
            yield self.load(i, sample_rate)

    def __iter__(self) -> Iterator[AudioExample]:
        return self.iter()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description!r}, {len(self)} examples)"


class _FileSource(AudioSource):
    """A source whose examples are audio files at ``self._paths``: header durations, stat keys, file decoding."""

    audio_key_kind = "file"
    _paths: list[str]

    def duration(self, i: int) -> float | None:
        return _file_header_duration(self._paths[i])

    def audio_key(self, i: int) -> str:
        return _stat_key(self._paths[i])

    def read(self, i: int) -> tuple[np.ndarray, int]:
        return decode_audio(self._paths[i])


class FolderSource(_FileSource):
    """Audio files below a folder (recursive); id = path relative to the folder with ``/`` separators."""

    def __init__(self, root: str | os.PathLike, extensions: Sequence[str] = AUDIO_EXTENSIONS):
        self.root = Path(root)
        if not self.root.is_dir():
            raise SourceNotFoundError(f"audio folder {str(self.root)!r} does not exist")
        exts = {"." + e.lower().lstrip(".") for e in extensions}
        files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in exts and p.is_file())
        self._paths = [str(p) for p in files]
        super().__init__([p.relative_to(self.root).as_posix() for p in files], f"audio folder {str(self.root)!r}")

    def metadata(self, i: int) -> dict[str, Any]:
        return {"id": self._ids[i], "path": self._paths[i]}



def _manifest_rows(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, row) of a JSONL file (blank lines skipped), or of a ``.json`` file holding one JSON array (MMAU's
    layout); ``where`` names the line or item for errors."""
    if path.suffix == ".json":
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON: {err}") from err
        if not isinstance(rows, list):
            raise ValueError(f"{path}: a .json manifest must hold one JSON array of examples, got a "
                             f"{type(rows).__name__}")
        yield from ((f"{path} item {n}", row) for n, row in enumerate(rows))
        return
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield f"{path}:{lineno}", json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid JSON: {err}") from err


class ManifestSource(_FileSource):
    """A JSONL manifest, ``{"id": ..., "audio": "path relative to the manifest", ...}`` per line, or a ``.json`` file
    holding one array of such objects (MMAU's layout)."""

    def __init__(self, manifest: str | os.PathLike, audio_field: str = "audio", id_field: str | None = "id"):
        self.manifest = Path(manifest)
        if not self.manifest.is_file():
            raise SourceNotFoundError(f"manifest {str(self.manifest)!r} does not exist")
        self._rows: list[dict[str, Any]] = []
        for where, row in _manifest_rows(self.manifest):
            if not isinstance(row, dict) or audio_field not in row:
                raise ValueError(f"{where}: needs an {audio_field!r} field (the audio path; source.audio_column "
                                 "names the field)")
            if not isinstance(row[audio_field], str) or not row[audio_field]:
                raise ValueError(f"{where}: {audio_field!r} must be the path of an audio file (relative to the "
                                 f"manifest), got {row[audio_field]!r}")
            if id_field is not None and id_field not in row:
                raise ValueError(f"{where}: needs an {id_field!r} field "
                                 "(or set source.id_column=null to use line numbers)")
            self._rows.append(row)
        base = self.manifest.parent
        self._paths = [str(base / r[audio_field]) for r in self._rows]
        self.audio_field = audio_field
        ids = [str(r[id_field]) if id_field is not None else f"{n:08d}" for n, r in enumerate(self._rows)]
        super().__init__(ids, f"manifest {str(self.manifest)!r}")

    def metadata(self, i: int) -> dict[str, Any]:
        return {**self._rows[i], "id": self._ids[i], "path": self._paths[i]}



class DatasetSource(AudioSource):
    """A ``datasets.Dataset`` with an audio column (``Audio`` feature, ``{array, sampling_rate}`` struct or paths).

    ``audio_key`` hashes the stored audio (the encoded bytes or the array); for an ``Audio`` column that only
    holds file paths, it is the file's path, size and mtime.
    """

    def __init__(self, dataset, audio_column: str = "audio", id_column: str | None = "id", description: str = ""):
        import datasets

        description = description or "dataset"
        columns = list(dataset.column_names)
        if audio_column not in columns:
            raise ValueError(f"{description}: no audio column {audio_column!r}; columns are {columns}. "
                             "Set source.audio_column to one of them.")
        if id_column is not None and id_column not in columns:
            raise ValueError(f"{description}: no id column {id_column!r}; columns are {columns}. Set "
                             "source.id_column to one of them, or to null to use row numbers as ids.")
        feature = dataset.features[audio_column]
        if isinstance(feature, datasets.Audio):
            self._mode = "audio"
            dataset = dataset.cast_column(audio_column, datasets.Audio(decode=False))
        elif isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
            self._mode = "path"
        elif isinstance(feature, dict) and "array" in feature:
            self._mode = "array"
        else:
            raise ValueError(f"{description}: audio column {audio_column!r} has type {feature}; expected a "
                             "datasets.Audio feature, a struct with 'array' and 'sampling_rate', or file paths")
        self.dataset = dataset
        self.audio_column = audio_column
        # rows of the audio column alone; arrays come as numpy (no per-sample Python floats)
        self._audio_rows = dataset.select_columns([audio_column])
        if self._mode == "array":
            self._audio_rows = self._audio_rows.with_format("numpy")
        self._meta_columns = [c for c in columns if c != audio_column]
        self._meta: list[dict[str, Any]] | None = None
        ids = (dataset[id_column] if id_column is not None else [f"{n:08d}" for n in range(len(dataset))])
        super().__init__([str(i) for i in ids], description)

    def _row_audio(self, i: int) -> Any:
        return self._audio_rows[i][self.audio_column]

    def metadata(self, i: int) -> dict[str, Any]:
        if self._meta is None:  # one columnar read of everything but the audio
            self._meta = self.dataset.select_columns(self._meta_columns).to_list() if self._meta_columns else [
                {} for _ in range(len(self))]
        return {**self._meta[i], "id": self._ids[i]}

    def duration(self, i: int) -> float | None:
        value = self._row_audio(i)
        if self._mode == "array":
            return float(len(value["array"]) / value["sampling_rate"]) if value["sampling_rate"] else None
        if self._mode == "path":
            return _file_header_duration(value)
        if value.get("bytes"):
            try:
                import soundfile as sf

                info = sf.info(io.BytesIO(value["bytes"]))
                return info.frames / info.samplerate
            except Exception:  # noqa: BLE001
                return None
        return _file_header_duration(value.get("path") or "")

    def audio_key(self, i: int) -> str:
        value = self._row_audio(i)
        if self._mode == "array":
            arr = np.asarray(value["array"], dtype=np.float32)
            return _hash_bytes(str(value["sampling_rate"]).encode(), arr.tobytes())
        if self._mode == "path":
            return _stat_key(value)
        if value.get("bytes"):
            return _hash_bytes(value["bytes"])
        return _stat_key(value.get("path") or "")

    def read(self, i: int) -> tuple[np.ndarray, int]:
        value = self._row_audio(i)
        if self._mode == "array":
            return to_mono(np.asarray(value["array"], dtype=np.float32)), int(value["sampling_rate"])
        if self._mode == "path":
            return decode_audio(value)
        if value.get("bytes"):
            return decode_audio(value["bytes"])
        if value.get("path"):
            return decode_audio(value["path"])
        raise AudioDecodeError(f"{self.description} row {i}: audio has neither bytes nor a path")


class ExampleListSource(AudioSource):
    """In-memory examples: dicts with ``id``, ``audio`` ((samples,) array) and ``sampling_rate``; rest is metadata."""

    def __init__(self, examples: Iterable[dict[str, Any]], description: str = "examples in memory"):
        self._examples = list(examples)
        for ex in self._examples:
            if not {"id", "audio", "sampling_rate"} <= set(ex):
                raise ValueError(f"{description}: each example needs 'id', 'audio' and 'sampling_rate'")
        super().__init__([str(ex["id"]) for ex in self._examples], description)

    def metadata(self, i: int) -> dict[str, Any]:
        return {k: v for k, v in self._examples[i].items() if k != "audio"} | {"id": self._ids[i]}

    def duration(self, i: int) -> float | None:
        ex = self._examples[i]
        return len(ex["audio"]) / ex["sampling_rate"]

    def audio_key(self, i: int) -> str:
        ex = self._examples[i]
        return _hash_bytes(str(ex["sampling_rate"]).encode(), np.asarray(ex["audio"], dtype=np.float32).tobytes())

    def read(self, i: int) -> tuple[np.ndarray, int]:
        ex = self._examples[i]
        return to_mono(ex["audio"]), int(ex["sampling_rate"])


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file())


def open_source(config: SourceConfig) -> AudioSource:
    """The :class:`AudioSource` that ``config`` describes (``limit`` applied)."""
    path = Path(config.path)
    kind = config.type
    if kind == "auto":
        if path.suffix in (".jsonl", ".json") and path.is_file():
            kind = "jsonl"
        elif _is_saved_dataset(path):
            kind = "dataset"
        elif path.is_dir():
            kind = "folder"
        elif path.exists() or is_hub_id(config.path):
            kind = "dataset"
        else:
            raise SourceNotFoundError(
                f"source path {config.path!r} does not exist. Give an audio folder, a .jsonl manifest, a folder "
                "saved with datasets' save_to_disk, or a hub dataset id of the form owner/name.")
    if kind == "folder":
        source: AudioSource = FolderSource(path, config.extensions)
    elif kind == "jsonl":
        source = ManifestSource(path, config.audio_column, config.id_column)
    else:
        source = DatasetSource(_load_dataset(config), config.audio_column, config.id_column,
                               f"dataset {config.path!r}" + (f" split {config.split!r}" if config.split else ""))
    if config.limit is not None and config.limit < len(source):
        source = SubsetSource(source, range(config.limit))
    return source


def _load_dataset(config: SourceConfig):
    import datasets

    if _is_saved_dataset(Path(config.path)):
        ds = datasets.load_from_disk(config.path)
    elif Path(config.path).exists() or not is_hub_id(config.path):
        if not Path(config.path).exists():
            raise SourceNotFoundError(f"dataset path {config.path!r} does not exist (and is not a hub dataset id "
                                      "of the form owner/name)")
        ds = datasets.load_dataset(config.path, config.name, split=config.split)  # a loading script, data files
    else:
        require_hub("dataset", config.path)  # one quick look instead of five retries and a traceback
        try:
            ds = datasets.load_dataset(config.path, config.name, split=config.split)
        except (ConnectionError, OSError) as err:
            if isinstance(err, FileNotFoundError) or "doesn't exist" in str(err) or "not found" in str(err).lower():
                raise SourceNotFoundError(f"dataset {config.path!r}: no such dataset on the hub (or a private one "
                                          f"without a token): {str(err).splitlines()[0]}") from err
            why = "the hub is offline (HF_HUB_OFFLINE)" if hub_offline() else "the hub was not reachable"
            raise HubUnreachableError(f"dataset {config.path!r} (a hub id): {why} and it is not in the local "
                                      f"cache ({type(err).__name__}: {str(err).splitlines()[0]})") from err
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds)
        if config.split is None and len(splits) == 1:
            return ds[splits[0]]
        if config.split not in ds:
            raise ValueError(f"dataset {config.path!r} has splits {splits}; set source.split to one of them")
        return ds[config.split]
    return ds


class SubsetSource(AudioSource):
    """The examples of ``base`` at ``indices`` (in that order), e.g. one process's shard."""

    def __init__(self, base: AudioSource, indices: Iterable[int]):
        self.base = base
        self._positions = list(indices)
        self.audio_key_kind = base.audio_key_kind
        super().__init__([base._ids[i] for i in self._positions], base.description)

    def metadata(self, i: int) -> dict[str, Any]:
        return self.base.metadata(self._positions[i])

    def duration(self, i: int) -> float | None:
        return self.base.duration(self._positions[i])

    def audio_key(self, i: int) -> str:
        return self.base.audio_key(self._positions[i])

    def read(self, i: int) -> tuple[np.ndarray, int]:
        return self.base.read(self._positions[i])
