"""The synthetic acoustic QA benchmark: deterministic, balanced, and its labels are right acoustically.

The acoustic checks measure the audio with plain signal processing written out here (YIN, RMS envelopes,
LPC) with reference values of their own, against the answer text; none reads the generator's tables.
"""

import collections
import json

import numpy as np
import pytest
import soundfile as sf
from scipy.linalg import solve_toeplitz
from scipy.signal import resample_poly

from coat.data import synth
from coat.data.synth import CATEGORIES, LETTERS, Category, SynthConfig, generate_split, make_example, note_to_hz

PER_CATEGORY = 40
CONFIG = SynthConfig(seed=7, train_size=6 * 6, validation_size=6 * 3, test_size=6 * PER_CATEGORY)


@pytest.fixture(scope="module")
def test_split():
    return generate_split(CONFIG, "test")


def _of(examples, category):
    return [ex for ex in examples if ex["category"] == category]


def _frames(x, frame, hop):
    return np.lib.stride_tricks.sliding_window_view(x, frame)[::hop]


def _frames_db(audio, frame=320, hop=80):
    rms = np.sqrt(np.mean(_frames(audio.astype(np.float64), frame, hop) ** 2, axis=1))
    return 20 * np.log10(rms + 1e-10)


def _yin(frame, sr, fmin=60.0, fmax=1500.0, threshold=0.15):
    """f0 of one frame by YIN (de Cheveigne & Kawahara 2002): the first dip of the cumulative-mean-normalised
    difference function under ``threshold``, refined by a parabola."""
    w = len(frame) // 2
    size = 1 << int(np.ceil(np.log2(len(frame) + w)))
    r = np.fft.irfft(np.conj(np.fft.rfft(frame[:w], size)) * np.fft.rfft(frame, size), size)[: w + 1]
    energy = np.concatenate([[0.0], np.cumsum(frame**2)])
    lags = np.arange(w + 1)
    d = energy[w] + energy[lags + w] - energy[lags] - 2 * r
    cmnd = np.ones(w + 1)
    cmnd[1:] = d[1:] * lags[1:] / np.maximum(np.cumsum(d[1:]), 1e-12)
    lo, hi = int(sr / fmax), int(sr / fmin)
    below = np.flatnonzero(cmnd[lo:hi] < threshold)
    tau = lo + (below[0] if len(below) else int(np.argmin(cmnd[lo:hi])))
    while tau + 1 < hi and cmnd[tau + 1] < cmnd[tau]:
        tau += 1
    a, b, c = cmnd[tau - 1], cmnd[tau], cmnd[tau + 1]
    shift = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c > 0 else 0.0
    return sr / (tau + shift)


def _f0_track(audio, sr):
    """YIN f0 per 128 ms frame and a mask of the frames loud enough to be the tone (not the noise floor)."""
    frames = _frames(audio.astype(np.float64), 2048, 256)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    return np.array([_yin(frame, sr) for frame in frames]), rms > 0.3 * rms.max()


def _cents(a, b):
    return 1200 * np.log2(a / b)


# --- determinism, splits, balance ------------------------------------------------------------------------


def test_same_config_gives_identical_examples():
    first, second = generate_split(CONFIG, "train"), generate_split(CONFIG, "train")
    assert [ex["id"] for ex in first] == [ex["id"] for ex in second]
    for a, b in zip(first, second):
        assert a["audio"].tobytes() == b["audio"].tobytes()
        assert (a["question"], a["choices"], a["answer"], a["caption"]) == (
            b["question"], b["choices"], b["answer"], b["caption"])


def test_cached_exports_are_keyed_by_settings_and_generator_version(monkeypatch):
    config = SynthConfig(train_size=6, validation_size=0, test_size=0)
    digest = config.digest()
    assert digest == SynthConfig(train_size=6, validation_size=0, test_size=0).digest()
    assert digest != SynthConfig(train_size=7, validation_size=0, test_size=0).digest()
    # a generator that makes other examples from the same settings must not reuse an older export
    monkeypatch.setattr(synth.splits, "GENERATOR_VERSION", synth.GENERATOR_VERSION + 1)
    assert config.digest() != digest


