"""Paralinguistic expert: the eGeMAPS low-level descriptors of openSMILE, frame by frame.

eGeMAPS (the extended Geneva Minimalistic Acoustic Parameter Set, v02) is the standard minimal parameter set for
voice and affect research: 25 descriptors every 10 ms. openSMILE reports 10 of them in every frame and 15 only
where it finds a voice (they are 0 elsewhere, or -201 dB for the formant amplitudes), so there are three targets,
all at 100 frames/s at 16 kHz, frame ``i`` centred on sample ``160 i`` like ``pitch`` and ``logmel``:

- ``egemaps`` (dim 10; kind ``regression``): loudness, alpha ratio, Hammarberg index, spectral slopes 0-500 and
  500-1500 Hz, spectral flux, MFCC 1-4.
- ``egemaps_voiced`` (dim 15; kind ``regression``, weighted by ``egemaps_voicing``): F0 (semitones from 27.5 Hz),
  jitter, shimmer, harmonics-to-noise ratio, H1-H2, H1-A3, and F1, F2, F3 with their bandwidths and amplitudes.
- ``egemaps_voicing`` (dim 1; kind ``multilabel``): 1 where openSMILE found F0 and all three formants, else 0.

Each descriptor ``x`` is stored as ``(x - centre) / scale`` with the fixed constants of :data:`EGEMAPS_LLDS`, chosen
from its unit and the range adult speech spans (F0 in semitones: centre 30 = 155 Hz, scale 8 semitones; formants in
Hz: F1 500 +- 200, F2 1500 +- 500, F3 2500 +- 500; levels in dB: +-10 dB), so that speech falls roughly in
[-3, 3] and the heads' smooth-L1 loss weighs the descriptors alike. The constants are fixed rather than fitted per
clip so that absolute differences (a high voice against a low one) survive. Undefined voiced values (unvoiced
frames) are stored as 0 and carry no weight.

openSMILE's row ``k`` describes the 20 ms window that starts at ``10 k`` ms (its F0, jitter, shimmer and formant
descriptors come from 60 ms windows reported on the same grid), so frame ``i`` takes row ``i - 1``; each clip gets
50 ms of zeros at its end so that the last frames have windows of their own.
The ``opensmile`` wheel (the ``speech`` extra) ships openSMILE and the eGeMAPSv02 configuration; nothing is
downloaded. Eyben et al., "The Geneva Minimalistic Acoustic Parameter Set (GeMAPS) for Voice Research and Affective
Computing", IEEE Trans. Affective Computing 7(2), 2016.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from coat import extras
from coat.experts.base import Expert, TargetSpec
from coat.experts.framing import pad_to_min
from coat.targets import fit_frames

WHAT = "the eGeMAPS expert"
FEATURE_SET = "eGeMAPSv02"
MIN_SAMPLES = 1600  # openSMILE's 60 ms F0 windows give no row for shorter audio: clips are zero-padded to 0.1 s
END_PADDING = 800  # and 50 ms of zeros after every clip, so that its last windows reach its end (as STFT centring)

# (openSMILE column, centre, scale, unit): the value stored is (x - centre) / scale
EGEMAPS_LLDS: tuple[tuple[str, float, float, str], ...] = (
    ("Loudness_sma3", 0.0, 1.0, "sone (auditory loudness)"),
    ("alphaRatio_sma3", -10.0, 10.0, "dB, 50-1000 Hz vs 1-5 kHz energy"),
    ("hammarbergIndex_sma3", 15.0, 10.0, "dB, strongest peak 0-2 kHz vs 2-5 kHz"),
    ("slope0-500_sma3", 0.05, 0.05, "dB/Hz"),
    ("slope500-1500_sma3", 0.0, 0.05, "dB/Hz"),
    ("spectralFlux_sma3", 0.0, 0.5, "normalised"),
    ("mfcc1_sma3", 0.0, 20.0, ""),
    ("mfcc2_sma3", 0.0, 20.0, ""),
    ("mfcc3_sma3", 0.0, 20.0, ""),
    ("mfcc4_sma3", 0.0, 20.0, ""),
    ("F0semitoneFrom27.5Hz_sma3nz", 30.0, 8.0, "semitones re 27.5 Hz"),
    ("jitterLocal_sma3nz", 0.02, 0.02, "fraction of the period"),
    ("shimmerLocaldB_sma3nz", 1.0, 1.0, "dB"),
    ("HNRdBACF_sma3nz", 5.0, 5.0, "dB"),
    ("logRelF0-H1-H2_sma3nz", 5.0, 10.0, "dB"),
    ("logRelF0-H1-A3_sma3nz", 15.0, 15.0, "dB"),
    ("F1frequency_sma3nz", 500.0, 200.0, "Hz"),
    ("F1bandwidth_sma3nz", 1000.0, 500.0, "Hz"),
    ("F1amplitudeLogRelF0_sma3nz", -50.0, 30.0, "dB re F0"),
    ("F2frequency_sma3nz", 1500.0, 500.0, "Hz"),
    ("F2bandwidth_sma3nz", 1000.0, 500.0, "Hz"),
    ("F2amplitudeLogRelF0_sma3nz", -50.0, 30.0, "dB re F0"),
    ("F3frequency_sma3nz", 2500.0, 500.0, "Hz"),
    ("F3bandwidth_sma3nz", 1000.0, 500.0, "Hz"),
    ("F3amplitudeLogRelF0_sma3nz", -50.0, 30.0, "dB re F0"),
)
FRAME_LLDS = tuple(name for name, *_ in EGEMAPS_LLDS if not name.endswith("nz"))  # defined in every frame
VOICED_LLDS = tuple(name for name, *_ in EGEMAPS_LLDS if name.endswith("nz"))  # defined where there is a voice
_UNDEFINED_DB = -201.0  # openSMILE's value of an amplitude it could not measure


def normalise(name: str, values: np.ndarray) -> np.ndarray:
    """Raw openSMILE values of descriptor ``name`` -> the stored scale."""
    centre, scale = next((c, s) for n, c, s, _ in EGEMAPS_LLDS if n == name)
    return (np.asarray(values, dtype=np.float64) - centre) / scale


def denormalise(name: str, values: np.ndarray) -> np.ndarray:
    """The stored scale -> openSMILE's units (semitones, Hz, dB, ...)."""
    centre, scale = next((c, s) for n, c, s, _ in EGEMAPS_LLDS if n == name)
    return np.asarray(values, dtype=np.float64) * scale + centre


