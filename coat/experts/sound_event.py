"""Sound-event expert: a multi-label audio tagger (AudioSet-style) as a sound-event teacher.

Targets (kind ``multilabel``, dim = the tagger's number of classes, 527 for AudioSet):

- ``sound_event_frames``: (frames, classes) sigmoid posteriors of ``window_s``-second windows every ``hop_s``
  seconds (defaults 1 s every 0.5 s, so frame rate 2), each window centred on its frame and kept inside the clip.
- ``sound_event``: (1, classes) posteriors of the whole clip (``clip=True``).

Any transformers ``AutoModelForAudioClassification`` checkpoint with a multi-label head works, e.g.
``MIT/ast-finetuned-audioset-10-10-0.4593`` (Gong et al., "AST: Audio Spectrogram Transformer", Interspeech 2021).
AST takes at most 10.24 s, so its clip-level target describes the first 10.24 s of longer clips; the frame-level
windows cover the whole clip.
"""

from __future__ import annotations

from typing import Any

import torch

from coat.experts.audio_classification import HFAudioClassifier, WindowedClassifierExpert
from coat.experts.base import TargetSpec

DEFAULT_SOUND_EVENT_MODEL = "MIT/ast-finetuned-audioset-10-10-0.4593"
KNOWN_NUM_LABELS = {DEFAULT_SOUND_EVENT_MODEL: 527}  # AudioSet: specs() need not reach the hub


class SoundEventExpert(WindowedClassifierExpert):
    """Windowed multi-label sound-event posteriors.

    source: hub id or local folder of the tagger.
    window_s, hop_s: the frame-level windows (seconds); frame rate is ``1 / hop_s``.
    clip: also produce the clip-level ``sound_event`` target.
    segments_per_call: segments per forward (memory only).
    """

    name = "sound_event"
    what = "sound-event model"
    clip_target, frames_target = "sound_event", "sound_event_frames"

    def __init__(
        self,
        source: str = DEFAULT_SOUND_EVENT_MODEL,
        window_s: float = 1.0,
        hop_s: float = 0.5,
        clip: bool = True,
        sample_rate: int = 16000,
        segments_per_call: int = 16,
        device: str | torch.device = "cpu",
    ):
        super().__init__(device)
        self._set_windows(window_s, hop_s, clip, frames=True)
        self.source = str(source)
        self.sample_rate, self.segments_per_call = sample_rate, segments_per_call
        self._num_labels: int | None = KNOWN_NUM_LABELS.get(self.source)

    def specs(self) -> tuple[TargetSpec, ...]:
        if self._num_labels is None:
            self._num_labels = self._config_num_labels()
        specs = [TargetSpec("sound_event_frames", self.sample_rate, 1.0 / self.hop_s, self._num_labels, "multilabel")]
        if self.clip:
            specs.append(TargetSpec("sound_event", self.sample_rate, None, self._num_labels, "multilabel"))
        return tuple(specs)

    def params(self) -> dict[str, Any]:
        return {"source": self.source, "window_s": self.window_s, "hop_s": self.hop_s, "clip": self.clip,
                "activation": "sigmoid"}

    def load(self) -> None:
        self._classifier = HFAudioClassifier(self.source, self.what, self.device, self.sample_rate,
                                             self.segments_per_call)

    def posteriors(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)