def test_splits_and_seeds_differ():
    train, validation = generate_split(CONFIG, "train"), generate_split(CONFIG, "validation")
    test = make_example(CONFIG, "test", "note", 0)
    hashes = {ex["audio"].tobytes() for ex in train}
    assert not hashes & {ex["audio"].tobytes() for ex in validation}
    assert test["audio"].tobytes() not in hashes
    other_seed = generate_split(SynthConfig(seed=8, train_size=36), "train")
    assert not hashes & {ex["audio"].tobytes() for ex in other_seed}
    assert len(hashes) == len(train)


def test_examples_can_be_built_alone(test_split):
    ex = test_split[17]
    alone = make_example(CONFIG, "test", ex["category"], int(ex["id"].rsplit("-", 1)[1]))
    assert alone["audio"].tobytes() == ex["audio"].tobytes() and alone["choices"] == ex["choices"]


def test_answers_and_letters_balanced(test_split):
    sizes = collections.Counter(ex["category"] for ex in test_split)
    assert sizes == {c: PER_CATEGORY for c in CONFIG.categories}
    for category in CONFIG.categories:
        examples = _of(test_split, category)
        answers = CATEGORIES[category].answers(CONFIG)
        counts = collections.Counter(ex["answer"] for ex in examples)
        assert set(counts) == set(answers)
        assert max(counts.values()) - min(counts.values()) <= 1, (category, counts)
        letters = collections.Counter(ex["answer_letter"] for ex in examples)
        assert max(letters.values()) - min(letters.values()) <= 1, (category, letters)
        for ex in examples:
            assert len(ex["choices"]) == min(CONFIG.num_choices, len(answers))
            assert len(set(ex["choices"])) == len(ex["choices"]) and set(ex["choices"]) <= set(answers)
            assert ex["choices"][LETTERS.index(ex["answer_letter"])] == ex["answer"]
            assert ex["choices"][ex["answer_index"]] == ex["answer"]
            assert ex["question"] in CATEGORIES[category].questions and ex["caption"]


CAPTION_WORDS = {
    "contour": {"it rises": "rises", "it falls": "falls", "it stays the same": "steady"},
    "loudness": {"it gets louder": "louder", "it gets softer": "softer", "it stays the same": "equally loud"},
    "sound_type": {"a hum": "hum", "beeps": "beeps", "a chirp": "chirp", "a click train": "clicks",
                   "a noise burst": "noise"},
    "count": {"1": "one beep", "2": "two beeps", "3": "three beeps", "4": "four beeps", "5": "five beeps"},
}


def test_captions_describe_the_answer(test_split):
    for ex in test_split:
        caption, answer, category = ex["caption"], ex["answer"], ex["category"]
        if category == "note":
            expected = f"note {answer} ("
        elif category == "vowel":
            expected = f"the vowel {ex['vowel']} sung"
        else:
            expected = CAPTION_WORDS[category][answer]
        assert expected in caption, (caption, answer)


def test_audio_is_clean(test_split):
    for ex in test_split:
        audio = ex["audio"]
        assert audio.dtype == np.float32 and audio.ndim == 1 and ex["sampling_rate"] == 16000
        assert np.isfinite(audio).all() and 0.05 < np.abs(audio).max() <= 1.0
        assert CONFIG.min_seconds * 16000 - 1 <= len(audio) <= CONFIG.max_seconds * 16000 + 1


