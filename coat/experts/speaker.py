"""Speaker expert: Resemblyzer's GE2E voice encoder as a clip-level teacher of who speaks.

Target ``speaker`` (dim 256; clip level; kind ``embedding``, so cosine + L2): the clip's d-vector, computed as
Resemblyzer's ``embed_utterance`` does: the clip's volume is raised to -30 dBFS if quieter, silences longer than
about 0.2 s are cut out with webrtcvad (``trim_silence``), the rest is cut into 1.6 s partial utterances
(``rate`` per second, the last one kept if it is ``min_coverage`` full), each partial goes through the 3-layer LSTM
encoder, and the mean of the partial embeddings is L2-normalised. The embedding's entries are >= 0 (a ReLU comes
before the normalisation), so two clips' cosine similarity lies in [0, 1].

The ``Resemblyzer`` wheel (the ``speech`` extra) ships the weights (``resemblyzer/pretrained.pt``, 17 MB); nothing
is downloaded. Wan et al., "Generalized End-to-End Loss for Speaker Verification", ICASSP 2018; Resemblyzer by
Resemble AI (github.com/resemble-ai/Resemblyzer). All partial utterances of a batch go through the encoder together.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from coat import extras
from coat.experts.base import Expert, TargetSpec

WHAT = "the speaker expert"
EMBEDDING_DIM = 256
PARTIAL_FRAMES = 160  # 1.6 s of 10 ms mel frames: Resemblyzer's partial utterance
MIN_TRIMMED_SECONDS = 0.1  # a clip that trimming leaves shorter than this (no speech found) is embedded untrimmed


class SpeakerExpert(Expert):
    """Resemblyzer d-vector of the whole clip (16 kHz).

    trim_silence: cut silences out with webrtcvad first, as Resemblyzer's ``preprocess_wav`` does.
    rate: partial utterances per second (Resemblyzer's default 1.3; at least 0.625 so that they cover the clip).
    min_coverage: keep the last partial utterance if at least this fraction of it is audio.
    partials_per_call: partial utterances per encoder call (memory only; does not change the output).
    """

    name = "speaker"
    sample_rate = 16000

    def __init__(self, trim_silence: bool = True, rate: float = 1.3, min_coverage: float = 0.75,
                 partials_per_call: int = 64, device: str | torch.device = "cpu"):
        super().__init__(device)
        if not 0.625 <= rate <= 100:
            raise ValueError(f"rate must be in [0.625, 100] partial utterances per second, got {rate}")
        if not 0 < min_coverage <= 1:
            raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage}")
        self.trim_silence, self.rate, self.min_coverage = bool(trim_silence), float(rate), float(min_coverage)
        self.partials_per_call = partials_per_call
        self._encoder = None

    def specs(self) -> tuple[TargetSpec, ...]:
        return (TargetSpec("speaker", self.sample_rate, None, EMBEDDING_DIM, "embedding"),)

    def params(self) -> dict[str, Any]:
        return {"trim_silence": self.trim_silence, "rate": self.rate, "min_coverage": self.min_coverage,
                "weights": "resemblyzer/pretrained.pt", "resemblyzer": extras.version("Resemblyzer", "speech", WHAT)}

    def load(self) -> None:
        resemblyzer = extras.require("resemblyzer", "Resemblyzer", "speech", WHAT)
        if self._encoder is None:
            self._encoder = resemblyzer.VoiceEncoder(device=self.device, verbose=False).eval()
        else:  # after .to(device): move the loaded encoder
            self._encoder = self._encoder.to(self.device)
            self._encoder.device = self.device

    def partial_mels(self, audio: np.ndarray) -> np.ndarray:
        """The ``(partials, 160, 40)`` mel spectrograms of one clip's partial utterances."""
        from resemblyzer.audio import normalize_volume, trim_long_silences, wav_to_mel_spectrogram
        from resemblyzer.hparams import audio_norm_target_dBFS

        wav = audio.astype(np.float32)
        if not np.any(wav):  # digital silence: nothing to normalise or trim (Resemblyzer would divide by zero)
            wav_slices, mel_slices = self._encoder.compute_partial_slices(len(wav), self.rate, self.min_coverage)
            return np.stack([wav_to_mel_spectrogram(np.zeros(wav_slices[-1].stop, np.float32))[s]
                             for s in mel_slices])
        wav = normalize_volume(wav, audio_norm_target_dBFS, increase_only=True)
        if self.trim_silence:
            trimmed = trim_long_silences(wav)
            if len(trimmed) >= MIN_TRIMMED_SECONDS * self.sample_rate:
                wav = trimmed
        wav_slices, mel_slices = self._encoder.compute_partial_slices(len(wav), self.rate, self.min_coverage)
        if wav_slices[-1].stop >= len(wav):
            wav = np.pad(wav, (0, wav_slices[-1].stop - len(wav)))
        mel = wav_to_mel_spectrogram(wav)
        return np.stack([mel[s] for s in mel_slices])

    def compute(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[dict[str, np.ndarray]]:
        audio = waveforms.detach().float().cpu().numpy()
        mels = [self.partial_mels(audio[b, : int(n)]) for b, n in enumerate(lengths.tolist())]
        counts = [len(m) for m in mels]
        stacked = torch.from_numpy(np.concatenate(mels)).to(self.device)
        partials = torch.cat([self._encoder(chunk) for chunk in stacked.split(self.partials_per_call)])
        out = []
        for part in partials.split(counts):
            mean = part.mean(0)
            out.append({"speaker": (mean / mean.norm().clamp_min(1e-12))[None].float().cpu().numpy()})
        return out