class EGeMAPSExpert(Expert):
    """eGeMAPS v02 low-level descriptors at 100 frames/s (16 kHz audio). No parameters: the set is standard."""

    name = "egemaps"
    sample_rate = 16000
    hop_length = 160

    def __init__(self, device: str | torch.device = "cpu"):
        super().__init__(device)  # openSMILE runs on the CPU whatever the device
        self._smile = None

    def specs(self) -> tuple[TargetSpec, ...]:
        rate = self.sample_rate / self.hop_length
        return (
            TargetSpec("egemaps", self.sample_rate, rate, len(FRAME_LLDS), "regression"),
            TargetSpec("egemaps_voiced", self.sample_rate, rate, len(VOICED_LLDS), "regression",
                       weight_by="egemaps_voicing"),
            TargetSpec("egemaps_voicing", self.sample_rate, rate, 1, "multilabel"),
        )

    def params(self) -> dict[str, Any]:
        return {"feature_set": FEATURE_SET, "level": "lld", "frame_shift": 1,
                "normalisation": [[n, c, s] for n, c, s, _ in EGEMAPS_LLDS],
                "opensmile": extras.version("opensmile", "speech", WHAT)}

    def load(self) -> None:
        opensmile = extras.require("opensmile", "opensmile", "speech", WHAT)
        self._smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                      feature_level=opensmile.FeatureLevel.LowLevelDescriptors)

    def descriptors(self, audio: np.ndarray) -> dict[str, np.ndarray]:
        """openSMILE's raw descriptors of one clip: column name -> (rows,), row ``k`` starting at ``10 k`` ms."""
        audio = np.pad(pad_to_min(audio.astype(np.float32), MIN_SAMPLES), (0, END_PADDING))
        table = self._smile.process_signal(audio, self.sample_rate)
        return {name: table[name].to_numpy(np.float64) for name, *_ in EGEMAPS_LLDS}

    def compute(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[dict[str, np.ndarray]]:
        audio = waveforms.detach().float().cpu().numpy()
        frames_spec = self.specs()[0]
        out = []
        for b, n in enumerate(lengths.tolist()):
            raw = self.descriptors(audio[b, : int(n)])
            count = frames_spec.num_frames(int(n))
            voiced = raw["F0semitoneFrom27.5Hz_sma3nz"] > 0
            for f in (1, 2, 3):  # a formant openSMILE could not track leaves the voiced set undefined
                voiced &= (raw[f"F{f}frequency_sma3nz"] > 0) & (raw[f"F{f}amplitudeLogRelF0_sma3nz"] > _UNDEFINED_DB)
            voiced &= raw["logRelF0-H1-A3_sma3nz"] > _UNDEFINED_DB
            every = np.stack([normalise(name, raw[name]) for name in FRAME_LLDS], -1)
            where_voiced = np.stack([normalise(name, raw[name]) for name in VOICED_LLDS], -1) * voiced[:, None]
            out.append({
                "egemaps": _shifted(every, count),
                "egemaps_voiced": _shifted(where_voiced, count),
                "egemaps_voicing": _shifted(voiced[:, None].astype(np.float32), count),
            })
        return out


def _shifted(rows: np.ndarray, count: int) -> np.ndarray:
    """Frame ``i`` <- row ``i - 1`` (frame 0 <- row 0), exactly ``count`` frames."""
    return fit_frames(np.concatenate([rows[:1], rows]), count)
