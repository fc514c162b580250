"""Spoken questions for the synthetic benchmark, made offline with espeak-ng (:mod:`coat.data.speech`).

Each category is one synthesis function with the tone categories' signature ``(rng, answer, config, n) ->
(signal, parameters, caption)``, its answer texts and its question phrasings, registered with
:func:`coat.data.synth.register_category` in the group ``speech`` (coat.data.synth imports this module), so
examples, seeds, balanced answers and the train/validation/test split work exactly as for tones. The answers need
acoustic detail, never the words alone:

==============  ===========================================================  =======================================
category        the clip                                                     the answer
==============  ===========================================================  =======================================
speech_pitch    a sentence by a low voice (about 75-130 Hz) or a high one     ``a high voice`` / ``a low voice``
                (about 190 Hz and up)
speech_rate     a sentence at 85-125 or at 270-350 words per minute          ``fast`` / ``slow``
speech_voice    voice A, then voice B, then one of them again (three short    ``the first voice`` / ``the second
                phrases; nine distinct espeak-ng speakers)                   voice``
speech_word     one hVd word (heed, hid, head, had, hod, hud, hood, who'd):  the word
                only its vowel tells them apart
speech_count    1-5 distinct nouns, 0-250 ms apart                           ``1`` .. ``5``
speech_rise     a sentence whose last word glides up or down by 4-7          ``it rises at the end`` / ``it falls
                semitones (Praat's PSOLA on espeak-ng's speech)              at the end``
==============  ===========================================================  =======================================

Every clip draws its speaker, pitch, pitch range, rate and sentence from the example's own generator, and gets
0.05-0.3 s of silence before and after; the clip's length is that of the speech (the config's ``min_seconds`` /
``max_seconds`` are for tones). The ground truth goes into the example: ``text``, ``voice`` (the espeak-ng variant;
``voices`` for two), ``espeak_pitch``, ``rate_wpm`` and the synthesizer's word timing (``word_starts_s``,
``word_ends_s``, seconds from the clip start), and per category ``word`` / ``spoken_vowel``, ``n_words``,
``final_glide_st``, ``last_voice``.

Voices were chosen by measurement (espeak-ng 1.52 of espeakng-loader 0.2.4): the low and high pools by their F0
(Praat, pitch 50), the nine speakers of ``speech_voice`` as those whose Resemblyzer embeddings are least alike
(mean cosine similarity between two of them below 0.65, against 0.79-0.89 between two sentences of one). Variants
that add an echo (f2-f5, m2) are left out: the echo is a second, delayed copy of the voice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from coat.data.synth.categories import Category, register_category

if TYPE_CHECKING:
    from coat.data.synth.splits import SynthConfig

LOW_VOICES = ("edward", "travis", "rob", "klatt2", "klatt3", "m1", "m3", "m7")  # about 100 Hz at pitch 50
HIGH_VOICES = ("steph", "aunty", "grandma", "f1", "Annie", "linda", "belinda", "shelby")  # about 175-230 Hz
SPEAKERS = ("edward", "travis", "steph", "rob", "zac", "klatt2", "aunty", "klatt3", "grandma")
ALL_VOICES = tuple(dict.fromkeys(LOW_VOICES + HIGH_VOICES + SPEAKERS))

_SUBJECTS = ("the dog", "my sister", "the old man", "our teacher", "the little girl", "a farmer", "the children",
             "your friend", "the doctor", "my neighbour")
_VERBS = ("found", "painted", "carried", "opened", "watched", "cleaned", "borrowed", "followed", "dropped", "sold")
_OBJECTS = ("the red box", "a wooden chair", "the garden gate", "an orange kite", "the heavy basket",
            "a silver ring", "the kitchen window", "the morning paper", "a yellow boat", "the blue bicycle")
_TAILS = ("", " yesterday", " after lunch", " in the rain", " again", " last winter")
# objects whose last word ends voiced, so that a glide over it is heard to its end
_VOICED_ENDINGS = ("the yellow balloon", "a small window", "the old garden", "my neighbour", "the new violin",
                   "a green umbrella", "the long tunnel", "a silver spoon", "the morning train", "a paper lantern")
_PHRASES = ("good morning", "hello there", "see you soon", "thank you", "not today", "over here", "come along",
            "that is right", "well done", "maybe later", "all right then", "quite so")
_NOUNS = ("apple", "river", "window", "garden", "pencil", "mountain", "candle", "tiger", "lemon", "rabbit",
          "blanket", "ocean", "button", "spider", "carpet", "kettle", "pillow", "violin", "dragon", "basket")
# hVd words: one frame, so only the vowel differs (Peterson & Barney's words); espeak-ng en-us vowel in brackets
HVD_WORDS = {"heed": "i:", "hid": "I", "head": "E", "had": "a", "hod": "0", "hud": "V", "hood": "U", "who'd": "u:"}
MAX_WORDS = 5
RATES = {"slow": (85, 125), "fast": (270, 350)}
NORMAL_RATE = (140, 220)


def _sentence(rng: np.random.Generator) -> str:
    pick = [str(rng.choice(list(words))) for words in (_SUBJECTS, _VERBS, _OBJECTS, _TAILS)]
    text = f"{pick[0]} {pick[1]} {pick[2]}{pick[3]}"
    return text[0].upper() + text[1:]


def _voice_settings(rng: np.random.Generator, voices=ALL_VOICES, pitch=(25, 75), rate=NORMAL_RATE) -> dict:
    return {"variant": str(rng.choice(list(voices))), "pitch": int(rng.integers(pitch[0], pitch[1] + 1)),
            "pitch_range": int(rng.integers(20, 81)), "rate": int(rng.integers(rate[0], rate[1] + 1))}


def _say(text: str, settings: dict, sr: int, **kwargs):
    from coat.data.speech import synthesize

    return synthesize(text, variant=settings["variant"], pitch=settings["pitch"], pitch_range=settings["pitch_range"],
                      rate=settings["rate"], sample_rate=sr, **kwargs)


def _with_silence(rng: np.random.Generator, parts: list, sr: int) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Concatenate speech parts (each a ``Speech``, or a float: seconds of silence) between 0.05-0.3 s of silence
    at both ends. Returns the signal and every word's ``(start_s, end_s)`` in it."""
    chunks, words, at = [], [], 0
    for part in [float(rng.uniform(0.05, 0.3)), *parts, float(rng.uniform(0.05, 0.3))]:
        if isinstance(part, float):
            chunk = np.zeros(int(round(part * sr)), np.float32)
        else:
            chunk = part.audio
            words += [((at + w.start) / sr, (at + w.end) / sr) for w in part.words]
        chunks.append(chunk)
        at += len(chunk)
    return np.concatenate(chunks).astype(np.float64), words


