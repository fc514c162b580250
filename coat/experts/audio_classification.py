"""Shared machinery of the classifier experts (emotion, sound events): a transformers audio-classification
checkpoint applied to whole clips and to sliding windows, all segments of a batch in as few model calls as memory
allows.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch

from coat.experts.base import Expert
from coat.experts.framing import pad_to_min, window_bounds
from coat.experts.loading import check_architecture, load_pretrained


def segment_batch(
    waveforms: torch.Tensor, lengths: torch.Tensor, frame_counts: list[int] | None, hop: int, window: int,
    clip: bool = True, min_samples: int = 1600,
) -> tuple[list[np.ndarray], list[tuple[int, str]]]:
    """Cut a batch into the segments the classifier sees.

    Returns the segments (1-D float32 arrays) and, per segment, ``(example index, "clip" | "frame")``: the whole
    valid clip when ``clip`` and, when ``frame_counts`` is given, one ``window``-sample window per target frame
    (see :func:`coat.experts.framing.window_bounds`). Segments shorter than ``min_samples`` (a clip under 0.1 s)
    are zero-padded to it.
    """
    audio = waveforms.detach().float().cpu().numpy()
    segments, owners = [], []
    for b, n in enumerate(lengths.tolist()):
        n = int(n)
        if clip:
            segments.append(pad_to_min(audio[b, :n], min_samples))
            owners.append((b, "clip"))
        if frame_counts is not None:
            for start, end in window_bounds(n, frame_counts[b], hop, window):
                segments.append(pad_to_min(audio[b, start:end], min_samples))
                owners.append((b, "frame"))
    return segments, owners


class HFAudioClassifier:
    """A transformers ``AutoModelForAudioClassification`` checkpoint with its feature extractor.

    ``__call__(segments)`` returns ``(segments, num_labels)`` logits, ``segments_per_call`` segments per forward.
    Segments are padded to the longest in their call with an attention mask where the feature extractor
    provides one (wav2vec2-large style models); spectrogram models (AST, Whisper) pad to their fixed length.
    """

    def __init__(self, source: str, what: str, device: torch.device, sample_rate: int, segments_per_call: int = 32):
        from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification

        config = load_pretrained(AutoConfig.from_pretrained, source, what, required_file="config.json")
        check_architecture(config, source, what, ("ForAudioClassification", "ForSequenceClassification"))

        self.feature_extractor = load_pretrained(AutoFeatureExtractor.from_pretrained, source,
                                                 f"{what} feature extractor", required_file=None)
        fe_rate = getattr(self.feature_extractor, "sampling_rate", sample_rate)
        if fe_rate != sample_rate:
            raise ValueError(f"{what} checkpoint {source!r} expects {fe_rate} Hz audio; build the expert with "
                             f"sample_rate={fe_rate}")
        self.model = load_pretrained(AutoModelForAudioClassification.from_pretrained, source, what,
                                     required_file="config.json").to(device).eval()
        self.device, self.sample_rate, self.segments_per_call = device, sample_rate, segments_per_call
        # only sequence feature extractors that do not pad by default (wav2vec2) need to be asked to
        default = inspect.signature(self.feature_extractor.__call__).parameters.get("padding")
        self._pad_kwargs: dict[str, Any] = {}
        if default is not None and default.default in (False, "do_not_pad"):
            self._pad_kwargs["padding"] = "longest"
        if getattr(self.feature_extractor, "return_attention_mask", False):
            self._pad_kwargs["return_attention_mask"] = True

    @property
    def num_labels(self) -> int:
        return int(self.model.config.num_labels)

    @property
    def labels(self) -> list[str]:
        id2label = self.model.config.id2label
        return [str(id2label[i]) for i in range(self.num_labels)]

    def __call__(self, segments: list[np.ndarray]) -> torch.Tensor:
        logits = []
        for i in range(0, len(segments), self.segments_per_call):
            chunk = segments[i : i + self.segments_per_call]
            inputs = self.feature_extractor(chunk, sampling_rate=self.sample_rate, return_tensors="pt",
                                            **self._pad_kwargs)
            inputs = {k: v.to(self.device) for k, v in inputs.items() if isinstance(v, torch.Tensor)}
            logits.append(self.model(**inputs).logits.float())
        return torch.cat(logits, 0)


def gather_targets(
    posteriors: torch.Tensor, owners: list[tuple[int, str]], batch_size: int, clip_name: str | None,
    frames_name: str | None,
) -> list[dict[str, np.ndarray]]:
    """Regroup ``(segments, labels)`` posteriors into one dict per example: clip ``(1, labels)``, frames
    ``(frames, labels)``."""
    post = posteriors.float().cpu().numpy()
    rows: list[dict[str, list[np.ndarray]]] = [{"clip": [], "frame": []} for _ in range(batch_size)]
    for p, (b, kind) in zip(post, owners):
        rows[b][kind].append(p)
    out = []
    for r in rows:
        d = {}
        if clip_name is not None:
            d[clip_name] = np.stack(r["clip"]).astype(np.float32)
        if frames_name is not None:
            d[frames_name] = np.stack(r["frame"]).astype(np.float32)
        out.append(d)
    return out


class WindowedClassifierExpert(Expert):
    """What the classifier experts share: a classifier (``self._classifier``, built by ``load``) run on the whole
    clip and on ``window_s`` windows every ``hop_s``, its posteriors gathered into a clip target ``clip_target``
    and a frame-level target ``frames_target``. Subclasses set those names, ``what`` (for error messages), and
    implement ``specs``, ``params``, ``load`` and ``posteriors`` (logits -> probabilities)."""

    what = "classifier"
    clip_target = "clip"
    frames_target = "frames"

    def _set_windows(self, window_s: float, hop_s: float, clip: bool, frames: bool) -> None:
        if window_s <= 0 or hop_s <= 0:
            raise ValueError(f"{self.name} expert: window_s and hop_s must be > 0")
        self.window_s, self.hop_s, self.clip, self.frames = window_s, hop_s, clip, frames
        self._classifier = None

    def _config_num_labels(self) -> int:
        """``num_labels`` from the checkpoint's config.json, without loading the weights."""
        from transformers import AutoConfig

        config = load_pretrained(AutoConfig.from_pretrained, self.source, self.what, required_file="config.json")
        return int(config.num_labels)

    @property
    def labels(self) -> list[str]:
        """Class names, in target order (loads the model)."""
        if self._classifier is None:
            self.load()
            self._loaded = True
        return self._classifier.labels

    def posteriors(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def compute(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[dict[str, np.ndarray]]:
        hop, window = round(self.hop_s * self.sample_rate), round(self.window_s * self.sample_rate)
        frame_spec = next((s for s in self.specs() if s.name == self.frames_target), None)
        counts = [frame_spec.num_frames(int(n)) for n in lengths.tolist()] if frame_spec else None
        segments, owners = segment_batch(waveforms, lengths, counts, hop, window, clip=self.clip)
        return gather_targets(self.posteriors(self._classifier(segments)), owners, len(lengths),
                              self.clip_target if self.clip else None, self.frames_target if self.frames else None)
