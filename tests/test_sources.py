"""Audio sources on real files and real ``datasets`` folders: ids, metadata, decoding, resampling, config errors."""

import io
import json

import datasets
import numpy as np
import pytest
import soundfile as sf

from coat.config_io import ConfigError, load_config
from coat.data.sources import (
    AudioDecodeError,
    DatasetSource,
    ExampleListSource,
    FolderSource,
    ManifestSource,
    SourceConfig,
    open_source,
)


def tone(seconds: float, sr: int, f0: float = 220.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    mono = (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)
    return mono if channels == 1 else np.stack([mono] * channels, axis=1)


@pytest.fixture
def audio_folder(tmp_path):
    """wav (16 kHz), flac (22.05 kHz stereo), ogg and mp3 in nested folders, plus a non-audio file."""
    root = tmp_path / "clips"
    (root / "sub" / "deeper").mkdir(parents=True)
    sf.write(root / "a.wav", tone(0.5, 16000), 16000)
    sf.write(root / "sub" / "b.flac", tone(0.25, 22050, channels=2), 22050)
    sf.write(root / "sub" / "deeper" / "c.ogg", tone(0.3, 16000), 16000, format="OGG", subtype="VORBIS")
    sf.write(root / "d.mp3", tone(0.4, 16000), 16000, format="MP3")
    (root / "notes.txt").write_text("not audio")
    return root


def test_folder_source_ids_metadata_and_decoding(audio_folder):
    src = FolderSource(audio_folder)
    assert src.ids() == ["a.wav", "d.mp3", "sub/b.flac", "sub/deeper/c.ogg"]
    assert src.metadata(2)["path"].endswith("b.flac")
    assert src.duration(2) == pytest.approx(0.25, abs=1e-3)
    for i, ex in enumerate(src.iter(sample_rate=16000)):
        assert ex.id == src.ids()[i] and ex.sampling_rate == 16000
        assert ex.audio.dtype == np.float32 and ex.audio.ndim == 1
    flac = src.load(src.index_of("sub/b.flac"), sample_rate=16000)
    assert len(flac.audio) == pytest.approx(0.25 * 16000, abs=2)  # stereo downmixed, resampled 22.05k -> 16k
    np.testing.assert_allclose(src.read(0)[0], tone(0.5, 16000), atol=1e-4)  # wav decodes unchanged
    mp3 = src.load(src.index_of("d.mp3"))
    assert mp3.sampling_rate == 16000 and abs(mp3.duration - 0.4) < 0.1  # mp3 adds codec padding
    assert FolderSource(audio_folder, extensions=("wav",)).ids() == ["a.wav"]


def test_file_audio_key_follows_size_and_mtime(audio_folder):
    src = FolderSource(audio_folder)
    before = src.audio_key(0)
    assert before == FolderSource(audio_folder).audio_key(0)
    sf.write(audio_folder / "a.wav", tone(0.6, 16000), 16000)
    assert FolderSource(audio_folder).audio_key(0) != before


def test_manifest_source_keeps_fields_and_resolves_paths(audio_folder, tmp_path):
    manifest = audio_folder / "manifest.jsonl"
    rows = [{"id": "x1", "audio": "a.wav", "question": "which note?", "answer": "A3"},
            {"id": "x2", "audio": "sub/b.flac", "question": "loud?", "answer": "no"}]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    src = ManifestSource(manifest)
    assert src.ids() == ["x1", "x2"]
    assert src.metadata(1)["question"] == "loud?" and src.metadata(1)["answer"] == "no"
    assert src.load(1, sample_rate=8000).sampling_rate == 8000
    assert open_source(SourceConfig(path=str(manifest))).ids() == ["x1", "x2"]  # auto: .jsonl
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "y", "wav": "a.wav"}) + "\n")
    with pytest.raises(ValueError, match="'audio'"):
        ManifestSource(bad)
    missing = tmp_path / "missing.jsonl"
    missing.write_text(json.dumps({"id": "z", "audio": "nope.wav"}) + "\n")
    with pytest.raises(AudioDecodeError, match="not found"):
        ManifestSource(missing).read(0)


def test_dataset_on_disk_with_array_struct_column(tmp_path):
    rng = np.random.default_rng(0)
    audio = [{"array": (0.1 * rng.standard_normal(n)).astype(np.float32), "sampling_rate": 8000}
             for n in (4000, 8000, 6000)]
    ds = datasets.Dataset.from_dict({"id": ["u", "v", "w"], "question": ["q1", "q2", "q3"], "audio": audio})
    ds.save_to_disk(tmp_path / "ds")
    src = open_source(SourceConfig(path=str(tmp_path / "ds")))
    assert isinstance(src, DatasetSource) and src.ids() == ["u", "v", "w"]
    assert src.metadata(1) == {"id": "v", "question": "q2"}
    assert src.duration(1) == pytest.approx(1.0)
    ex = src.load(2, sample_rate=16000)
    assert len(ex.audio) == 12000 and ex.sampling_rate == 16000
    np.testing.assert_array_equal(src.read(0)[0], audio[0]["array"])
    assert src.audio_key(0) != src.audio_key(1)
    assert open_source(SourceConfig(path=str(tmp_path / "ds"), limit=2)).ids() == ["u", "v"]


