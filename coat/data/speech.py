"""Offline speech synthesis with espeak-ng, and the word and phoneme timing the synthesizer reports.

The ``espeakng-loader`` wheel (the ``speech`` extra) ships libespeak-ng and its voice data, so speech is made with
pip alone: no system package, nothing downloaded. This module drives libespeak-ng's C API through ctypes:
``espeak_Initialize`` in synchronous mode with phoneme events, ``espeak_SetVoiceByName`` (a language voice plus an
optional *variant*, the speaker: ``en-us+f3``), ``espeak_SetParameter`` for rate, pitch, pitch range, volume and the
gap between words, and ``espeak_Synth`` with a callback that collects the samples and the events (word starts,
phoneme starts, the end) with their sample positions.

    speech = synthesize("one two three", variant="f3", pitch=70, rate=140, word_gap_ms=200)
    speech.audio          # (samples,) float32 at 16 kHz
    speech.words          # [Word("one", start, end), ...]: sample spans of the sounding part of each word

libespeak-ng keeps one global state per process, so calls are serialised by a lock, and each call loads the library
afresh: the same call gives the same samples every time, whatever was synthesized before (tests/test_speech.py).
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
from dataclasses import dataclass, field

import numpy as np

from coat import extras

WHAT = "speech synthesis (espeak-ng)"

# espeak-ng's speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000  # otherwise a missing data folder ends the whole process
_CHARS_UTF8, _SSML, _ENDPAUSE = 0x1, 0x10, 0x1000
_POS_CHARACTER = 1
_EVENT_LIST_TERMINATED, _EVENT_WORD, _EVENT_END, _EVENT_PHONEME = 0, 1, 5, 7
_RATE, _VOLUME, _PITCH, _RANGE, _WORDGAP = 1, 2, 3, 4, 7  # espeak_PARAMETER
_EE_NOT_FOUND = 2

RATE_RANGE = (80, 450)  # words per minute espeak-ng accepts
PARAM_RANGE = (0, 100)  # pitch and pitch range
VOLUME_RANGE = (0, 200)


class _Event(ctypes.Structure):
    """``espeak_EVENT``: ``sample`` is the event's position in samples from the start of the message."""

    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Word:
    """A word as espeak-ng reports it and the sample span ``[start, end)`` of its sounding part (pauses excluded).

    espeak-ng joins some unstressed function words to the word before them (``in the`` is one word event, whose
    span covers both): count content words, not these.
    """

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Phoneme:
    """An espeak-ng phoneme mnemonic (``'i:`` with its stress mark, ``_`` for a pause) and its span."""

    name: str
    start: int
    end: int

    @property
    def is_pause(self) -> bool:
        return self.name.startswith("_")


@dataclass
class Speech:
    """What :func:`synthesize` returns. Sample positions are at ``sample_rate``."""

    audio: np.ndarray  # (samples,) float32 in [-1, 1]
    sample_rate: int
    words: list[Word] = field(default_factory=list)
    phonemes: list[Phoneme] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate

    def speech_spans(self) -> list[tuple[int, int]]:
        """``[(start, end)]`` sample spans where the synthesizer speaks: consecutive non-pause phonemes merged."""
        spans: list[tuple[int, int]] = []
        for p in self.phonemes:
            if p.is_pause or p.end <= p.start:
                continue
            if spans and spans[-1][1] == p.start:
                spans[-1] = (spans[-1][0], p.end)
            else:
                spans.append((p.start, p.end))
        return spans


