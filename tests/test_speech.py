"""Speech made offline with espeak-ng (``coat.data.speech``) and the spoken categories of the synthetic benchmark.

Labels are checked against the audio with tools that did not make it: Praat's pitch tracker (parselmouth) for pitch
and intonation, RMS envelopes for rate and word timing, Resemblyzer for which voice speaks.
"""

import collections

import numpy as np
import pytest

pytest.importorskip("espeakng_loader", reason="needs the 'speech' extra")
parselmouth = pytest.importorskip("parselmouth", reason="needs the 'speech' extra")

from coat.data import synth  # noqa: E402
from coat.data.speech import Speech, glide_pitch, synthesize, voice_variants  # noqa: E402
from coat.data.speech_categories import HVD_WORDS, speech_words  # noqa: E402
from coat.data.synth import CATEGORIES, SynthConfig, generate_split, make_example, to_dataset, write_manifest  # noqa: E402

SR = 16000
PER_CATEGORY = 8
CONFIG = SynthConfig(seed=3, categories=("speech",), train_size=12, validation_size=6, test_size=6 * PER_CATEGORY)


@pytest.fixture(scope="module")
def speech_split():
    return generate_split(CONFIG, "test")


def _of(examples, category):
    return [ex for ex in examples if ex["category"] == category]