def test_config_checks_and_yaml_lists():
    config = SynthConfig(categories=["note", "count"], notes=["A3", "C#4"], peak_db=[-10, -3])
    assert config.categories == ("note", "count") and config.peak_db == (-10.0, -3.0)
    assert note_to_hz("A4") == 440.0 and abs(note_to_hz("Db4") - note_to_hz("C#4")) < 1e-9
    with pytest.raises(ValueError, match="unknown synth categories"):
        SynthConfig(categories=("note", "nope"))
    with pytest.raises(ValueError, match="not a note"):
        SynthConfig(notes=("A4", "H2"))
    with pytest.raises(ValueError, match="do not fit"):
        SynthConfig(max_beeps=9, min_seconds=0.5, max_seconds=1.0)


def test_new_category_needs_only_a_function():
    def synthesize(rng, answer, config, n):
        t = np.arange(n) / config.sample_rate
        return np.sin(2 * np.pi * {"low": 200.0, "high": 2000.0}[answer] * t), {"band": answer}, f"a {answer} sine"

    synth.register_category(Category("band", lambda config: ["low", "high"], ("Low or high?",), synthesize))
    try:
        examples = generate_split(SynthConfig(categories=("band", "note"), train_size=8), "train")
        band = _of(examples, "band")
        assert len(band) == 4 and sorted(ex["answer"] for ex in band) == ["high", "high", "low", "low"]
        assert all(ex["band"] == ex["answer"] for ex in band)
    finally:
        del CATEGORIES["band"]


# --- labels are acoustically right -----------------------------------------------------------------------


def test_note_f0_within_30_cents(test_split):
    for ex in _of(test_split, "note"):
        f0, voiced = _f0_track(ex["audio"], ex["sampling_rate"])
        estimate = np.median(f0[voiced])
        assert abs(_cents(estimate, note_to_hz(ex["answer"]))) < 30, (ex["id"], ex["answer"], estimate)