def _timing(words: list[tuple[float, float]]) -> dict[str, list[float]]:
    return {"word_starts_s": [round(a, 4) for a, _ in words], "word_ends_s": [round(b, 4) for _, b in words]}


def _synth_pitch(rng, answer, config: SynthConfig, n):
    high = answer == "a high voice"
    settings = _voice_settings(rng, HIGH_VOICES if high else LOW_VOICES, pitch=(55, 95) if high else (0, 40))
    text = _sentence(rng)
    signal, words = _with_silence(rng, [_say(text + ".", settings, config.sample_rate)], config.sample_rate)
    params = {"text": text, "voice": settings["variant"], "espeak_pitch": settings["pitch"],
              "rate_wpm": settings["rate"], **_timing(words)}
    return signal, params, f"a {'high' if high else 'low'} voice saying: {text.lower()}"


def _synth_rate(rng, answer, config: SynthConfig, n):
    settings = _voice_settings(rng, rate=RATES[answer])
    text = _sentence(rng)
    signal, words = _with_silence(rng, [_say(text + ".", settings, config.sample_rate)], config.sample_rate)
    params = {"text": text, "voice": settings["variant"], "espeak_pitch": settings["pitch"],
              "rate_wpm": settings["rate"], **_timing(words)}
    return signal, params, f"someone saying {'slowly' if answer == 'slow' else 'fast'}: {text.lower()}"


def _synth_voice(rng, answer, config: SynthConfig, n):
    first, second = (str(v) for v in rng.choice(list(SPEAKERS), 2, replace=False))
    last = 1 if answer == "the first voice" else 2
    phrases = [str(p) for p in rng.choice(list(_PHRASES), 3, replace=False)]
    parts, settings = [], []
    for i, (voice, phrase) in enumerate(zip((first, second, first if last == 1 else second), phrases)):
        s = _voice_settings(rng, (voice,))
        settings.append(s)
        if i:
            parts.append(float(rng.uniform(0.25, 0.6)))
        parts.append(_say(phrase[0].upper() + phrase[1:] + ".", s, config.sample_rate))
    signal, words = _with_silence(rng, parts, config.sample_rate)
    params = {"text": " / ".join(phrases), "voices": [first, second], "last_voice": last,
              "espeak_pitches": [s["pitch"] for s in settings], **_timing(words)}
    return signal, params, f"two voices take turns, and the {'first' if last == 1 else 'second'} speaks last"