def test_dataset_dict_with_audio_feature_bytes_and_row_ids(tmp_path):
    def wav_bytes(seconds):
        buf = io.BytesIO()
        sf.write(buf, tone(seconds, 16000), 16000, format="WAV")
        return buf.getvalue()

    # built as a bytes/path struct and cast, as datasets would need torchcodec to encode into Audio()
    stored = datasets.Features({"clip": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
                                "label": datasets.Value("int64")})
    split = datasets.Dataset.from_dict(
        {"clip": [{"bytes": wav_bytes(0.2), "path": None}, {"bytes": wav_bytes(0.3), "path": None}], "label": [0, 1]},
        features=stored,
    ).cast_column("clip", datasets.Audio())
    datasets.DatasetDict({"train": split, "test": split.select([0])}).save_to_disk(tmp_path / "dd")
    with pytest.raises(ValueError, match=r"splits \['train', 'test'\]"):
        open_source(SourceConfig(path=str(tmp_path / "dd"), audio_column="clip", id_column=None))
    with pytest.raises(ValueError, match=r"no audio column 'audio'; columns are \['clip', 'label'\]"):
        open_source(SourceConfig(path=str(tmp_path / "dd"), split="train"))
    with pytest.raises(ValueError, match=r"no id column 'id'.*null"):
        open_source(SourceConfig(path=str(tmp_path / "dd"), split="train", audio_column="clip"))
    src = open_source(SourceConfig(path=str(tmp_path / "dd"), split="train", audio_column="clip", id_column=None))
    assert src.ids() == ["00000000", "00000001"]
    assert src.duration(1) == pytest.approx(0.3)
    np.testing.assert_allclose(src.read(1)[0], tone(0.3, 16000), atol=1e-4)  # decoded here, no torchcodec


def test_in_memory_source_and_duplicate_ids():
    ex = [{"id": "a", "audio": np.zeros(100, np.float32), "sampling_rate": 1000, "label": 3}]
    src = ExampleListSource(ex)
    assert src.metadata(0) == {"id": "a", "sampling_rate": 1000, "label": 3}
    with pytest.raises(ValueError, match=r"duplicate example ids \['a'\]"):
        ExampleListSource(ex + ex)


def test_source_config_errors(tmp_path):
    with pytest.raises(ValueError, match="source type"):
        SourceConfig(path="x", type="parquet")
    with pytest.raises(ValueError, match="path is required"):
        SourceConfig()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("path: data\naudio_colum: wav\n")
    with pytest.raises(ConfigError, match="audio_colum"):
        load_config(SourceConfig, cfg)
    assert load_config(SourceConfig, None, ["path=elsewhere", "limit=3"]).limit == 3
    with pytest.raises(FileNotFoundError):
        FolderSource(tmp_path / "nope")


def test_a_missing_local_path_is_an_error_that_says_so_without_the_network(tmp_path, monkeypatch):
    from coat.errors import SourceNotFoundError
    from coat.hub import is_hub_id

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    # nothing that is not of the form owner/name, or whose owner is a local folder, is looked up on the hub
    for missing in ("data/clips", "clips", "./data/clips", str(tmp_path / "data" / "clips"), "a/b/c",
                    "nobody/clips.jsonl"):
        assert not is_hub_id(missing), missing
        with pytest.raises(SourceNotFoundError, match="does not exist"):
            open_source(SourceConfig(path=missing))
    assert is_hub_id("nobody/clips") and is_hub_id("Qwen/Qwen2-Audio-7B-Instruct")
    with pytest.raises(SourceNotFoundError, match="does not exist"):
        open_source(SourceConfig(path="clips", type="folder"))


def test_an_unreachable_hub_is_one_line(tmp_path, monkeypatch):
    """On a machine without the hub (CI, this one): a dataset id fails at once with one line, no retries."""
    from coat.errors import HubUnreachableError
    from coat.hub import hub_reachable

    if hub_reachable():
        pytest.skip("the hub is reachable from here")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(HubUnreachableError) as err:
        open_source(SourceConfig(path="coat-tests/no-such-dataset"))
    message = str(err.value)
    assert "\n" not in message and "not reachable" in message and "coat-tests/no-such-dataset" in message


@pytest.mark.parametrize("name, fmt, subtype", [("a.wav", "WAV", "PCM_16"), ("b.wav", "WAV", "FLOAT"),
                                                ("c.flac", "FLAC", "PCM_16"), ("d.mp3", "MP3", None)])
def test_a_truncated_file_is_reported_not_taken_as_its_partial_data(tmp_path, name, fmt, subtype):
    from coat.data.sources import decode_audio

    path = tmp_path / name
    sf.write(path, tone(2.0, 16000), 16000, format=fmt, subtype=subtype)
    whole, _ = decode_audio(path)
    assert len(whole) == 32000
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # what a kill during a copy, or a full disk, leaves
    with pytest.raises(AudioDecodeError, match=f"{name}: (truncated: the header declares 32000 frames|cannot decode)"):
        decode_audio(path)
    with pytest.raises(AudioDecodeError, match="truncated|cannot decode"):
        decode_audio(path.read_bytes())


def test_a_null_or_non_path_audio_in_a_manifest_is_a_clear_error(tmp_path):
    manifest = tmp_path / "m.jsonl"
    sf.write(tmp_path / "a.wav", tone(0.5, 16000), 16000)
    for value in (None, 3, ""):
        manifest.write_text(json.dumps({"id": "a", "audio": "a.wav"}) + "\n" + json.dumps({"id": "n", "audio": value}))
        with pytest.raises(ValueError, match=rf"m.jsonl:2: 'audio' must be the path of an audio file .*got {value!r}"):
            ManifestSource(manifest)
