"""The offline speech experts (the ``speech`` extra) on real speech: espeak-ng's, whose word timing and voices are
known, and a recording no one here made (CPython's ``Lib/test/audiotest.au``, where the Python has its test suite).

Each runs with the model or analysis code its wheel ships; nothing is downloaded. Physics checked: speech activity
where the synthesizer says the words are, eGeMAPS F0 higher for a high voice, speaker embeddings of two voices
farther apart than two sentences of one voice, Praat's F1/F2 of /i/ and /a/ in the right order.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("espeakng_loader", reason="needs the 'speech' extra")
for _module in ("silero_vad", "resemblyzer", "opensmile", "parselmouth"):
    pytest.importorskip(_module, reason="needs the 'speech' extra")

from coat import extras  # noqa: E402
from coat.data.sources import ExampleListSource, resample  # noqa: E402
from coat.data.speech import synthesize  # noqa: E402
from coat.experts import (  # noqa: E402
    EGeMAPSExpert,
    FormantExpert,
    SpeakerExpert,
    SpeechActivityExpert,
    TargetCache,
    build_expert,
    compute_targets,
)
from coat.experts.compute import pad_batch  # noqa: E402
from coat.experts.egemaps import FRAME_LLDS, VOICED_LLDS, denormalise  # noqa: E402
from coat.experts.formants import bark_to_hz, hz_to_bark  # noqa: E402

SR = 16000
SENTENCE = "My sister opened the garden gate again."



def one(expert, audio):
    return expert(*pad_batch([audio]))[0]


def padded(audio, seconds=0.5):
    pad = np.zeros(int(seconds * SR), np.float32)
    return np.concatenate([pad, audio, pad])


def check_interface(expert, clips, atol=1e-4):
    """Every target: float32, (spec.num_frames(length), dim), finite, valid for its kind; batched = one at a time;
    the fingerprint is JSON."""
    out = expert(*pad_batch(clips))
    for clip, targets in zip(clips, out):
        assert set(targets) == {s.name for s in expert.specs()}
        for spec in expert.specs():
            t = targets[spec.name]
            assert t.dtype == np.float32 and t.shape == (spec.num_frames(len(clip)), spec.dim), spec.name
            assert np.isfinite(t).all(), spec.name
            if spec.kind == "multilabel":
                assert ((t >= 0) & (t <= 1)).all(), spec.name
        alone = one(expert, clip)
        for name, value in targets.items():
            np.testing.assert_allclose(value, alone[name], atol=atol, err_msg=name)
    json.dumps(expert.fingerprint_params())
    return out


@pytest.fixture(scope="module")
def speech_clips():
    """Three clips of different lengths and voices, 16 kHz, with silence around."""
    return [padded(synthesize(SENTENCE, variant="m3").audio, 0.3),
            padded(synthesize("Hello.", variant="f1").audio, 0.1),
            padded(synthesize("The dog found the red box after lunch.", variant="steph", rate=220).audio, 0.2)]


# --- speech activity (Silero VAD) ------------------------------------------------------------------------------


def _crossings(probs, frame_s, threshold=0.5):
    """Times where the probability crosses ``threshold``, interpolated between frame centres."""
    out = []
    for i in range(1, len(probs)):
        if (probs[i] > threshold) != (probs[i - 1] > threshold):
            out.append((i - 0.5 + (threshold - probs[i - 1]) / (probs[i] - probs[i - 1])) * frame_s)
    return out


@pytest.mark.parametrize("variant", [None, "m3", "f1", "grandma"])
def test_speech_activity_follows_the_synthesizers_word_timing(variant):
    """Four words 400 ms apart, 0.5 s of silence around: one speech segment per word, each starting within 50 ms of
    the word's first sounding phoneme (measured over ten voices: at most 36 ms, median 2 ms). Silero lets go of a
    word 0-90 ms after its sound stops (median 42 ms over the ten voices; the sound itself stops at the
    synthesizer's word end, to the 10 ms frame), so an end is checked to be no more than 50 ms early or 100 ms
    late."""
    expert = SpeechActivityExpert()
    speech = synthesize("yellow lemon morning alone", variant=variant, word_gap_ms=400)
    audio = padded(speech.audio)
    probs = one(expert, audio)["speech_activity"][:, 0]
    frame_s = 512 / SR
    edges = _crossings(probs, frame_s)
    words = [(0.5 + w.start / SR, 0.5 + w.end / SR) for w in speech.words]
    assert len(words) == 4 and len(edges) == 2 * len(words), (edges, words)
    starts, ends = np.array(edges[0::2]), np.array(edges[1::2])
    assert np.abs(starts - [a for a, _ in words]).max() <= 0.050
    late = ends - [b for _, b in words]
    assert late.min() >= -0.050 and late.max() <= 0.100, late
    centres = (np.arange(len(probs)) + 0.5) * frame_s
    far = np.all([(centres < a - 0.15) | (centres > b + 0.15) for a, b in words], axis=0)
    assert probs[far].max() < 0.5  # the silence between and around the words is not speech


def test_speech_activity_interface(speech_clips):
    threads = torch.get_num_threads()
    expert = build_expert("speech_activity")
    assert isinstance(expert, SpeechActivityExpert)
    (spec,) = expert.specs()
    assert (spec.name, spec.frame_rate, spec.dim, spec.kind, spec.clip_level) == ("speech_activity", 31.25, 1,
                                                                                   "multilabel", False)
    out = check_interface(expert, speech_clips)
    assert torch.get_num_threads() == threads  # silero_vad's import would set one thread for the whole process
    assert out[0]["speech_activity"].max() > 0.9
    assert one(expert, np.zeros(SR, np.float32))["speech_activity"].max() < 0.1
    assert expert.fingerprint_params()["params"]["silero_vad"] == extras.version("silero-vad", "speech", "test")
    narrow = SpeechActivityExpert(sample_rate=8000)
    audio8k = resample(speech_clips[0], SR, 8000)
    probs8k = one(narrow, audio8k)["speech_activity"]
    assert narrow.specs()[0].frame_rate == 31.25 and probs8k.shape == (int(np.ceil(len(audio8k) / 256)), 1)
    assert probs8k.max() > 0.9
    with pytest.raises(ValueError, match="8000 or 16000"):
        SpeechActivityExpert(sample_rate=22050)


# --- speaker (Resemblyzer) -------------------------------------------------------------------------------------


def test_two_voices_are_farther_apart_than_two_sentences_of_one_voice():
    expert = SpeakerExpert()
    sentences = ("The weather is lovely today.", "Please bring me a glass of water.")
    for a, b in (("m1", "f1"), ("edward", "steph")):
        clips = [synthesize(s, variant=v).audio for v in (a, b) for s in sentences]
        e = np.stack([t["speaker"][0] for t in expert(*pad_batch(clips))])
        same = min(e[0] @ e[1], e[2] @ e[3])
        different = max(e[i] @ e[j] for i in (0, 1) for j in (2, 3))
        assert same > different + 0.1, (a, b, same, different)


def test_speaker_interface(speech_clips):
    expert = build_expert("speaker")
    (spec,) = expert.specs()
    assert (spec.name, spec.dim, spec.kind, spec.clip_level) == ("speaker", 256, "embedding", True)
    clips = [*speech_clips, np.zeros(SR // 2, np.float32), speech_clips[0][:4000]]  # silence and 0.25 s
    out = check_interface(expert, clips, atol=1e-5)
    for targets in out:
        embedding = targets["speaker"][0]
        assert abs(np.linalg.norm(embedding) - 1) < 1e-5 and embedding.min() >= 0
    assert SpeakerExpert(trim_silence=False).fingerprint_params() != expert.fingerprint_params()
    with pytest.raises(ValueError, match="rate"):
        SpeakerExpert(rate=0.1)


# --- eGeMAPS (openSMILE) ---------------------------------------------------------------------------------------


def _median_f0_hz(targets):
    voiced = targets["egemaps_voicing"][:, 0] > 0.5
    semitones = denormalise("F0semitoneFrom27.5Hz_sma3nz", targets["egemaps_voiced"][voiced, 0])
    return float(27.5 * 2 ** (np.median(semitones) / 12))


def test_egemaps_f0_separates_high_and_low_voices():
    expert = EGeMAPSExpert()
    low = one(expert, synthesize(SENTENCE, variant="m3", pitch=20).audio)
    high = one(expert, synthesize(SENTENCE, variant="f1", pitch=80).audio)
    f_low, f_high = _median_f0_hz(low), _median_f0_hz(high)
    assert 60 < f_low < 130 and 170 < f_high < 400 and 12 * np.log2(f_high / f_low) > 8, (f_low, f_high)
    # the same voice a little higher: espeak-ng's pitch 30 -> 70
    lower, higher = (one(expert, synthesize(SENTENCE, variant="edward", pitch=p).audio) for p in (30, 70))
    assert _median_f0_hz(higher) > 1.15 * _median_f0_hz(lower)


def test_egemaps_interface(speech_clips):
    expert = build_expert("egemaps")
    specs = {s.name: s for s in expert.specs()}
    assert {n: (s.dim, s.frame_rate, s.kind, s.weight_by) for n, s in specs.items()} == {
        "egemaps": (10, 100.0, "regression", None),
        "egemaps_voiced": (15, 100.0, "regression", "egemaps_voicing"),
        "egemaps_voicing": (1, 100.0, "multilabel", None),
    }
    assert len(FRAME_LLDS) == 10 and len(VOICED_LLDS) == 15
    clips = [*speech_clips, speech_clips[1][:800]]  # and 50 ms: shorter than openSMILE's F0 window
    out = check_interface(expert, clips, atol=1e-5)
    targets = out[0]
    voiced = targets["egemaps_voicing"][:, 0] > 0.5
    assert 0.2 < voiced.mean() < 0.9
    assert not voiced[:25].any() and not voiced[-25:].any()  # the 0.3 s of silence at both ends
    assert np.all(targets["egemaps_voiced"][~voiced] == 0)  # undefined values carry no weight and are 0
    assert np.abs(targets["egemaps"]).max() < 10 and np.abs(targets["egemaps_voiced"]).max() < 15  # the scale
    loudness = denormalise("Loudness_sma3", targets["egemaps"][:, 0])
    assert loudness[30:-30].max() > 0.5 > loudness[:20].max()
    f1 = denormalise("F1frequency_sma3nz", targets["egemaps_voiced"][voiced, VOICED_LLDS.index("F1frequency_sma3nz")])
    assert 250 < np.median(f1) < 900


# --- formants (Praat) ------------------------------------------------------------------------------------------


def _vowel_formants(expert, word, variant):
    """Median F1, F2 (Hz) over the voiced middle half of the vowel of an hVd word."""
    speech = synthesize(word + ".", variant=variant)
    vowel = next(p for p in speech.phonemes if p.name.startswith("'"))
    targets = one(expert, speech.audio)
    frames = np.arange(len(targets["formants"])) * 160
    quarter = (vowel.end - vowel.start) // 4
    sel = (frames >= vowel.start + quarter) & (frames <= vowel.end - quarter) & (targets["formant_voicing"][:, 0] > 0)
    assert sel.sum() >= 3, (word, variant)
    return bark_to_hz(np.median(targets["formants"][sel, :2], 0))


@pytest.mark.parametrize("variant", [None, "m1", "f1", "steph"])
def test_formants_of_i_and_a_are_in_the_right_order(variant):
    """/i/ (heed) is close and front: low F1, high F2; /a/ (hod, espeak-ng's open back vowel) is open and back."""
    expert = FormantExpert()
    (f1_i, f2_i), (f1_a, f2_a) = _vowel_formants(expert, "heed", variant), _vowel_formants(expert, "hod", variant)
    assert f1_a > f1_i + 200 and f2_i > f2_a + 700, (variant, f1_i, f2_i, f1_a, f2_a)
    assert f1_i < 450 and f2_i > 1900 and f1_a > 550 and f2_a < 1500


def test_formant_interface(speech_clips):
    expert = build_expert("formants")
    specs = {s.name: s for s in expert.specs()}
    assert {n: (s.dim, s.frame_rate, s.kind, s.weight_by) for n, s in specs.items()} == {
        "formants": (3, 100.0, "regression", "formant_voicing"),
        "formant_voicing": (1, 100.0, "multilabel", None),
    }
    clips = [*speech_clips, speech_clips[1][:200]]  # and 12 ms: shorter than Praat's window, no formant at all
    out = check_interface(expert, clips)
    targets = out[0]
    valid = targets["formant_voicing"][:, 0] > 0.5
    assert 0.2 < valid.mean() < 0.9 and not valid[:25].any() and not valid[-25:].any()
    hz = bark_to_hz(targets["formants"][valid])
    assert np.all(np.diff(hz, axis=1) > 0)  # F1 < F2 < F3 where they are defined
    assert out[-1]["formant_voicing"].max() == 0
    np.testing.assert_allclose(bark_to_hz(hz_to_bark([300.0, 1000.0, 2500.0])), [300, 1000, 2500])
    assert FormantExpert(max_formant_hz=5000).fingerprint_params() != expert.fingerprint_params()
    with pytest.raises(ValueError, match="pitch_floor"):
        FormantExpert(pitch_floor=300, pitch_ceiling=100)


# --- together, through the target cache ----------------------------------------------------------------------


def test_speech_experts_through_the_target_cache(tmp_path, speech_clips):
    examples = [{"id": f"s{i}", "audio": clip, "sampling_rate": SR} for i, clip in enumerate(speech_clips)]
    examples.append({"id": "s8k", "audio": resample(speech_clips[0], SR, 8000), "sampling_rate": 8000})
    experts = [build_expert(name) for name in ("speech_activity", "speaker", "egemaps", "formants")]
    runs = compute_targets(ExampleListSource(examples), experts, tmp_path / "cache", progress=False)
    for expert in experts:
        run = runs[expert.name]
        assert run.computed == run.cached == len(examples)
        cache = TargetCache.open(run.path)
        direct = one(expert, speech_clips[2])
        for name, value in cache["s2"].items():  # kept as float16 (issue 17): 11 significant bits
            np.testing.assert_allclose(value, direct[name], rtol=2 ** -11, atol=1e-4, err_msg=name)
        resampled = cache["s8k"]
        assert all(resampled[s.name].shape[0] == s.num_frames(len(speech_clips[0])) for s in expert.specs())
    again = compute_targets(ExampleListSource(examples), experts, tmp_path / "cache", progress=False)
    assert all(run.reused and run.computed == 0 for run in again.values())


# --- a recording ------------------------------------------------------------------------------------------------


def _cpython_recording():
    spec = importlib.util.find_spec("test")
    path = os.path.join(os.path.dirname(spec.origin), "audiotest.au") if spec and spec.origin else ""
    if not os.path.isfile(path):
        pytest.skip("this Python has no test suite with Lib/test/audiotest.au")
    import soundfile as sf

    audio, rate = sf.read(path, dtype="float32")
    return resample(audio, rate, SR)


def test_the_experts_on_a_recording_no_one_here_made():
    """CPython's audiotest.au: 3.5 s of 8 kHz mu-law, a man speaking for the first 2.3 s, then a short whistle."""
    audio = _cpython_recording()
    probs = one(SpeechActivityExpert(), audio)["speech_activity"][:, 0]
    centres = (np.arange(len(probs)) + 0.5) * 512 / SR
    assert (probs[(centres > 0.1) & (centres < 2.2)] > 0.5).mean() > 0.9 and probs[centres > 3.2].max() < 0.5
    f0 = _median_f0_hz(one(EGeMAPSExpert(), audio[: int(2.3 * SR)]))
    assert 90 < f0 < 180, f0  # an adult man's voice
    formants = one(FormantExpert(), audio[: int(2.3 * SR)])
    valid = formants["formant_voicing"][:, 0] > 0.5
    f1, f2, f3 = np.median(bark_to_hz(formants["formants"][valid]), 0)
    assert valid.mean() > 0.3 and 300 < f1 < 700 < 1000 < f2 < 2000 < f3 < 3000, (f1, f2, f3)
    speaker = SpeakerExpert()
    half = int(1.15 * SR)
    first, second = (one(speaker, part)["speaker"][0] for part in (audio[:half], audio[half : int(2.3 * SR)]))
    synthetic = [one(speaker, synthesize("The weather is lovely today.", variant=v).audio)["speaker"][0]
                 for v in ("m1", "edward", "klatt3")]
    assert first @ second > max(first @ s for s in synthetic) + 0.1  # his two halves sound like one speaker


# --- packaging --------------------------------------------------------------------------------------------------


def test_a_missing_speech_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "resemblyzer", None)  # what an install without the extra looks like
    monkeypatch.setitem(sys.modules, "silero_vad", None)
    for name in ("speaker", "speech_activity"):
        with pytest.raises(extras.MissingExtraError, match=r"'speech' extra.*pip install 'coat-lalm\[speech\]'"):
            build_expert(name)(*pad_batch([np.zeros(SR, np.float32)]))
    with pytest.raises(extras.MissingExtraError, match="no-such-package"):
        extras.version("no-such-package", "speech", "a test")
    from coat.data.synth import SynthConfig

    monkeypatch.setitem(sys.modules, "espeakng_loader", None)
    SynthConfig(categories=["tones"])  # tones need nothing of the extra
    with pytest.raises(extras.MissingExtraError, match=r"espeak-ng \(the speech categories .*coat-lalm\[speech\]"):
        SynthConfig(categories=["speech_word"])


def test_importing_coat_loads_no_speech_library():
    code = ("import sys, coat.experts, coat.data.synth; print([m for m in ('silero_vad', 'resemblyzer', 'opensmile', "
            "'parselmouth', 'espeakng_loader', 'webrtcvad') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
