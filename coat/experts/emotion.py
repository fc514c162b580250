"""Emotion expert: a speech-emotion classifier as a paralinguistic teacher.

Targets (kind ``distribution``, dim = the classifier's number of classes):

- ``emotion``: (1, classes) class posteriors of the whole clip.
- ``emotion_frames``: (frames, classes) posteriors of ``window_s``-second windows every ``hop_s`` seconds
  (defaults 1 s every 0.5 s, so frame rate 2), frame ``i`` describing ``[i hop, (i + 1) hop)`` with its window
  centred there and kept inside the clip.

Backends: ``transformers`` (any ``AutoModelForAudioClassification`` checkpoint, softmax over its logits) and
``speechbrain`` (e.g. ``speechbrain/emotion-recognition-wav2vec2-IEMOCAP``, loaded with speechbrain's own
``foreign_class`` interface). ``backend="auto"`` picks speechbrain for a folder holding ``hyperparams.yaml`` or a
``speechbrain/`` hub id, transformers otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from coat.experts.audio_classification import HFAudioClassifier, WindowedClassifierExpert
from coat.experts.base import TargetSpec
from coat.experts.loading import ModelSourceError, check_source, require_hub_source, source_kind
from coat.files import private_dir

DEFAULT_EMOTION_MODEL = "speechbrain/emotion-recognition-wav2vec2-IEMOCAP"
# class counts of known speechbrain checkpoints, so specs() (and the cache fingerprint) need not load them
KNOWN_NUM_LABELS = {DEFAULT_EMOTION_MODEL: 4}  # neu, ang, hap, sad


def resolve_backend(source: str, backend: str = "auto") -> str:
    """``transformers`` or ``speechbrain`` for ``source``; see the module docstring for ``auto``."""
    if backend not in ("auto", "transformers", "speechbrain"):
        raise ValueError(f"emotion backend must be 'auto', 'transformers' or 'speechbrain', got {backend!r}")
    if backend != "auto":
        return backend
    if source_kind(source) == "local folder":
        return "speechbrain" if (Path(source).expanduser() / "hyperparams.yaml").is_file() else "transformers"
    return "speechbrain" if source.lower().startswith("speechbrain/") else "transformers"


class SpeechBrainClassifier:
    """A speechbrain utterance classifier; ``__call__(segments)`` returns ``(segments, classes)`` log-posteriors.

    pymodule_file / classname: the custom interface the checkpoint ships (the IEMOCAP emotion model's is
    ``custom_interface.py`` / ``CustomEncoderWav2vec2Classifier``); ``None`` uses speechbrain's ``EncoderClassifier``.
    """

    def __init__(self, source: str, device: torch.device, pymodule_file: str | None, classname: str | None,
                 segments_per_call: int = 32, savedir: str | None = None):
        path = check_source(source, "emotion model (speechbrain)", required_file="hyperparams.yaml")
        kind = source_kind(path)
        if kind == "hub id":
            require_hub_source("emotion model (speechbrain)", path, "hyperparams.yaml")
        # speechbrain runs what it finds in its save folder (hyperparams.yaml is code, and so is a custom
        # interface) before what the source holds: a private folder of this user, never a shared temp path
        if savedir is None:
            name = str(Path(path).expanduser().resolve()) if kind == "local folder" else path
            savedir = str(private_dir("speechbrain", name.strip("/").replace("/", "--") or "root"))
        run_opts = {"device": str(device)}
        try:
            if pymodule_file is not None:
                from speechbrain.inference.interfaces import foreign_class

                self.model = foreign_class(source=path, pymodule_file=pymodule_file, classname=classname,
                                           savedir=savedir, run_opts=run_opts)
            else:
                from speechbrain.inference.classifiers import EncoderClassifier

                self.model = EncoderClassifier.from_hparams(source=path, savedir=savedir, run_opts=run_opts)
        except (OSError, ValueError, KeyError, AttributeError, ImportError) as err:
            raise ModelSourceError(
                f"emotion model (speechbrain) source {path!r} was treated as a {kind}; speechbrain could not load it"
                f" ({type(err).__name__}: {err})"
            ) from err
        self.model.mods.eval()
        self.device, self.segments_per_call = device, segments_per_call

    @property
    def labels(self) -> list[str]:
        encoder = self.model.hparams.label_encoder
        return [str(encoder.ind2lab[i]) for i in range(len(encoder))]

    @property
    def num_labels(self) -> int:
        return len(self.model.hparams.label_encoder)

    def __call__(self, segments: list[np.ndarray]) -> torch.Tensor:
        scores = []
        for i in range(0, len(segments), self.segments_per_call):
            chunk = segments[i : i + self.segments_per_call]
            longest = max(len(s) for s in chunk)
            wavs = torch.zeros(len(chunk), longest)
            for j, s in enumerate(chunk):
                wavs[j, : len(s)] = torch.from_numpy(s)
            rel = torch.tensor([len(s) / longest for s in chunk])
            out_prob = self.model.classify_batch(wavs.to(self.device), rel.to(self.device))[0]
            scores.append(out_prob.reshape(len(chunk), -1).float())  # log-probabilities (or logits)
        return torch.cat(scores, 0)


class EmotionExpert(WindowedClassifierExpert):
    """Clip- and window-level emotion posteriors.

    source: hub id or local folder of the classifier.
    backend: ``auto``, ``transformers`` or ``speechbrain``.
    window_s, hop_s: the frame-level windows (seconds); frame rate is ``1 / hop_s``.
    clip, frames: which of ``emotion`` / ``emotion_frames`` to produce.
    speechbrain_interface: ``(pymodule_file, classname)`` of a speechbrain custom interface, or ``None`` for
        speechbrain's ``EncoderClassifier``.
    num_labels: number of classes if known, which lets ``specs()`` answer without loading a speechbrain model.
    segments_per_call: segments per forward (memory only).
    """

    name = "emotion"
    what = "emotion model"
    clip_target, frames_target = "emotion", "emotion_frames"

    def __init__(
        self,
        source: str = DEFAULT_EMOTION_MODEL,
        backend: str = "auto",
        window_s: float = 1.0,
        hop_s: float = 0.5,
        clip: bool = True,
        frames: bool = True,
        sample_rate: int = 16000,
        speechbrain_interface: tuple[str, str] | None = ("custom_interface.py", "CustomEncoderWav2vec2Classifier"),
        num_labels: int | None = None,
        segments_per_call: int = 32,
        device: str | torch.device = "cpu",
    ):
        super().__init__(device)
        if not (clip or frames):
            raise ValueError("emotion expert: at least one of clip / frames must be True")
        self._set_windows(window_s, hop_s, clip, frames)
        self.source, self.backend = str(source), resolve_backend(str(source), backend)
        self.sample_rate = sample_rate
        self.speechbrain_interface = tuple(speechbrain_interface) if speechbrain_interface else None
        self._num_labels = num_labels if num_labels is not None else KNOWN_NUM_LABELS.get(self.source)
        self.segments_per_call = segments_per_call

    def _labels_count(self) -> int:
        if self._num_labels is None:
            if self._classifier is None and self.backend == "transformers":
                self._num_labels = self._config_num_labels()
            else:
                if self._classifier is None:
                    self.load()
                    self._loaded = True
                self._num_labels = self._classifier.num_labels
        return self._num_labels

    def specs(self) -> tuple[TargetSpec, ...]:
        dim, specs = self._labels_count(), []
        if self.clip:
            specs.append(TargetSpec("emotion", self.sample_rate, None, dim, "distribution"))
        if self.frames:
            specs.append(TargetSpec("emotion_frames", self.sample_rate, 1.0 / self.hop_s, dim, "distribution"))
        return tuple(specs)

    def params(self) -> dict[str, Any]:
        return {"source": self.source, "backend": self.backend, "window_s": self.window_s, "hop_s": self.hop_s,
                "clip": self.clip, "frames": self.frames,
                "speechbrain_interface": list(self.speechbrain_interface or []) if self.backend == "speechbrain"
                else None}

    def load(self) -> None:
        if self.backend == "transformers":
            self._classifier = HFAudioClassifier(self.source, self.what, self.device, self.sample_rate,
                                                 self.segments_per_call)
        else:
            module, classname = self.speechbrain_interface or (None, None)
            self._classifier = SpeechBrainClassifier(self.source, self.device, module, classname,
                                                     self.segments_per_call)

    def posteriors(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)
