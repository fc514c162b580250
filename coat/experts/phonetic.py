"""Phonetic expert: a CTC phoneme recogniser as a speech-content teacher.

Target ``phonetic`` (kind ``distribution``): (frames, vocab) softmax over the CTC vocabulary (phonemes and the
blank) per model frame. The frame rate is the model's own: sample rate over its total conv stride (320 samples,
so 50 frames/s, for wav2vec2 at 16 kHz); the model's frame count is cropped or edge-extended by a frame to match
``spec.num_frames``. Default checkpoint: ``facebook/wav2vec2-lv-60-espeak-cv-ft`` (Xu et al., "Simple and Effective
Zero-shot Cross-lingual Phoneme Recognition", 2021).
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
import torch

from coat.experts.base import Expert, TargetSpec
from coat.experts.framing import pad_to_min
from coat.experts.loading import check_architecture, load_pretrained
from coat.targets import fit_frames

DEFAULT_PHONETIC_MODEL = "facebook/wav2vec2-lv-60-espeak-cv-ft"
MIN_SAMPLES = 1600


def samples_per_frame(config) -> int:
    """Input samples per output frame of a CTC model, from its conv feature encoder strides."""
    ratio = getattr(config, "inputs_to_logits_ratio", None)
    if ratio is None:
        ratio = math.prod(getattr(config, "conv_stride", [320]))
    return int(ratio)


class PhoneticExpert(Expert):
    """Per-frame CTC phoneme posteriors.

    source: hub id or local folder of a transformers CTC model (``AutoModelForCTC``) with its feature extractor.
    temperature: logits are divided by it before the softmax (1 keeps the model's posteriors; CTC posteriors are
        very peaked, a higher value gives softer targets).
    """

    name = "phonetic"

    def __init__(
        self,
        source: str = DEFAULT_PHONETIC_MODEL,
        temperature: float = 1.0,
        sample_rate: int = 16000,
        device: str | torch.device = "cpu",
    ):
        super().__init__(device)
        if temperature <= 0:
            raise ValueError(f"phonetic expert: temperature must be > 0, got {temperature}")
        self.source, self.temperature, self.sample_rate = str(source), temperature, sample_rate
        self._config = None
        self._model = None
        self._feature_extractor = None

    def _model_config(self):
        if self._config is None:
            from transformers import AutoConfig

            config = load_pretrained(AutoConfig.from_pretrained, self.source, "phonetic model",
                                     required_file="config.json")
            check_architecture(config, self.source, "phonetic model", ("ForCTC",))
            self._config = config
        return self._config

    def specs(self) -> tuple[TargetSpec, ...]:
        config = self._model_config()
        rate = self.sample_rate / samples_per_frame(config)
        return (TargetSpec("phonetic", self.sample_rate, rate, int(config.vocab_size), "distribution"),)

    def params(self) -> dict[str, Any]:
        return {"source": self.source, "temperature": self.temperature}

    def load(self) -> None:
        from transformers import AutoFeatureExtractor, AutoModelForCTC

        self._model_config()  # checks the saved architecture before loading weights
        self._feature_extractor = load_pretrained(AutoFeatureExtractor.from_pretrained, self.source,
                                                  "phonetic feature extractor", required_file=None)
        fe_rate = getattr(self._feature_extractor, "sampling_rate", self.sample_rate)
        if fe_rate != self.sample_rate:
            raise ValueError(f"phonetic model {self.source!r} expects {fe_rate} Hz audio; build the expert with "
                             f"sample_rate={fe_rate}")
        self._model = load_pretrained(AutoModelForCTC.from_pretrained, self.source, "phonetic model",
                                      required_file="config.json").to(self.device).eval()

    def compute(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[dict[str, np.ndarray]]:
        spec = self.specs()[0]
        audio = waveforms.detach().float().cpu().numpy()
        # clips under 0.1 s are zero-padded to it: the conv front end needs 400 samples for a single frame
        clips = [pad_to_min(audio[b, : int(n)], MIN_SAMPLES) for b, n in enumerate(lengths.tolist())]
        fe = self._feature_extractor
        kwargs: dict[str, Any] = {}
        if "padding" in inspect.signature(fe.__call__).parameters:
            kwargs["padding"] = "longest"
        if getattr(fe, "return_attention_mask", False):
            # models trained with an attention mask (wav2vec2 large, layer-norm feature encoder) must get it, so
            # padding inside a batch does not change a clip's posteriors; group-norm models are trained without
            kwargs["return_attention_mask"] = True
        inputs = fe(clips, sampling_rate=self.sample_rate, return_tensors="pt", **kwargs)
        inputs = {k: v.to(self.device) for k, v in inputs.items() if isinstance(v, torch.Tensor)}
        logits = self._model(**inputs).logits.float()  # (batch, model_frames, vocab)
        posteriors = torch.softmax(logits / self.temperature, dim=-1)
        # a clip's own model frames only: frames computed over another clip's padding are dropped, and the
        # missing edge frame repeats the last real one, exactly as for the clip alone
        valid = self._model._get_feat_extract_output_lengths(lengths.to(torch.long).clamp_min(MIN_SAMPLES)).tolist()
        return [{"phonetic": fit_frames(posteriors[b, : max(1, int(v))], spec.num_frames(int(n)))}
                for b, (n, v) in enumerate(zip(lengths.tolist(), valid))]