class _Espeak:
    """libespeak-ng, loaded afresh for every synthesis.

    The library keeps state between calls that no API resets (the phase of its pitch flutter, a static in
    wavegen.c), so the same text came out a few samples longer or shorter depending on what was spoken before.
    Each call therefore loads the library, initialises it, seeds its noise generator, synthesizes and unloads it
    again (about 3 ms): the same call always gives the same samples.
    """

    def __init__(self):
        espeakng_loader = extras.require("espeakng_loader", "espeakng-loader", "speech", WHAT)
        self.library_path, self.data_path = espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
        self.lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int, bytes]] = []
        self._callback = _CALLBACK(self._collect)  # kept referenced: libespeak-ng holds only the pointer
        with self.lock:
            lib, self.native_rate = self._open()
            try:
                self.version = lib.espeak_Info(None).decode()
            finally:
                self._close(lib)

    def _open(self) -> tuple[ctypes.CDLL, int]:
        try:
            lib = ctypes.CDLL(self.library_path)
        except OSError as err:
            raise extras.missing("espeakng-loader", "speech", WHAT, f"its libespeak-ng does not load: {err}") from err
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data_path.encode(),
                                     _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            self._close(lib)
            raise extras.missing("espeakng-loader", "speech", WHAT, f"espeak-ng found no data at {self.data_path}")
        lib.espeak_SetSynthCallback(self._callback)
        return lib, int(rate)

    @staticmethod
    def _close(lib: ctypes.CDLL) -> None:
        import _ctypes

        lib.espeak_Terminate()
        _ctypes.dlclose(lib._handle)  # the next dlopen starts from the library's initial state

    def _collect(self, samples, count, events) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(samples, (count,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            e = events[i]
            self._events.append((e.type, e.text_position, e.length, e.sample, bytes(e.id)))
            i += 1
        return 0  # 0: go on synthesizing

    def synth(self, text: str, voice: str, params: dict[int, int], seed: int, flags: int) -> tuple[np.ndarray, list]:
        """(int16 samples at ``native_rate``, events) of ``text`` spoken by ``voice``."""
        with self.lock:
            lib, _ = self._open()
            try:
                # its breath and aspiration noise: seeded from the clock by espeak_Initialize otherwise
                lib.espeak_ng_SetRandSeed(seed)
                if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                    raise ValueError(f"espeak-ng has no voice {voice!r}; the languages are the files under "
                                     f"{os.path.join(self.data_path, 'lang')} (en-us, en-gb, de, ...)")
                for key, value in params.items():
                    lib.espeak_SetParameter(key, int(value), 0)
                self._chunks, self._events = [], []
                data = text.encode("utf-8")
                err = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, flags, None, None)
                if err != 0:
                    raise RuntimeError(f"espeak-ng failed to synthesize {text!r} (error {err})")
                chunks, events = self._chunks, self._events
            finally:
                self._chunks, self._events = [], []
                self._close(lib)
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        return audio, events


_ENGINE: _Espeak | None = None
_ENGINE_LOCK = threading.Lock()


def _engine() -> _Espeak:
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = _Espeak()
        return _ENGINE


def espeak_version() -> str:
    """The version of the libespeak-ng in use, e.g. ``1.52.0``."""
    return _engine().version


def voice_variants() -> list[str]:
    """Names of the voice variants (speakers) the wheel ships: ``m1``..``m7``, ``f1``..``f5``, ``klatt``, ...."""
    return list(_variants(_engine().data_path))


@functools.lru_cache(maxsize=4)
def _variants(data_path: str) -> tuple[str, ...]:
    folder = os.path.join(data_path, "voices", "!v")
    return tuple(sorted(os.listdir(folder))) if os.path.isdir(folder) else ()


def synthesize(
    text: str,
    voice: str = "en-us",
    variant: str | None = None,
    rate: int = 175,
    pitch: int = 50,
    pitch_range: int = 50,
    volume: int = 100,
    word_gap_ms: int = 0,
    sample_rate: int | None = 16000,
    seed: int = 0,
    ssml: bool = False,
) -> Speech:
    """Speak ``text`` with espeak-ng.

    voice: an espeak-ng language voice (``en-us``, ``en-gb``, ``en-gb-scotland``, ``de``, ...).
    variant: a voice variant, the speaker (``m1``..``m7``, ``f1``..``f5``, ``croak``, ``whisper``, ... see
        :func:`voice_variants`), or ``None`` for the language voice's own.
    rate: words per minute, 80..450 (espeak-ng's default 175).
    pitch: base pitch 0..100, relative to the variant's own (50 keeps it).
    pitch_range: intonation range 0..100 (0 is a monotone, 50 the default).
    volume: amplitude 0..200 (100 the default).
    word_gap_ms: extra pause between words, in 10 ms steps (0: none).
    sample_rate: output rate; espeak-ng makes 22050 Hz, resampled here with soxr. ``None`` keeps 22050.
    seed: seed of espeak-ng's noise generator (breath, aspiration, frication): the same arguments give the same
        samples.
    ssml: ``text`` is SSML (``<prosody pitch="+60%">word</prosody>``, ``<break time="300ms"/>``, ...).

    The word spans start at a word's first sounding phoneme and end where a pause or the next word begins.
    """
    checks = {"rate": (rate, RATE_RANGE), "pitch": (pitch, PARAM_RANGE), "pitch_range": (pitch_range, PARAM_RANGE),
              "volume": (volume, VOLUME_RANGE), "word_gap_ms": (word_gap_ms, (0, 10000))}
    for name, (value, (low, high)) in checks.items():
        if not low <= value <= high:
            raise ValueError(f"{name} must be in {low}..{high}, got {value}")
    if not text.strip():
        raise ValueError("text to synthesize is empty")
    if variant is not None and variant not in voice_variants():  # espeak-ng would ignore an unknown one silently
        raise ValueError(f"espeak-ng has no voice variant {variant!r}; variants: {', '.join(voice_variants())}")
    engine = _engine()
    params = {_RATE: rate, _VOLUME: volume, _PITCH: pitch, _RANGE: pitch_range, _WORDGAP: round(word_gap_ms / 10)}
    samples, events = engine.synth(text, voice if variant is None else f"{voice}+{variant}", params, seed,
                                   _CHARS_UTF8 | _ENDPAUSE | (_SSML if ssml else 0))
    audio = samples.astype(np.float32) / 32768.0
    native = engine.native_rate
    if sample_rate is not None and sample_rate != native:
        from coat.data.sources import resample

        audio = resample(audio, native, sample_rate)
    out_rate = native if sample_rate is None else int(sample_rate)

    def at(sample: int) -> int:
        return min(len(audio), round(sample * out_rate / native))

    phonemes, words, end = _timeline(text, events, len(samples))
    return Speech(
        audio=audio,
        sample_rate=out_rate,
        words=[Word(w, at(s), at(e)) for w, s, e in words],
        phonemes=[Phoneme(p, at(s), at(e)) for p, s, e in phonemes],
    )


def glide_pitch(speech: Speech, start: int, end: int, semitones: float) -> Speech:
    """``speech`` with its intonation from sample ``start`` on replaced by a straight glide of ``semitones``.

    The pitch contour (Praat's pitch tier, 75-600 Hz) keeps its points before ``start``; from there on it starts at
    the pitch it had at ``start`` and moves linearly, in semitones, to ``start`` + ``semitones`` at the last voiced
    point before ``end`` (staying there after it). Praat's overlap-add (PSOLA) resynthesis keeps the voice and the
    timing: the words and phonemes keep their spans. Needs praat-parselmouth (the ``speech`` extra).
    """
    parselmouth = extras.require("parselmouth", "praat-parselmouth", "speech", "intonation (Praat)")
    from parselmouth.praat import call

    sr = speech.sample_rate
    sound = parselmouth.Sound(speech.audio.astype(np.float64), sampling_frequency=sr)
    manipulation = call(sound, "To Manipulation", 0.01, 75, 600)
    tier = call(manipulation, "Extract pitch tier")
    points = [(call(tier, "Get time from index", i), call(tier, "Get value at index", i))
              for i in range(1, call(tier, "Get number of points") + 1)]
    t0, t_end = start / sr, end / sr
    voiced = [t for t, _ in points if t0 <= t <= t_end]
    if not voiced:
        raise ValueError(f"no voiced sound between {t0:.3f} s and {t_end:.3f} s to glide")
    f0, t1 = call(tier, "Get value at time", t0), max(voiced)
    call(tier, "Remove points between", t0, sound.duration)
    for t, _ in points:
        if t >= t0:
            progress = min(1.0, (t - t0) / max(t1 - t0, 1e-3))
            call(tier, "Add point", t, f0 * 2.0 ** (semitones * progress / 12.0))
    call([tier, manipulation], "Replace pitch tier")
    audio = call(manipulation, "Get resynthesis (overlap-add)").values[0]
    audio = np.pad(audio, (0, max(0, len(speech.audio) - len(audio))))[: len(speech.audio)]
    return Speech(audio.astype(np.float32), sr, list(speech.words), list(speech.phonemes))


def _timeline(text: str, events: list, total: int):
    """Phoneme spans and word spans (native samples) from the synthesizer's events."""
    phoneme_starts = [(s, ident.split(b"\0", 1)[0].decode("utf-8", "replace")) for t, _, _, s, ident in events
                      if t == _EVENT_PHONEME]
    end = next((s for t, _, _, s, _ in events if t == _EVENT_END), total)
    phonemes = []
    for i, (start, name) in enumerate(phoneme_starts):
        stop = phoneme_starts[i + 1][0] if i + 1 < len(phoneme_starts) else end
        phonemes.append((name, start, stop))
    word_events = [(s, pos, length) for t, pos, length, s, _ in events if t == _EVENT_WORD]
    words = []
    for i, (start, pos, length) in enumerate(word_events):
        limit = word_events[i + 1][0] if i + 1 < len(word_events) else end
        # the word's sounding part: from its first non-pause phoneme to the first pause after it (or the next word)
        mine = [(n, s, e) for n, s, e in phonemes if start <= s < limit]
        sounding = [j for j, (n, _, _) in enumerate(mine) if not n.startswith("_")]
        if not sounding:
            continue
        first = sounding[0]
        stop = next((mine[j][1] for j in range(first, len(mine)) if mine[j][0].startswith("_")), limit)
        words.append((text[pos - 1 : pos - 1 + length], mine[first][1], stop))
    return phonemes, words, end