def _synth_word(rng, answer, config: SynthConfig, n):
    settings = _voice_settings(rng, rate=(120, 200))
    signal, words = _with_silence(rng, [_say(answer + ".", settings, config.sample_rate)], config.sample_rate)
    params = {"text": answer, "word": answer, "spoken_vowel": HVD_WORDS[answer], "voice": settings["variant"],
              "espeak_pitch": settings["pitch"], "rate_wpm": settings["rate"], **_timing(words)}
    return signal, params, f"a voice saying the word {answer}"


def _synth_count(rng, answer, config: SynthConfig, n):
    count = int(answer)
    settings = _voice_settings(rng)
    nouns = [str(w) for w in rng.choice(list(_NOUNS), count, replace=False)]
    gap = int(rng.integers(0, 26)) * 10
    speech = _say(" ".join(nouns), settings, config.sample_rate, word_gap_ms=gap)
    signal, words = _with_silence(rng, [speech], config.sample_rate)
    params = {"text": " ".join(nouns), "n_words": count, "voice": settings["variant"],
              "espeak_pitch": settings["pitch"], "rate_wpm": settings["rate"], "word_gap_ms": gap, **_timing(words)}
    return signal, params, f"a voice saying {count} word{'s' if count > 1 else ''}: {' '.join(nouns)}"


def _synth_rise(rng, answer, config: SynthConfig, n):
    from coat.data.speech import glide_pitch

    rises = answer == "it rises at the end"
    settings = _voice_settings(rng, pitch=(50, 80))  # a fall from a low start would sink below 70 Hz, into creak
    pick = [str(rng.choice(list(words))) for words in (_SUBJECTS, _VERBS, _VOICED_ENDINGS)]
    text = " ".join(pick)
    text = text[0].upper() + text[1:]
    # espeak-ng's own question intonation hardly rises (measured: its last word ends about 0.6 semitones lower
    # than it starts, against 4.5 for a statement), so both answers get the same treatment: a statement whose last
    # word glides up or down by 4-7 semitones (Praat's PSOLA), and only the direction differs
    semitones = float(rng.uniform(4, 7)) * (1 if rises else -1)
    speech = _say(text + ".", settings, config.sample_rate)
    speech = glide_pitch(speech, speech.words[-1].start, speech.words[-1].end, semitones)
    signal, words = _with_silence(rng, [speech], config.sample_rate)
    params = {"text": text, "voice": settings["variant"], "espeak_pitch": settings["pitch"],
              "rate_wpm": settings["rate"], "final_glide_st": round(semitones, 3), **_timing(words)}
    return signal, params, f"a voice {'asking' if rises else 'saying'}: {text.lower()}{'?' if rises else '.'}"


def _espeak_version() -> str:
    import importlib.util

    if importlib.util.find_spec("espeakng_loader") is None:  # before loading anything: the config stops here
        from coat import extras

        raise extras.missing("espeakng-loader", "speech",
                             "speech synthesis with espeak-ng (the speech categories of the synthetic benchmark)")
    from coat.data.speech import espeak_version

    return espeak_version()


def _register(name: str, answers, questions: tuple[str, ...], synthesize) -> None:
    register_category(Category(name, answers=answers, questions=questions, synthesize=synthesize, group="speech",
                               synthesizer=_espeak_version))


_register("speech_pitch", lambda config: ["a high voice", "a low voice"],
          ("Is the voice high or low?", "Does a high or a low voice speak?"), _synth_pitch)
_register("speech_rate", lambda config: ["fast", "slow"],
          ("Is the speech fast or slow?", "How fast does the person speak?"), _synth_rate)
_register("speech_voice", lambda config: ["the first voice", "the second voice"],
          ("Two voices take turns, then one of them speaks again. Which voice speaks last?",
           "Which of the two voices says the last phrase?"), _synth_voice)
_register("speech_word", lambda config: list(HVD_WORDS), ("Which word is spoken?", "Which word do you hear?"),
          _synth_word)
_register("speech_count", lambda config: [str(i) for i in range(1, MAX_WORDS + 1)],
          ("How many words are spoken?", "How many words do you hear?"), _synth_count)
_register("speech_rise", lambda config: ["it rises at the end", "it falls at the end"],
          ("Does the voice rise or fall at the end?", "Does the pitch go up or down at the end?"), _synth_rise)
