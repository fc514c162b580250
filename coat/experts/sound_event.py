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

import numpy as np
import torch

from coat.experts.audio_classification import HFAudioClassifier, gather_targets, segment_batch
from coat.experts.base import Expert, TargetSpec
from coat.experts.loading import load_pretrained

DEFAULT_SOUND_EVENT_MODEL = "MIT/ast-finetuned-audioset-10-10-0.4593"
KNOWN_NUM_LABELS = {DEFAULT_SOUND_EVENT_MODEL: 527}  # AudioSet: specs() need not reach the hub


class SoundEventExpert(Expert):
    """Windowed multi-label sound-event posteriors.

    source: hub id or local folder of the tagger.
    window_s, hop_s: the frame-level windows (seconds); frame rate is ``1 / hop_s``.
    clip: also produce the clip-level ``sound_event`` target.
    segments_per_call: segments per forward (memory only).
    """

    name = "sound_event"

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
        if window_s <= 0 or hop_s <= 0:
            raise ValueError("sound_event expert: window_s and hop_s must be > 0")
        self.source, self.window_s, self.hop_s, self.clip = str(source), window_s, hop_s, clip
        self.sample_rate, self.segments_per_call = sample_rate, segments_per_call
        self._num_labels: int | None = KNOWN_NUM_LABELS.get(self.source)
        self._classifier: HFAudioClassifier | None = None

    def specs(self) -> tuple[TargetSpec, ...]:
        if self._num_labels is None:
            from transformers import AutoConfig

            config = load_pretrained(AutoConfig.from_pretrained, self.source, "sound-event model",
                                     required_file="config.json")
            self._num_labels = int(config.num_labels)
        specs = [TargetSpec("sound_event_frames", self.sample_rate, 1.0 / self.hop_s, self._num_labels, "multilabel")]
        if self.clip:
            specs.append(TargetSpec("sound_event", self.sample_rate, None, self._num_labels, "multilabel"))
        return tuple(specs)

    def params(self) -> dict[str, Any]:
        return {"source": self.source, "window_s": self.window_s, "hop_s": self.hop_s, "clip": self.clip,
                "activation": "sigmoid"}

    @property
    def labels(self) -> list[str]:
        """Class names, in target order (loads the model)."""
        if self._classifier is None:
            self.load()
            self._loaded = True
        return self._classifier.labels

    def load(self) -> None:
        self._classifier = HFAudioClassifier(self.source, "sound-event model", self.device, self.sample_rate,
                                             self.segments_per_call)

    def compute(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[dict[str, np.ndarray]]:
        hop, window = round(self.hop_s * self.sample_rate), round(self.window_s * self.sample_rate)
        frame_spec = self.specs()[0]
        counts = [frame_spec.num_frames(int(n)) for n in lengths.tolist()]
        segments, owners = segment_batch(waveforms, lengths, counts, hop, window, clip=self.clip)
        posteriors = torch.sigmoid(self._classifier(segments))
        return gather_targets(posteriors, owners, len(lengths), "sound_event" if self.clip else None,
                              "sound_event_frames")
