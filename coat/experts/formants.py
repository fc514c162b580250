"""Formant expert: Praat's formant tracker (Burg LPC) as a frame-level teacher of vowel quality.

The first three formants are the acoustic correlates of vowel identity (F1 rises as the tongue lowers, F2 as it
moves forward: /i/ has a low F1 and a high F2, /a/ a high F1 and a low F2). Targets at 100 frames/s at 16 kHz, frame
``i`` centred on sample ``160 i`` like ``pitch`` and ``logmel``:

- ``formants`` (dim 3; kind ``regression``, weighted by ``formant_voicing``): F1, F2, F3 in Bark (Traunmueller's
  ``z = 26.81 f / (1960 + f) - 0.53``: 300 Hz is 2.9 Bark, 1000 Hz 8.5, 2500 Hz 14.5), a perceptual scale on which
  equal steps are about equally audible. Where Praat finds no formant the value is 0 (with no weight).
- ``formant_voicing`` (dim 1; kind ``multilabel``): 1 where Praat's pitch tracker finds the frame voiced and all three
  formants are defined, else 0. Formants of unvoiced frames (fricatives, silence) describe noise, not a vowel.

Praat's ``To Formant (burg)``: ``max_formants`` (5) formants below ``max_formant_hz`` (5500 Hz, Praat's value for
adult female voices; 5000 suits adult male voices), ``window_s`` (0.025 s), pre-emphasis from 50 Hz; ``To Pitch``
with ``pitch_floor`` / ``pitch_ceiling`` for the voicing. Both are read at each frame's centre (linear
interpolation between Praat's own frames, nearest frame for the voicing).
The ``praat-parselmouth`` wheel (the ``speech`` extra) ships Praat itself; nothing is downloaded.
Boersma & Weenink, Praat (praat.org); Jadoul, Thompson & de Boer, "Introducing Parselmouth: A Python interface to
Praat", Journal of Phonetics 71, 2018.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from coat import extras
from coat.experts.base import Expert, TargetSpec

WHAT = "the formant expert"


def hz_to_bark(hz: np.ndarray | float) -> np.ndarray:
    """Traunmueller (1990): ``26.81 f / (1960 + f) - 0.53``."""
    hz = np.asarray(hz, dtype=np.float64)
    return 26.81 * hz / (1960.0 + hz) - 0.53


def bark_to_hz(bark: np.ndarray | float) -> np.ndarray:
    bark = np.asarray(bark, dtype=np.float64)
    return 1960.0 * (bark + 0.53) / (26.28 - bark)


class FormantExpert(Expert):
    """F1-F3 (Bark) and their validity per 10 ms frame, from Praat.

    max_formant_hz: the ceiling the formants are searched under (5500 Hz female/child voices, 5000 Hz male).
    max_formants: how many formants Praat fits below it (5, its default).
    window_s: Praat's effective analysis window (its Gaussian window is twice as long).
    pitch_floor, pitch_ceiling: the pitch tracker's range in Hz, for the voicing.
    """

    name = "formants"
    sample_rate = 16000
    hop_length = 160

    def __init__(self, max_formant_hz: float = 5500.0, max_formants: float = 5.0, window_s: float = 0.025,
                 pitch_floor: float = 75.0, pitch_ceiling: float = 600.0, device: str | torch.device = "cpu"):
        super().__init__(device)  # Praat runs on the CPU whatever the device
        if not 1000 <= max_formant_hz <= self.sample_rate / 2:
            raise ValueError(f"max_formant_hz must be in 1000..{self.sample_rate // 2}, got {max_formant_hz}")
        if not 3 <= max_formants <= 7:
            raise ValueError(f"max_formants must be in 3..7 (three are kept), got {max_formants}")
        if not 0 < pitch_floor < pitch_ceiling:
            raise ValueError(f"need 0 < pitch_floor < pitch_ceiling, got {pitch_floor}, {pitch_ceiling}")
        self.max_formant_hz, self.max_formants, self.window_s = float(max_formant_hz), float(max_formants), window_s
        self.pitch_floor, self.pitch_ceiling = float(pitch_floor), float(pitch_ceiling)
        self._parselmouth = None

    def specs(self) -> tuple[TargetSpec, ...]:
        rate = self.sample_rate / self.hop_length
        return (
            TargetSpec("formants", self.sample_rate, rate, 3, "regression", weight_by="formant_voicing"),
            TargetSpec("formant_voicing", self.sample_rate, rate, 1, "multilabel"),
        )

    def params(self) -> dict[str, Any]:
        return {"max_formant_hz": self.max_formant_hz, "max_formants": self.max_formants, "window_s": self.window_s,
                "pre_emphasis_hz": 50.0, "pitch_floor": self.pitch_floor, "pitch_ceiling": self.pitch_ceiling,
                "scale": "bark-traunmueller", "parselmouth": extras.version("praat-parselmouth", "speech", WHAT)}

    def load(self) -> None:
        self._parselmouth = extras.require("parselmouth", "praat-parselmouth", "speech", WHAT)

    def track(self, audio: np.ndarray, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """One clip -> F1-F3 in Hz ``(num_frames, 3)`` (NaN where undefined) and voicing ``(num_frames,)`` bool."""
        sound = self._parselmouth.Sound(audio.astype(np.float64), sampling_frequency=self.sample_rate)
        times = np.arange(num_frames) * self.hop_length / self.sample_rate
        hz = np.full((num_frames, 3), np.nan)
        voiced = np.zeros(num_frames, dtype=bool)
        try:
            formant = sound.to_formant_burg(time_step=self.hop_length / self.sample_rate,
                                            max_number_of_formants=self.max_formants,
                                            maximum_formant=self.max_formant_hz, window_length=self.window_s,
                                            pre_emphasis_from=50.0)
            pitch = sound.to_pitch(time_step=self.hop_length / self.sample_rate, pitch_floor=self.pitch_floor,
                                   pitch_ceiling=self.pitch_ceiling)
        except self._parselmouth.PraatError:  # a clip shorter than Praat's analysis window: nothing to measure
            return hz, voiced
        for i, t in enumerate(times):
            for f in range(3):
                hz[i, f] = formant.get_value_at_time(f + 1, float(t))
        f0 = pitch.selected_array["frequency"]
        if len(f0):
            nearest = np.clip(np.round((times - pitch.x1) / pitch.dx).astype(int), 0, len(f0) - 1)
            inside = (times >= pitch.x1 - pitch.dx / 2) & (times <= pitch.x1 + (len(f0) - 0.5) * pitch.dx)
            voiced = (f0[nearest] > 0) & inside
        return hz, voiced

    def compute(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[dict[str, np.ndarray]]:
        audio = waveforms.detach().float().cpu().numpy()
        spec = self.specs()[0]
        out = []
        for b, n in enumerate(lengths.tolist()):
            hz, voiced = self.track(audio[b, : int(n)], spec.num_frames(int(n)))
            valid = voiced & np.isfinite(hz).all(-1)
            bark = np.where(np.isfinite(hz), hz_to_bark(np.nan_to_num(hz)), 0.0)
            out.append({"formants": bark.astype(np.float32),
                        "formant_voicing": valid[:, None].astype(np.float32)})
        return out
