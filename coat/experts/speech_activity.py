"""Speech-activity expert: Silero VAD as a frame-level teacher of where someone speaks.

Target ``speech_activity`` (dim 1; 31.25 frames/s; kind ``multilabel``, so BCE on soft labels): Silero VAD's
probability that frame ``i``, the 32 ms chunk ``[512 i, 512 (i + 1))`` at 16 kHz (``[256 i, 256 (i + 1))`` at 8 kHz),
holds speech, in [0, 1]. The model runs over the clip in chunks, carrying its recurrent state forward,
as Silero does for a stream; right-padding a clip in a batch therefore leaves its frames unchanged.

The ``silero-vad`` wheel (the ``speech`` extra) ships the model (TorchScript, ``silero_vad/data/silero_vad.jit``);
it is loaded from there with ``torch.jit.load``, never through ``torch.hub``, so nothing is downloaded.
Silero Team, "Silero VAD: pre-trained enterprise-grade Voice Activity Detector", github.com/snakers4/silero-vad.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from coat import extras
from coat.experts.base import Expert, TargetSpec

SILERO_MODEL_FILE = "silero_vad.jit"
WHAT = "the speech-activity expert"


def silero_model_path() -> str:
    """Path of the TorchScript model inside the installed silero-vad package.

    Found without importing ``silero_vad``: its ``__init__`` calls ``torch.set_num_threads(1)`` for the whole
    process, which would slow everything else that runs after the targets.
    """
    path = os.path.join(extras.package_dir("silero_vad", "silero-vad", "speech", WHAT), "data", SILERO_MODEL_FILE)
    if not os.path.isfile(path):
        raise extras.missing("silero-vad", "speech", WHAT, f"its model {path} is missing; reinstall it")
    return path


class SpeechActivityExpert(Expert):
    """Silero VAD speech probability per 32 ms frame.

    sample_rate: 16000 (512-sample frames) or 8000 (256-sample frames), the two rates the model takes.
    """

    name = "speech_activity"

    def __init__(self, sample_rate: int = 16000, device: str | torch.device = "cpu"):
        super().__init__(device)
        if sample_rate not in (8000, 16000):
            raise ValueError(f"Silero VAD takes 8000 or 16000 Hz audio, got sample_rate={sample_rate}")
        self.sample_rate = sample_rate
        self.chunk = 512 if sample_rate == 16000 else 256
        self._model = None

    def specs(self) -> tuple[TargetSpec, ...]:
        return (TargetSpec("speech_activity", self.sample_rate, self.sample_rate / self.chunk, 1, "multilabel"),)

    def params(self) -> dict[str, Any]:
        return {"model": SILERO_MODEL_FILE, "chunk": self.chunk,
                "silero_vad": extras.version("silero-vad", "speech", WHAT)}

    def load(self) -> None:
        model = torch.jit.load(silero_model_path(), map_location="cpu")
        self._model = model.to(self.device).eval()

    def compute(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[dict[str, np.ndarray]]:
        spec = self.specs()[0]
        # (batch, chunks): zero-pads to whole chunks, resets the state, then steps through time for the batch
        probs = self._model.audio_forward(waveforms.float(), self.sample_rate)
        return [{"speech_activity": probs[b, : spec.num_frames(int(n)), None].float().cpu().numpy()}
                for b, n in enumerate(lengths.tolist())]