def test_contour_start_vs_end_pitch(test_split):
    for ex in _of(test_split, "contour"):
        f0, voiced = _f0_track(ex["audio"], ex["sampling_rate"])
        f0 = f0[voiced]
        edge = max(1, len(f0) // 6)
        change = _cents(np.median(f0[-edge:]), np.median(f0[:edge])) / 100  # semitones
        expected = {"it rises": change > 2, "it falls": change < -2, "it stays the same": abs(change) < 1}
        assert expected[ex["answer"]], (ex["id"], ex["answer"], change)


def test_loudness_start_vs_end_rms(test_split):
    for ex in _of(test_split, "loudness"):
        db = _frames_db(ex["audio"], frame=800, hop=200)
        n = len(db)
        change = np.mean(db[int(0.8 * n) : int(0.95 * n)]) - np.mean(db[int(0.05 * n) : int(0.2 * n)])
        expected = {"it gets louder": change > 6, "it gets softer": change < -6, "it stays the same": abs(change) < 4}
        assert expected[ex["answer"]], (ex["id"], ex["answer"], change)


def _count_onsets(audio):
    db = _frames_db(audio, frame=160, hop=80)  # 10 ms frames, 5 ms hop
    on = db > db.max() - 20
    return int(on[0]) + int(np.sum(on[1:] & ~on[:-1]))


def test_count_matches_onsets(test_split):
    for ex in _of(test_split, "count"):
        assert _count_onsets(ex["audio"]) == int(ex["answer"]) == ex["n_beeps"], ex["id"]


def _dominant_hz(audio, sr, frame=1024, hop=256):
    """Frequency of the strongest FFT bin per frame, and a mask of the loud frames."""
    frames = _frames(audio.astype(np.float64), frame, hop)
    power = np.abs(np.fft.rfft(frames * np.hanning(frame), axis=1)) ** 2
    loud = power.sum(axis=1) > 0.1 * power.sum(axis=1).max()
    return np.argmax(power, axis=1) * sr / frame, loud


def test_sound_types_look_like_their_names(test_split):
    for ex in _of(test_split, "sound_type"):
        audio, sr, kind = ex["audio"], ex["sampling_rate"], ex["answer"]
        peak, loud = _dominant_hz(audio, sr)
        if kind == "a hum":
            assert np.median(peak[loud]) < 150, ex["id"]
        elif kind == "a chirp":  # the first and last loud frames lie more than an octave apart
            assert abs(np.log2(peak[loud][-1] / peak[loud][0])) > 1, ex["id"]
        elif kind == "beeps":  # 2-5 beeps of one steady pitch
            assert 2 <= _count_onsets(audio) <= 5 and np.ptp(peak[loud]) <= 2 * sr / 1024, ex["id"]
        elif kind == "a click train":
            assert _count_onsets(audio) >= 3, ex["id"]


# Hillenbrand et al. (1995), adult male averages of /i/ heed, /e/ hayed, /a/ hod, /o/ hoed, /u/ who'd.
REFERENCE_F1_F2 = {"i": (342, 2322), "e": (476, 2089), "a": (768, 1333), "o": (497, 910), "u": (378, 997)}


def _first_two_formants(audio, sr):
    """Median F1, F2 over the loud frames, from the roots of an order-10 LPC at 8 kHz."""
    y = resample_poly(audio.astype(np.float64), 8000, sr)
    y = np.append(y[0], y[1:] - 0.7 * y[:-1])  # pre-emphasis: flatten the source tilt
    frames = _frames(y, 400, 200)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    found = []
    for frame in frames[rms > 0.3 * rms.max()]:
        frame = frame * np.hamming(len(frame))
        acf = np.correlate(frame, frame, "full")[len(frame) - 1 : len(frame) + 10]
        lpc = np.concatenate([[1.0], -solve_toeplitz(acf[:10], acf[1:11])])  # autocorrelation method, order 10
        roots = np.roots(lpc)
        roots = roots[np.imag(roots) > 0]
        freqs = np.angle(roots) * 8000 / (2 * np.pi)
        bandwidths = -8000 / np.pi * np.log(np.abs(roots))
        peaks = np.sort(freqs[(freqs > 150) & (freqs < 3500) & (bandwidths < 400)])
        if len(peaks) >= 2:
            found.append(peaks[:2])
    return np.median(np.asarray(found), axis=0)


def test_vowel_formants_nearest_their_reference(test_split):
    hits = []
    for ex in _of(test_split, "vowel"):
        f1, f2 = _first_two_formants(ex["audio"], ex["sampling_rate"])
        dist = {v: np.hypot(np.log(f1 / r1), np.log(f2 / r2)) for v, (r1, r2) in REFERENCE_F1_F2.items()}
        hits.append(min(dist, key=dist.get) == ex["vowel"])
    assert np.mean(hits) >= 0.8, np.mean(hits)


# --- export ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("subtype, tolerance", [("FLOAT", 0.0), ("PCM_16", 1.0 / 32768)])
def test_manifest_round_trip(tmp_path, subtype, tolerance):
    examples = generate_split(CONFIG, "validation")
    manifest = synth.write_manifest(examples, tmp_path, subtype=subtype)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [r["id"] for r in rows] == [ex["id"] for ex in examples]
    assert not list(tmp_path.rglob("*.tmp"))
    for row, ex in zip(rows, examples):
        for key in ("question", "choices", "answer", "answer_letter", "category", "caption"):
            assert row[key] == ex[key]
        audio, sr = sf.read(tmp_path / row["audio"], dtype="float32")
        assert sr == ex["sampling_rate"] and audio.shape == ex["audio"].shape
        assert np.max(np.abs(audio - ex["audio"])) <= tolerance


def test_to_dataset_keeps_audio_and_fields():
    examples = generate_split(CONFIG, "validation")
    ds = synth.to_dataset(examples)
    assert len(ds) == len(examples)
    columns = {"id", "question", "choices", "answer", "answer_letter", "caption", "f0_hz", "n_beeps"}
    assert columns <= set(ds.column_names)
    row = ds[3]
    assert row["audio"]["sampling_rate"] == 16000
    np.testing.assert_array_equal(np.asarray(row["audio"]["array"], dtype=np.float32), examples[3]["audio"])
    assert row["choices"] == examples[3]["choices"]
