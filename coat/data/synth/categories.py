"""The question categories of the synthetic benchmark: one small synthesis function each, with its answer texts and
question phrasings, registered in :data:`CATEGORIES` (add one with :func:`register_category`).

A synthesis function maps ``(rng, answer text, config, number of samples)`` to ``(signal, parameters, caption)``:
any float signal, of that length for tones (speech is as long as it is spoken; levels, noise floor and peak are set
afterwards, coat/data/synth/splits.py), the parameters it was made from (the ground truth for analysis and probes) and
a short caption. A category belongs to a group (``tones`` here; ``speech``: coat/data/speech_categories.py registers
its categories), and ``SynthConfig.categories`` takes group names as well as category names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# the answers of the contour and loudness questions, with the direction each stands for
_CONTOURS = {"it rises": 1, "it falls": -1, "it stays the same": 0}
_LOUDNESS = {"it gets louder": 1, "it gets softer": -1, "it stays the same": 0}

# A synthesis function: (rng, answer text, config (a SynthConfig), number of samples) -> (signal, parameters,
# caption). The signal is a float array (of that length for tones); levels, noise floor and peak are set afterwards.
Synthesize = Callable[[np.random.Generator, str, Any, int], tuple[np.ndarray, dict[str, Any], str]]


@dataclass(frozen=True)
class Category:
    """One kind of question: its answer texts (from the config: a SynthConfig), question phrasings and the function
    making the audio."""

    name: str
    answers: Callable[[Any], list[str]]
    questions: tuple[str, ...]
    synthesize: Synthesize
    # a name SynthConfig.categories accepts for all categories of the group (``tones``, ``speech``)
    group: str = "tones"
    # for audio made by an outside synthesizer (espeak-ng): returns its version, which goes into the exports' digest,
    # and raises a clear error naming what to install when it is missing; SynthConfig calls it when selected
    synthesizer: Callable[[], str] | None = None


CATEGORIES: dict[str, Category] = {}


def register_category(category: Category) -> Category:
    if category.name in {*category_groups(), category.group} or category.group in CATEGORIES:
        raise ValueError(f"category {category.name!r} of group {category.group!r}: a category and a group cannot "
                         f"share a name (groups: {sorted(category_groups())})")
    CATEGORIES[category.name] = category
    return category


def category_groups() -> dict[str, tuple[str, ...]]:
    """Group name -> the registered categories of that group, in registration order."""
    groups: dict[str, tuple[str, ...]] = {}
    for category in CATEGORIES.values():
        groups[category.group] = (*groups.get(category.group, ()), category.name)
    return groups


# ---------------------------------------------------------------------------------------------------------
# building blocks


_NOTE_RE = re.compile(r"^([A-Ga-g])([#b]?)(-?\d+)$")
_SEMITONE = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def note_to_hz(name: str) -> float:
    """``"A4"`` -> 440.0, ``"C#5"``, ``"Db5"`` (equal temperament)."""
    match = _NOTE_RE.match(name.strip())
    if not match:
        raise ValueError(f"not a note name: {name!r} (expected e.g. C4, F#3, Bb4)")
    letter, accidental, octave = match.groups()
    midi = 12 * (int(octave) + 1) + _SEMITONE[letter.upper()] + {"#": 1, "b": -1, "": 0}[accidental]
    return float(440.0 * 2.0 ** ((midi - 69) / 12))


def min_beep_span(n: int) -> float:
    """Seconds that ``n`` beeps need at least (their shortest length and gaps)."""
    return n * _BEEP_MIN_S + (n - 1) * _GAP_MIN_S


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _seconds(sr: int, n: int) -> np.ndarray:
    return np.arange(n) / sr


def _ramp(n: int, sr: int, fade_s: float) -> np.ndarray:
    """Raised-cosine fade in and out over ``fade_s`` seconds, so no segment starts with a click."""
    env = np.ones(n)
    k = min(max(1, int(fade_s * sr)), n // 2)
    if k > 0:
        edge = 0.5 - 0.5 * np.cos(np.pi * np.arange(k) / k)
        env[:k] *= edge
        env[n - k :] *= edge[::-1]
    return env


def _place(total: int, start: int, segment: np.ndarray) -> np.ndarray:
    out = np.zeros(total)
    start = min(max(0, start), total)
    end = min(total, start + len(segment))
    out[start:end] = segment[: end - start]
    return out


def _random_timbre(rng: np.random.Generator) -> dict[str, Any]:
    """Harmonic amplitudes and phases of a random instrument-like tone (fundamental always present)."""
    kind = str(rng.choice(["bright", "mellow", "hollow"]))
    tilt = {"bright": rng.uniform(0.6, 1.1), "mellow": rng.uniform(1.5, 2.5), "hollow": rng.uniform(0.8, 1.4)}[kind]
    n = 24
    k = np.arange(1, n + 1)
    amps = k ** (-tilt) * rng.uniform(0.4, 1.0, n)
    if kind == "hollow":  # clarinet-like: weak even harmonics
        amps[1::2] *= rng.uniform(0.05, 0.25)
    amps[0] = 1.0
    return {
        "kind": kind,
        "amps": amps,
        "phases": rng.uniform(0, 2 * np.pi, n),
        "inharmonicity": float(rng.choice([0.0, rng.uniform(5e-6, 3e-5)])),
    }


def _harmonic(f0: np.ndarray, timbre: dict[str, Any], sr: int, max_hz: float | None = None) -> np.ndarray:
    """Additive synthesis of a tone following the f0 track ``f0`` (samples,), band-limited below ``max_hz``."""
    max_hz = min(max_hz or 7000.0, 0.45 * sr)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    top = float(np.max(f0))
    out = np.zeros_like(phase)
    used = 0
    exact = timbre["inharmonicity"] == 0
    if exact:  # e^{ik phase} by repeated multiplication: several times faster than one sin per harmonic
        step = np.exp(1j * phase)
        partial = step.copy()
    for i, (amp, phi) in enumerate(zip(timbre["amps"], timbre["phases"])):
        stretch = (i + 1) * np.sqrt(1 + timbre["inharmonicity"] * (i + 1) ** 2)
        if stretch * top >= max_hz:
            break
        if exact:  # sin(k phase + phi)
            out += amp * (np.cos(phi) * partial.imag + np.sin(phi) * partial.real)
            partial *= step
        else:
            out += amp * np.sin(stretch * phase + phi)
        used += 1
    return out / max(float(np.sum(np.abs(timbre["amps"][:used]))), 1e-12)


def _vibrato(rng: np.random.Generator, n: int, sr: int, max_cents: float, p: float = 0.5) -> tuple[np.ndarray, float]:
    """Multiplicative f0 factor (samples,) of a sine vibrato (or ones), and its depth in cents."""
    if rng.uniform() >= p:
        return np.ones(n), 0.0
    depth = rng.uniform(0.25, 1.0) * max_cents
    rate = rng.uniform(4.0, 7.0)
    t = _seconds(sr, n)
    return 2.0 ** (depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)) / 1200), float(depth)


def _envelope(rng: np.random.Generator, n: int, sr: int, styles=("sustained", "plucked", "swelling")):
    """A random amplitude envelope (samples,) in [0, 1] and its style name."""
    style = str(rng.choice(list(styles)))
    t = _seconds(sr, n)
    dur = n / sr
    if style == "plucked":
        attack = rng.uniform(0.002, 0.01)
        env = np.minimum(t / attack, 1.0) * np.exp(-np.maximum(t - attack, 0) / rng.uniform(0.25, 0.8))
    elif style == "swelling":
        attack = rng.uniform(0.1, 0.3) * dur
        env = np.minimum(t / attack, 1.0) ** 2
    else:
        attack, decay, sustain = rng.uniform(0.005, 0.08), rng.uniform(0.05, 0.2), rng.uniform(0.5, 0.9)
        env = np.where(t < attack, t / attack, sustain + (1 - sustain) * np.exp(-(t - attack) / decay))
    return env * _ramp(n, sr, 0.01), style


def _bandpass_noise(rng: np.random.Generator, n: int, sr: int, low: float, high: float) -> np.ndarray:
    """White noise filtered to [low, high] Hz in the frequency domain (exact band, no filter design)."""
    from scipy.fft import next_fast_len

    size = next_fast_len(n, real=True)  # clip lengths are arbitrary; a prime-length FFT is slow
    spec = np.fft.rfft(rng.standard_normal(size))
    freqs = np.fft.rfftfreq(size, 1 / sr)
    spec[(freqs < low) | (freqs > high)] = 0
    out = np.fft.irfft(spec, size)[:n]
    return out / (np.std(out) + 1e-12)


def _tone_segment(freq: float, n: int, sr: int, harmonics: int, rng: np.random.Generator) -> np.ndarray:
    t = _seconds(sr, n)
    out = np.zeros(n)
    for k in range(1, harmonics + 1):
        if k * freq < 0.45 * sr:
            out += k ** -1.5 * np.sin(2 * np.pi * k * freq * t + rng.uniform(0, 2 * np.pi))
    return out


# ---------------------------------------------------------------------------------------------------------
# categories


def _synth_note(rng, answer, config, n):
    sr = config.sample_rate
    detune = rng.uniform(-10, 10)  # cents: real instruments are not tuned to the grid
    f0 = note_to_hz(answer) * 2 ** (detune / 1200)
    onset = int(rng.uniform(0, 0.25) * n)
    length = max(int(0.4 * sr), int(rng.uniform(0.5, 1.0) * (n - onset)))
    length = min(length, n - onset)
    vib, depth = _vibrato(rng, length, sr, max_cents=20)
    timbre = _random_timbre(rng)
    env, style = _envelope(rng, length, sr)
    tone = _harmonic(f0 * vib, timbre, sr) * env
    params = {
        "note": answer,
        "f0_hz": float(f0),
        "detune_cents": float(detune),
        "vibrato_cents": depth,
        "timbre": timbre["kind"],
        "inharmonicity": timbre["inharmonicity"],
        "envelope": style,
        "onset_s": onset / sr,
        "tone_s": length / sr,
    }
    caption = f"a {timbre['kind']} {style} tone playing the note {answer} ({f0:.0f} Hz)"
    return _place(n, onset, tone), params, caption


def _synth_contour(rng, answer, config, n):
    sr = config.sample_rate
    direction = _CONTOURS[answer]
    f0_start = _log_uniform(rng, 130, 520)
    semitones = direction * rng.uniform(3, 8) if direction else rng.uniform(-0.3, 0.3)
    onset = int(rng.uniform(0, 0.2) * n)
    length = max(int(0.6 * n), int(rng.uniform(0.8, 1.0) * (n - onset)))
    length = min(length, n - onset)
    # flat, then a smooth glide, then flat: the contour is in the middle, the ends tell start and goal
    x = np.linspace(0, 1, length)
    g0, g1 = rng.uniform(0.1, 0.35), rng.uniform(0.65, 0.9)
    s = np.clip((x - g0) / (g1 - g0), 0, 1)
    glide = semitones * s * s * (3 - 2 * s)
    vib, depth = _vibrato(rng, length, sr, max_cents=15)
    f0 = f0_start * 2 ** (glide / 12) * vib
    timbre = _random_timbre(rng)
    env, style = _envelope(rng, length, sr, styles=("sustained", "swelling"))
    tone = _harmonic(f0, timbre, sr) * env
    f0_end = f0_start * 2 ** (semitones / 12)
    params = {
        "f0_start_hz": float(f0_start),
        "f0_end_hz": float(f0_end),
        "semitones": float(semitones),
        "vibrato_cents": depth,
        "timbre": timbre["kind"],
        "envelope": style,
        "onset_s": onset / sr,
        "tone_s": length / sr,
    }
    if direction > 0:
        caption = f"a {timbre['kind']} tone whose pitch rises from {f0_start:.0f} Hz to {f0_end:.0f} Hz"
    elif direction < 0:
        caption = f"a {timbre['kind']} tone whose pitch falls from {f0_start:.0f} Hz to {f0_end:.0f} Hz"
    else:
        caption = f"a {timbre['kind']} tone held steady at {f0_start:.0f} Hz"
    return _place(n, onset, tone), params, caption


def _synth_loudness(rng, answer, config, n):
    sr = config.sample_rate
    direction = _LOUDNESS[answer]
    source = str(rng.choice(["tone", "noise", "chord"]))
    if source == "noise":
        low = _log_uniform(rng, 50, 1500)
        signal = _bandpass_noise(rng, n, sr, low, min(0.45 * sr, low * _log_uniform(rng, 2, 16)))
    else:
        root = _log_uniform(rng, 100, 600)
        ratios = [1.0] if source == "tone" else [1.0, *rng.choice([1.25, 1.2, 1.5, 1.335, 2.0], 2, replace=False)]
        signal = sum(_harmonic(np.full(n, root * r), _random_timbre(rng), sr) for r in ratios)
    x = np.linspace(0, 1, n)
    if direction:
        change = direction * rng.uniform(10, 24)
        g0, g1 = rng.uniform(0.05, 0.35), rng.uniform(0.65, 0.95)
        gain_db = change * np.clip((x - g0) / (g1 - g0), 0, 1)
    else:
        change = 0.0  # a slow wobble of at most 1.5 dB, so "steady" is not "perfectly flat"
        gain_db = rng.uniform(0, 1.5) * np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * x * n / sr + rng.uniform(0, 6))
    signal = signal * 10 ** (gain_db / 20) * _ramp(n, sr, 0.02)
    params = {"source": source, "change_db": float(change)}
    verb = {1: f"gets louder by {change:.0f} dB", -1: f"gets softer by {-change:.0f} dB", 0: "stays equally loud"}
    return signal, params, f"a {source} that {verb[direction]}"


def _burst_env(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = _seconds(sr, n)
    return np.minimum(t / rng.uniform(0.002, 0.02), 1.0) * np.exp(-t / rng.uniform(0.05, 0.3)) * _ramp(n, sr, 0.003)


def _synth_sound_type(rng, answer, config, n):
    sr = config.sample_rate
    out = np.zeros(n)
    params: dict[str, Any] = {"sound_type": answer}
    if answer == "a noise burst":
        bursts = int(rng.integers(1, 3))
        for _ in range(bursts):
            length = int(rng.uniform(0.15, 0.5) * sr)
            low = _log_uniform(rng, 100, 3000)
            seg = _bandpass_noise(rng, length, sr, low, min(0.45 * sr, low * _log_uniform(rng, 2, 8)))
            out += _place(n, int(rng.uniform(0, n - length)), seg * _burst_env(length, sr, rng))
        params["n_bursts"] = bursts
        caption = "a burst of noise" if bursts == 1 else "two bursts of noise"
    elif answer == "a click train":
        rate = _log_uniform(rng, 6, 40)
        start, stop = rng.uniform(0, 0.2) * n / sr, n / sr * rng.uniform(0.7, 1.0)
        grid = np.arange(start, stop, 1 / rate)
        times = grid + rng.normal(0, 0.05 / rate, len(grid))  # a little timing jitter
        click_hz, click_len = _log_uniform(rng, 1000, 5000), int(0.004 * sr)
        t = _seconds(sr, click_len)
        click = np.sin(2 * np.pi * click_hz * t) * np.exp(-t / 0.0008)
        for time in times:
            i = int(np.clip(time, 0, n / sr) * sr)
            out[i : i + click_len] += click[: max(0, n - i)][: click_len] * rng.uniform(0.7, 1.0)
        params["click_rate_hz"] = float(rate)
        caption = f"a train of clicks at {rate:.0f} per second"
    elif answer == "a chirp":
        sweeps = int(rng.integers(1, 3))
        up = bool(rng.integers(0, 2))
        f_lo = _log_uniform(rng, 200, 800)
        f_hi = min(0.4 * sr, f_lo * _log_uniform(rng, 3, 8))
        f_a, f_b = (f_lo, f_hi) if up else (f_hi, f_lo)
        for i in range(sweeps):
            length = int(rng.uniform(0.2, 0.9 / sweeps) * n)
            f = f_a * (f_b / f_a) ** np.linspace(0, 1, length)
            seg = np.sin(2 * np.pi * np.cumsum(f) / sr) * _ramp(length, sr, 0.01)
            slot = n // sweeps
            out += _place(n, i * slot + int(rng.uniform(0, max(1, slot - length))), seg)
        params.update(n_sweeps=sweeps, chirp_start_hz=float(f_a), chirp_end_hz=float(f_b))
        caption = f"a chirp sweeping {'up' if up else 'down'} from {f_a:.0f} Hz to {f_b:.0f} Hz"
    elif answer == "a hum":
        f0 = _log_uniform(rng, 50, 120)
        length = int(rng.uniform(0.6, 1.0) * n)
        amps = np.arange(1, 25) ** -rng.uniform(0.7, 1.5)
        timbre = {"kind": "hum", "amps": amps, "phases": rng.uniform(0, 6, 24), "inharmonicity": 0.0}
        t = _seconds(sr, length)
        wobble = 1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t)
        seg = _harmonic(np.full(length, f0), timbre, sr, max_hz=2000) * wobble * _ramp(length, sr, 0.05)
        out = _place(n, int(rng.uniform(0, n - length)), seg)
        params["hum_hz"] = float(f0)
        caption = f"a low hum at {f0:.0f} Hz"
    elif answer == "beeps":
        beeps = int(rng.integers(2, 6))
        freq = _log_uniform(rng, 500, 2500)
        length = int(rng.uniform(0.06, 0.15) * sr)
        period = int(min(rng.uniform(length / sr + 0.06, 0.3) * sr, (0.95 * n - length) / (beeps - 1)))
        start = int(rng.uniform(0, n - (beeps - 1) * period - length))
        beep = _tone_segment(freq, length, sr, 1, rng) * _ramp(length, sr, 0.005)
        for i in range(beeps):
            out += _place(n, start + i * period, beep)
        params.update(n_beeps=beeps, beep_hz=float(freq))
        caption = f"{NUMBER_WORDS[beeps]} short beeps at {freq:.0f} Hz"
    else:
        raise ValueError(f"no sound type {answer!r}")
    return out, params, caption


# Formants (F1, F2, F3) of an adult voice; each clip scales them by a vocal-tract factor and jitters them.
VOWEL_FORMANTS_HZ = {
    "a": (730.0, 1200.0, 2500.0),
    "e": (440.0, 1950.0, 2600.0),
    "i": (290.0, 2250.0, 2950.0),
    "o": (500.0, 880.0, 2450.0),
    "u": (310.0, 720.0, 2350.0),
}
# one word each, spelled as it sounds: a (father) = ah, e (say) = ay, i (see) = ee, o (go) = oh, u (blue) = oo
_VOWEL_ANSWERS = {"a": "ah", "e": "ay", "i": "ee", "o": "oh", "u": "oo"}


def _resonators_sos(formants, bandwidths, sr: int) -> np.ndarray:
    """Klatt-style two-pole resonators (unity gain at 0 Hz) as second-order sections, (n_formants, 6)."""
    sos = []
    for freq, bw in zip(formants, bandwidths):
        if freq >= 0.45 * sr:  # e.g. F4 at 8 kHz: no room below Nyquist
            continue
        r = np.exp(-np.pi * bw / sr)
        a1, a2 = -2 * r * np.cos(2 * np.pi * freq / sr), r * r
        sos.append([1 + a1 + a2, 0.0, 0.0, 1.0, a1, a2])
    return np.asarray(sos)


def _synth_vowel(rng, answer, config, n):
    from scipy.signal import sosfilt

    sr = config.sample_rate
    vowel = next(v for v, text in _VOWEL_ANSWERS.items() if text == answer)
    f0 = _log_uniform(rng, 90, 250)
    scale = rng.uniform(0.9, 1.15)  # vocal-tract length: longer (lower formants) to shorter
    formants = [f * scale * rng.uniform(0.96, 1.04) for f in VOWEL_FORMANTS_HZ[vowel]]
    formants.append(3500 * scale)
    bandwidths = [rng.uniform(50, 90), rng.uniform(60, 110), rng.uniform(90, 150), rng.uniform(150, 250)]
    onset = int(rng.uniform(0, 0.2) * n)
    length = max(int(0.5 * config.sample_rate), int(rng.uniform(0.6, 1.0) * (n - onset)))
    length = min(length, n - onset)
    vib, depth = _vibrato(rng, length, sr, max_cents=40)
    tilt = rng.uniform(1.0, 1.6)  # glottal source (-12 dB/oct) plus lip radiation (+6), give or take
    k = np.arange(1, 81)
    glottal = {"kind": "voice", "amps": k**-tilt, "phases": rng.uniform(-0.3, 0.3, 80), "inharmonicity": 0.0}
    source = _harmonic(f0 * vib, glottal, sr, max_hz=min(5500.0, 0.45 * sr))
    source += rng.uniform(0.0, 0.05) * _bandpass_noise(rng, length, sr, 500, 0.45 * sr)  # breath
    voice = sosfilt(_resonators_sos(formants, bandwidths, sr), source)
    t = _seconds(sr, length)
    env = np.minimum(t / rng.uniform(0.03, 0.1), 1.0) * np.minimum((length / sr - t) / rng.uniform(0.05, 0.15), 1.0)
    params = {
        "vowel": vowel,
        "f0_hz": float(f0),
        "formants_hz": [float(f) for f in formants[:3]],
        "vibrato_cents": depth,
        "onset_s": onset / sr,
        "tone_s": length / sr,
    }
    return _place(n, onset, voice * env), params, f"the vowel {vowel} sung at {f0:.0f} Hz"


_BEEP_MIN_S, _GAP_MIN_S = 0.04, 0.06


def _synth_count(rng, answer, config, n):
    sr = config.sample_rate
    beeps = int(answer)
    freq = _log_uniform(rng, 400, 2500)
    harmonics = int(rng.integers(1, 4))
    avail = 0.9 * n / sr
    # total sounding time is drawn independently of the count, so "how much is on" does not give the answer
    dur = float(np.clip(rng.uniform(0.15, 0.6) / beeps, _BEEP_MIN_S, 0.3))
    gap = rng.uniform(_GAP_MIN_S, 0.25)
    span = beeps * dur + (beeps - 1) * gap
    if span > avail:  # squeeze into the clip, never below the minimum beep and gap
        shrink = (avail - min_beep_span(beeps)) / (span - min_beep_span(beeps))
        dur = _BEEP_MIN_S + (dur - _BEEP_MIN_S) * shrink
        gap = _GAP_MIN_S + (gap - _GAP_MIN_S) * shrink
        span = beeps * dur + (beeps - 1) * gap
    t = rng.uniform(0, n / sr - span)
    out = np.zeros(n)
    for _ in range(beeps):
        length = int(dur * rng.uniform(0.85, 1.0) * sr)  # a little shorter at most: the gaps stay
        seg = _tone_segment(freq, length, sr, harmonics, rng) * _ramp(length, sr, 0.005)
        out += _place(n, int(t * sr), seg * 10 ** (rng.uniform(-4, 4) / 20))
        t += dur + gap
    params = {"n_beeps": beeps, "beep_hz": float(freq), "beep_s": float(dur), "gap_s": float(gap)}
    word = NUMBER_WORDS[beeps]
    return out, params, f"{word} beep{'s' if beeps > 1 else ''} at {freq:.0f} Hz"


register_category(Category(
    "note",
    answers=lambda config: list(config.notes),
    questions=("Which note is played?", "Which musical note do you hear?", "What note does this tone play?"),
    synthesize=_synth_note,
))
register_category(Category(
    "contour",
    answers=lambda config: list(_CONTOURS),
    questions=("Does the pitch rise, fall, or stay the same?", "How does the pitch of the tone change?"),
    synthesize=_synth_contour,
))
register_category(Category(
    "loudness",
    answers=lambda config: list(_LOUDNESS),
    questions=("Does the sound get louder, softer, or stay the same?", "How does the loudness change over time?"),
    synthesize=_synth_loudness,
))
register_category(Category(
    "sound_type",
    answers=lambda config: ["a noise burst", "a click train", "a chirp", "a hum", "beeps"],
    questions=("What kind of sound is this?", "Which of these best describes the sound?"),
    synthesize=_synth_sound_type,
))
register_category(Category(
    "vowel",
    answers=lambda config: list(_VOWEL_ANSWERS.values()),
    questions=("Which vowel is being sung?", "What vowel does the voice sing?"),
    synthesize=_synth_vowel,
))
register_category(Category(
    "count",
    answers=lambda config: [str(i) for i in range(1, config.max_beeps + 1)],
    questions=("How many beeps are there?", "How many beeps do you hear?"),
    synthesize=_synth_count,
))