def _db(audio, hop=160):
    """RMS level per 10 ms in dB re the clip's loudest frame."""
    x = audio[: len(audio) // hop * hop].astype(np.float64).reshape(-1, hop)
    db = 20 * np.log10(np.sqrt((x**2).mean(1)) + 1e-12)
    return db - db.max()


def _f0(audio, floor=50.0):
    """Praat's pitch track: frame times (s) and F0 in Hz (0 where unvoiced)."""
    pitch = parselmouth.Sound(audio.astype(np.float64), sampling_frequency=SR).to_pitch(
        time_step=0.01, pitch_floor=floor, pitch_ceiling=600.0)
    return pitch.xs(), pitch.selected_array["frequency"]


def _glide_st(audio, start_s, end_s):
    """Semitones the pitch moves over ``[start_s, end_s]``: a line fitted to log F0 of the voiced frames (frames
    more than 5 semitones from the median, octave errors, left out) times its span."""
    t, f = _f0(audio)
    sel = (t >= start_s) & (t <= end_s) & (f > 0)
    t, st = t[sel], 12 * np.log2(f[sel])
    keep = np.abs(st - np.median(st)) < 5
    t, st = t[keep], st[keep]
    return float(np.polyfit(t, st, 1)[0] * (t[-1] - t[0]))


# --- espeak-ng ------------------------------------------------------------------------------------------------


def test_words_are_where_the_sound_is():
    speech = synthesize("apple river window", variant="m3", word_gap_ms=300)
    assert isinstance(speech, Speech) and speech.sample_rate == SR and speech.audio.dtype == np.float32
    assert [w.text for w in speech.words] == ["apple", "river", "window"]
    db = _db(speech.audio)
    for word in speech.words:
        assert 0 <= word.start < word.end <= len(speech.audio)
        middle = db[word.start // 160 : word.end // 160]
        assert np.median(middle) > -30, word  # the word's span sounds
    for before, after in zip(speech.words, speech.words[1:]):
        gap = db[before.end // 160 + 2 : after.start // 160 - 2]
        assert len(gap) >= 15 and gap.max() < -60, (before, after)  # 300 ms gaps are silent
    assert speech.speech_spans()[0][0] == speech.words[0].start


def test_the_same_call_gives_the_same_samples_whatever_was_said_before():
    # libespeak-ng's pitch flutter kept its phase between calls: loaded afresh each time, it starts the same
    first = synthesize("The cat sat on the mat.", variant="f1")
    synthesize("Something else entirely, with another voice.", variant="whisper", pitch=10)
    again = synthesize("The cat sat on the mat.", variant="f1")
    assert first.audio.tobytes() == again.audio.tobytes() and first.words == again.words
    breathy = synthesize("Hello there.", variant="whisper")
    assert breathy.audio.tobytes() == synthesize("Hello there.", variant="whisper").audio.tobytes()
    assert breathy.audio.tobytes() != synthesize("Hello there.", variant="whisper", seed=1).audio.tobytes()


def test_parameters_do_what_they_say():
    text = "My sister opened the garden gate."
    slow, fast = synthesize(text, rate=100), synthesize(text, rate=300)
    assert slow.duration_s > 2 * fast.duration_s
    low, high = synthesize(text, pitch=10), synthesize(text, pitch=90)
    f_low, f_high = (np.median(f[f > 0]) for _, f in (_f0(low.audio), _f0(high.audio)))
    assert f_high > 1.4 * f_low
    male, female = _f0(synthesize(text, variant="m1").audio)[1], _f0(synthesize(text, variant="f1").audio)[1]
    assert np.median(female[female > 0]) > 1.5 * np.median(male[male > 0])
    quiet, loud = synthesize(text, volume=50), synthesize(text, volume=150)
    assert 2.0 < np.sqrt(np.mean(loud.audio**2) / np.mean(quiet.audio**2)) < 4.0
    assert synthesize(text, sample_rate=None).sample_rate == 22050
    assert {"m1", "f1", "klatt", "whisper"} <= set(voice_variants())


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="no voice variant 'nobody'; variants: .*m1"):
        synthesize("hello", variant="nobody")
    with pytest.raises(ValueError, match="no voice 'xx-nowhere'"):
        synthesize("hello", voice="xx-nowhere")
    with pytest.raises(ValueError, match="rate must be in 80..450"):
        synthesize("hello", rate=20)
    with pytest.raises(ValueError, match="empty"):
        synthesize("   ")


def test_glide_pitch_moves_the_last_word_up_or_down_and_keeps_the_timing():
    speech = synthesize("The dog found the yellow balloon.", variant="edward", pitch=60)
    last = speech.words[-1]
    span = (last.start / SR, last.end / SR)
    up, down = glide_pitch(speech, last.start, last.end, 6), glide_pitch(speech, last.start, last.end, -6)
    assert len(up.audio) == len(down.audio) == len(speech.audio) and up.words == speech.words
    assert _glide_st(up.audio, *span) > 3 > -3 > _glide_st(down.audio, *span)
    # before the last word the intonation is espeak-ng's own
    t, f_orig = _f0(speech.audio)
    before = (t < span[0] - 0.05) & (f_orig > 0)
    f_up = _f0(up.audio)[1]
    assert np.median(np.abs(12 * np.log2(f_up[before & (f_up > 0)] / f_orig[before & (f_up > 0)]))) < 0.3


# --- the spoken categories ------------------------------------------------------------------------------------


TONES = ("note", "contour", "loudness", "sound_type", "vowel", "count")
SPEECH = ("speech_pitch", "speech_rate", "speech_voice", "speech_word", "speech_count", "speech_rise")


def test_category_groups_and_the_default():
    assert synth.category_groups() == {"tones": TONES, "speech": SPEECH}
    assert SynthConfig().categories == TONES  # the default stays the tone benchmark
    assert SynthConfig(categories=["tones"]).categories == TONES
    assert SynthConfig(categories=["tones", "speech", "speech_word"]).categories == TONES + SPEECH
    with pytest.raises(ValueError, match="unknown synth categories \\['speeches'\\]"):
        SynthConfig(categories=["speeches"])
    assert SynthConfig(categories=["speech"]).digest() != SynthConfig(categories=["speech_word"]).digest()
    # a group is a name like a category's: the two cannot clash
    note = CATEGORIES["note"]
    for name, group in (("speech", "tones"), ("tones", "extra"), ("extra", "note")):
        with pytest.raises(ValueError, match="cannot share a name"):
            synth.register_category(synth.Category(name, note.answers, note.questions, note.synthesize, group=group))
    assert synth.category_groups() == {"tones": TONES, "speech": SPEECH}


def test_speech_examples_are_deterministic_balanced_and_split(speech_split):
    again = generate_split(CONFIG, "test")
    assert [ex["audio"].tobytes() for ex in again] == [ex["audio"].tobytes() for ex in speech_split]
    ex = speech_split[9]
    alone = make_example(CONFIG, "test", ex["category"], int(ex["id"].rsplit("-", 1)[1]))
    assert alone["audio"].tobytes() == ex["audio"].tobytes() and alone["choices"] == ex["choices"]
    train, validation = generate_split(CONFIG, "train"), generate_split(CONFIG, "validation")
    hashes = {e["audio"].tobytes() for e in train}
    assert not hashes & {e["audio"].tobytes() for e in validation + speech_split}
    for category in SPEECH:
        examples = _of(speech_split, category)
        assert len(examples) == PER_CATEGORY
        counts = collections.Counter(e["answer"] for e in examples)
        answers = CATEGORIES[category].answers(CONFIG)
        assert max(counts.values()) - min(counts.values()) <= 1 and set(counts) <= set(answers), (category, counts)
        for e in examples:
            assert e["choices"][e["answer_index"]] == e["answer"] and e["question"] in CATEGORIES[category].questions
            assert e["audio"].dtype == np.float32 and e["duration_s"] == len(e["audio"]) / SR
            assert len(e["word_starts_s"]) == len(e["word_ends_s"]) >= 1
            assert 0.04 < e["word_starts_s"][0] and e["word_ends_s"][-1] < e["duration_s"] - 0.04  # silence around
            assert CONFIG.min_seconds <= e["duration_s"] <= CONFIG.max_seconds  # as long as a tone clip may be


def test_speech_that_cannot_fit_in_max_seconds_is_a_clear_error():
    longer = SynthConfig(categories=["speech_rate"], test_size=8, max_seconds=4.0, min_seconds=0.5)
    words = [len(e["text"].split()) for e in generate_split(longer, "test")]
    shorter = SynthConfig(categories=["speech_rate"], test_size=8, max_seconds=2.0, min_seconds=0.5)
    assert sum(words) > sum(len(e["text"].split()) for e in generate_split(shorter, "test"))  # longer sentences fit
    with pytest.raises(ValueError, match="speech_count: the shortest speech .* raise data.synth.max_seconds"):
        generate_split(SynthConfig(categories=["speech_count"], test_size=10, max_seconds=0.6, min_seconds=0.5),
                       "test")


def test_speech_labels_are_right_acoustically(speech_split):
    # pitch: Praat's median F0 of every high voice is above every low one's, with room between
    f0 = {True: [], False: []}
    for e in _of(speech_split, "speech_pitch"):
        f = _f0(e["audio"])[1]
        f0[e["answer"] == "a high voice"].append(np.median(f[f > 0]))
    assert min(f0[True]) > 170 and max(f0[False]) < 135, f0
    # rate: sounding time per word (frames within 35 dB of the loudest) of fast speech is below slow speech's
    per_word = {"fast": [], "slow": []}
    for e in _of(speech_split, "speech_rate"):
        per_word[e["answer"]].append((_db(e["audio"]) > -35).sum() * 0.01 / len(e["text"].split()))
    assert max(per_word["fast"]) < 0.25 < 0.3 < min(per_word["slow"]), per_word
    # rise: the last word's pitch glides up for "rises", down for "falls"
    for e in _of(speech_split, "speech_rise"):
        glide = _glide_st(e["audio"], e["word_starts_s"][-1], e["word_ends_s"][-1])
        assert glide > 1.5 if e["answer"] == "it rises at the end" else glide < -1.5, (e["id"], glide)
    # count: espeak-ng spoke exactly that many words, distinct nouns
    for e in _of(speech_split, "speech_count"):
        assert len(e["word_starts_s"]) == e["n_words"] == int(e["answer"]) == len(set(e["text"].split()))
    # word: the hVd word alone; its vowel is the only difference between the choices
    for e in _of(speech_split, "speech_word"):
        assert e["text"] == e["answer"] and set(e["choices"]) <= set(HVD_WORDS) and len(e["word_starts_s"]) == 1


def test_which_voice_speaks_last_by_a_speaker_encoder(speech_split):
    from coat.experts import build_expert

    torch = pytest.importorskip("torch")
    speaker = build_expert("speaker")

    def embed(audio):
        return speaker(torch.from_numpy(audio)[None], torch.tensor([len(audio)]))[0]["speaker"][0]

    right = 0
    examples = _of(speech_split, "speech_voice")
    for e in examples:
        turns = e["turns_s"]  # the three turns, each from its first word's start to its last word's end
        assert len(turns) == 3 and turns[0][0] == e["word_starts_s"][0] and turns[2][1] == e["word_ends_s"][-1]
        assert all(a[1] < b[0] for a, b in zip(turns, turns[1:])), e["id"]
        first, second, last = (embed(e["audio"][int(start * SR) : int(end * SR)]) for start, end in turns)
        right += (1 if last @ first > last @ second else 2) == e["last_voice"]
    assert right >= len(examples) - 1, f"{right} of {len(examples)}"  # 29 of 30 on a larger set


def test_speech_and_tones_export_together(tmp_path):
    config = SynthConfig(seed=1, categories=("count", "speech_count", "speech_voice"), train_size=6,
                         validation_size=0, test_size=0)
    examples = generate_split(config, "train")
    manifest = write_manifest(examples, tmp_path)
    rows = [line for line in manifest.read_text().splitlines() if line]
    assert len(rows) == 6 and all((tmp_path / f"audio/{ex['id']}.wav").is_file() for ex in examples)
    dataset = to_dataset(examples)
    assert dataset.num_rows == 6 and dataset[1]["n_words"] is not None and dataset[0]["n_words"] is None
    assert dataset[2]["voices"] is not None and len(dataset[2]["audio"]["array"]) == len(examples[2]["audio"])


def test_speech_words_cover_every_question_choice_and_caption(speech_split):
    vocabulary = set(speech_words())
    for e in speech_split:
        for text in (e["question"], e["caption"], *e["choices"]):
            assert set(text.split()) <= vocabulary, (e["id"], set(text.split()) - vocabulary)
