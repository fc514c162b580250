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
                phrases or words; nine distinct espeak-ng speakers)          voice``
speech_word     one hVd word (heed, hid, head, had, hod, hud, hood, who'd):  the word
                only its vowel tells them apart
speech_count    1-5 distinct nouns, 0-250 ms apart                           ``1`` .. ``5``
speech_rise     a sentence (or its last words) whose last word glides up or  ``it rises at the end`` / ``it falls
                down by 4-7 semitones (Praat's PSOLA on espeak-ng's speech)  at the end``
==============  ===========================================================  =======================================

Clips are as long as tone clips: each example draws its length between the config's ``min_seconds`` and
``max_seconds``, and its speech takes the longest of its forms that fits in ``max_seconds`` with 50 ms of silence
around it (a sentence, then without its tail, subject and verb, the subject alone; phrases, then single words,
then shorter pauses; for counting, shorter gaps, then a faster rate), placed at a random offset. A clip is longer
than drawn only when its speech needs it, never longer than ``max_seconds``; speech that cannot fit even then is
an error saying to raise it (2 s fits every category). So a clip's length does not tell the answer: a slow
sentence is a short one, not a long clip. Every clip draws its speaker, pitch, pitch range, rate and words from the
example's own generator. The ground truth goes into the example: ``text``, ``voice`` (the espeak-ng variant;
``voices`` for two), ``espeak_pitch``, ``rate_wpm`` and the synthesizer's word timing (``word_starts_s``,
``word_ends_s``, seconds from the clip start), and per category ``word`` / ``spoken_vowel``, ``n_words``,
``final_glide_st``, ``last_voice`` and ``turns_s`` (the three turns' spans).

Voices were chosen by measurement (espeak-ng 1.52 of espeakng-loader 0.2.4): the low and high pools by their F0
(Praat, pitch 50), the nine speakers of ``speech_voice`` as those whose Resemblyzer embeddings are least alike
(mean cosine similarity between two of them below 0.65, against 0.79-0.89 between two sentences of one). Variants
that add an echo (f2-f5, m2) are left out: the echo is a second, delayed copy of the voice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from coat.data.synth.categories import CATEGORIES, Category, register_category

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
_SHORT_WORDS = ("yes", "no", "hello", "thanks", "okay", "sure", "right", "maybe", "please", "sorry", "really", "fine")
_NOUNS = ("apple", "river", "window", "garden", "pencil", "mountain", "candle", "tiger", "lemon", "rabbit",
          "blanket", "ocean", "button", "spider", "carpet", "kettle", "pillow", "violin", "dragon", "basket")
# hVd words: one frame, so only the vowel differs (Peterson & Barney's words); espeak-ng en-us vowel in brackets
HVD_WORDS = {"heed": "i:", "hid": "I", "head": "E", "had": "a", "hod": "0", "hud": "V", "hood": "U", "who'd": "u:"}
MAX_WORDS = 5
RATES = {"slow": (85, 125), "fast": (270, 350)}
NORMAL_RATE = (140, 220)


MIN_SILENCE_S = 0.05  # silence before and after the speech, at least
_EDGE_S = 0.03  # what is kept of espeak-ng's own silence around the sounding part


def _sentence_options(rng: np.random.Generator) -> list[str]:
    """A sentence (subject, verb, object, maybe a tail) and its shorter forms, longest first: the clip takes the
    longest that fits in ``max_seconds``."""
    subject, verb, obj, tail = (str(rng.choice(list(words))) for words in (_SUBJECTS, _VERBS, _OBJECTS, _TAILS))
    texts = [f"{subject} {verb} {obj}{tail}", f"{subject} {verb} {obj}", f"{subject} {verb}", subject]
    return [t.capitalize() for t in dict.fromkeys(texts)]


def _voice_settings(rng: np.random.Generator, voices=ALL_VOICES, pitch=(25, 75), rate=NORMAL_RATE) -> dict:
    return {"variant": str(rng.choice(list(voices))), "pitch": int(rng.integers(pitch[0], pitch[1] + 1)),
            "pitch_range": int(rng.integers(20, 81)), "rate": int(rng.integers(rate[0], rate[1] + 1))}


def _say(text: str, settings: dict, sr: int, **kwargs):
    """espeak-ng's speech of ``text``, cut to its sounding part (and ``_EDGE_S`` around it)."""
    from coat.data.speech import Speech, Word, synthesize

    speech = synthesize(text, variant=settings["variant"], pitch=settings["pitch"],
                        pitch_range=settings["pitch_range"], rate=settings["rate"], sample_rate=sr, **kwargs)
    spans = speech.speech_spans()
    edge = int(_EDGE_S * sr)
    start, end = max(0, spans[0][0] - edge), min(len(speech.audio), spans[-1][1] + edge)
    return Speech(speech.audio[start:end], sr, [Word(w.text, w.start - start, w.end - start) for w in speech.words])


def _arrange(rng: np.random.Generator, options, config: SynthConfig, n: int, category: str):
    """The first of ``options`` that fits in ``config.max_seconds`` with ``MIN_SILENCE_S`` around it, placed at a
    random offset in a clip of ``max(n, its length + the silences)`` samples.

    options: callables, longest speech first, each returning ``(parts, info)``: parts are ``Speech`` objects or
    floats (seconds of silence), info what the caller records. Returns ``(signal, [(start_s, end_s)] of every word,
    info)``. A clip whose shortest option does not fit is an error saying to raise ``max_seconds``.
    """
    sr = config.sample_rate
    margin, limit = int(MIN_SILENCE_S * sr), int(round(config.max_seconds * sr))
    for make in options:
        parts, info = make()
        chunks = [p.audio if not isinstance(p, float) else np.zeros(int(round(p * sr)), np.float32) for p in parts]
        length = sum(len(c) for c in chunks)
        if length + 2 * margin <= limit:
            break
    else:
        raise ValueError(f"synth category {category}: the shortest speech drawn takes {length / sr + 0.1:.2f} s, more "
                         f"than max_seconds={config.max_seconds}; raise data.synth.max_seconds (2 s is enough)")
    total = max(n, length + 2 * margin)
    at = int(rng.integers(margin, total - length - margin + 1))
    signal, words = np.zeros(total), []
    for part, chunk in zip(parts, chunks):
        if not isinstance(part, float):
            words += [((at + w.start) / sr, (at + w.end) / sr) for w in part.words]
        signal[at : at + len(chunk)] = chunk
        at += len(chunk)
    return signal, words, info


def _timing(words: list[tuple[float, float]]) -> dict[str, list[float]]:
    return {"word_starts_s": [round(a, 4) for a, _ in words], "word_ends_s": [round(b, 4) for _, b in words]}


def _sentence_clip(rng, config: SynthConfig, n: int, category: str, settings: dict, texts: list[str]):
    options = [lambda text=text: ([_say(text + ".", settings, config.sample_rate)], text) for text in texts]
    signal, words, text = _arrange(rng, options, config, n, category)
    params = {"text": text, "voice": settings["variant"], "espeak_pitch": settings["pitch"],
              "rate_wpm": settings["rate"], **_timing(words)}
    return signal, params, text


def _synth_pitch(rng, answer, config: SynthConfig, n):
    high = answer == "a high voice"
    settings = _voice_settings(rng, HIGH_VOICES if high else LOW_VOICES, pitch=(55, 95) if high else (0, 40))
    signal, params, text = _sentence_clip(rng, config, n, "speech_pitch", settings, _sentence_options(rng))
    return signal, params, f"a {'high' if high else 'low'} voice saying: {text.lower()}"


def _synth_rate(rng, answer, config: SynthConfig, n):
    settings = _voice_settings(rng, rate=RATES[answer])
    signal, params, text = _sentence_clip(rng, config, n, "speech_rate", settings, _sentence_options(rng))
    return signal, params, f"someone saying {'slowly' if answer == 'slow' else 'fast'}: {text.lower()}"


def _synth_voice(rng, answer, config: SynthConfig, n):
    first, second = (str(v) for v in rng.choice(list(SPEAKERS), 2, replace=False))
    last = 1 if answer == "the first voice" else 2
    voices = (first, second, first if last == 1 else second)
    settings = {v: _voice_settings(rng, (v,)) for v in (first, second)}  # a voice keeps its pitch and rate
    phrases = [str(p) for p in rng.choice(list(_PHRASES), 3, replace=False)]
    words = [str(w) for w in rng.choice(list(_SHORT_WORDS), 3, replace=False)]
    pauses = [float(rng.uniform(0.2, 0.4)) for _ in range(2)]

    def turns(texts, gaps, min_rate=0):
        def make():
            parts, counts = [], []
            for i, (voice, text) in enumerate(zip(voices, texts)):
                voice_settings = {**settings[voice], "rate": max(min_rate, settings[voice]["rate"])}
                said = _say(text.capitalize() + ".", voice_settings, config.sample_rate)
                parts += ([gaps[i - 1]] if i else []) + [said]
                counts.append(len(said.words))
            return parts, (texts, counts)
        return make

    options = [turns(phrases, pauses), turns(words, pauses), turns(words, [0.12, 0.12]),
               turns(words, [0.12, 0.12], min_rate=260)]
    signal, timing, (texts, counts) = _arrange(rng, options, config, n, "speech_voice")
    ends = np.cumsum(counts)
    turns = [[round(timing[end - count][0], 4), round(timing[end - 1][1], 4)] for end, count in zip(ends, counts)]
    params = {"text": " / ".join(texts), "voices": [first, second], "last_voice": last, "turns_s": turns,
              "espeak_pitches": [settings[v]["pitch"] for v in voices], **_timing(timing)}
    return signal, params, f"two voices take turns, and the {'first' if last == 1 else 'second'} speaks last"


def _synth_word(rng, answer, config: SynthConfig, n):
    settings = _voice_settings(rng, rate=(120, 200))
    signal, params, _ = _sentence_clip(rng, config, n, "speech_word", settings, [answer])
    params.update(word=answer, spoken_vowel=HVD_WORDS[answer])
    return signal, params, f"a voice saying the word {answer}"


def _synth_count(rng, answer, config: SynthConfig, n):
    count = int(answer)
    settings = _voice_settings(rng)
    nouns = " ".join(str(w) for w in rng.choice(list(_NOUNS), count, replace=False))
    gap = int(rng.integers(0, 26)) * 10

    def spoken(gap_ms: int, rate: int):
        return lambda: ([_say(nouns, {**settings, "rate": rate}, config.sample_rate, word_gap_ms=gap_ms)],
                        (gap_ms, rate))

    fast = max(settings["rate"], 260)
    options = [spoken(gap, settings["rate"]), spoken(gap // 2, settings["rate"]), spoken(0, settings["rate"]),
               spoken(0, fast)]
    signal, words, (gap, rate) = _arrange(rng, options, config, n, "speech_count")
    params = {"text": nouns, "n_words": count, "voice": settings["variant"], "espeak_pitch": settings["pitch"],
              "rate_wpm": rate, "word_gap_ms": gap, **_timing(words)}
    return signal, params, f"a voice saying {count} word{'s' if count > 1 else ''}: {nouns}"


def _synth_rise(rng, answer, config: SynthConfig, n):
    from coat.data.speech import glide_pitch

    rises = answer == "it rises at the end"
    settings = _voice_settings(rng, pitch=(50, 80))  # a fall from a low start would sink below 70 Hz, into creak
    subject, verb, obj = (str(rng.choice(list(words))) for words in (_SUBJECTS, _VERBS, _VOICED_ENDINGS))
    texts = [f"{subject} {verb} {obj}".capitalize(), obj.capitalize()]  # the whole sentence, or its object alone
    # espeak-ng's own question intonation hardly rises (measured: its last word ends about 0.6 semitones lower
    # than it starts, against 4.5 for a statement), so both answers get the same treatment: a statement whose last
    # word glides up or down by 4-7 semitones (Praat's PSOLA), and only the direction differs
    semitones = float(rng.uniform(4, 7)) * (1 if rises else -1)

    def glided(text):
        def make():
            speech = _say(text + ".", settings, config.sample_rate)
            return [glide_pitch(speech, speech.words[-1].start, speech.words[-1].end, semitones)], text
        return make

    signal, words, text = _arrange(rng, [glided(t) for t in texts], config, n, "speech_rise")
    params = {"text": text, "voice": settings["variant"], "espeak_pitch": settings["pitch"],
              "rate_wpm": settings["rate"], "final_glide_st": round(semitones, 3), **_timing(words)}
    return signal, params, f"a voice {'asking' if rises else 'saying'}: {text.lower()}{'?' if rises else '.'}"


_CAPTION_WORDS = ("a high low voice saying saying: someone slowly: fast: two voices take turns, and the first second "
                  "speaks last word word: words: asking:").split()


def speech_words() -> list[str]:
    """Every word of the spoken categories' questions, answers and captions (as ``str.split`` cuts them), in a fixed
    order: with :func:`coat.data.synth.synth_words`, the vocabulary of a word-level tokenizer for both (the demo's)."""
    words: dict[str, None] = {}
    for category in CATEGORIES.values():
        if category.group == "speech":
            for text in (*category.questions, *category.answers(None)):
                words.update(dict.fromkeys(text.split()))
    content = [w for group in (_SUBJECTS, _VERBS, _OBJECTS, _TAILS, _VOICED_ENDINGS, _NOUNS, HVD_WORDS)
               for text in group for w in text.lower().split()]
    words.update(dict.fromkeys([*_CAPTION_WORDS, *content, *(f"{w}{end}" for w in content for end in ".?"),
                                *(str(i) for i in range(1, MAX_WORDS + 1))]))
    return list(words)


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
