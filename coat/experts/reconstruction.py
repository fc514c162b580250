"""Reconstruction expert: targets that ask the thinking block to re-describe the audio itself.

Needs no weights by default: ``logmel`` is the log-mel spectrogram of the clip (kind ``regression``). Optionally
(``encoder_source=``) it also gives ``encoder``, the output of the LALM's own audio encoder (kind ``embedding``),
so the thinking positions learn to carry what the model already heard. Supported LALM families: Qwen2-Audio
(``model.audio_tower``), Qwen2.5-Omni (``model.thinker.audio_tower``, loaded as the Thinker alone) and Audio
Flamingo 3 (``model.audio_tower``).

Neither needs the target cache by default (``TargetSpec.computed_in``): log-mel is a deterministic function of the
waveform that costs less to compute in the data loader (:meth:`ReconstructionExpert.loader_targets`) than to read
back (``logmel_from="loader"``), and the encoder output is what the wrapped model computes in every forward anyway,
so the forward takes it from there while that tower is frozen (``encoder_from="forward"``; ``encoder_source`` must
then name the trained model, and ``coat train`` says so otherwise). ``"extraction"`` caches either one instead: the
encoder of another model, or of a tower that trains (LoRA in the audio encoder), must be cached.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from coat.experts.base import Expert, TargetSpec
from coat.experts.loading import ModelSourceError, load_pretrained
from coat.targets import fit_frames

# model_type -> (transformers class name, attribute paths where its audio encoder may live; the first that
# exists wins: transformers 5 moved the towers of some families under ``.model``)
ENCODER_FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "qwen2_audio": ("Qwen2AudioForConditionalGeneration", ("audio_tower", "model.audio_tower")),
    # the Thinker alone: it loads from the full Omni checkpoint and skips the talker and its speaker files
    "qwen2_5_omni": ("Qwen2_5OmniThinkerForConditionalGeneration", ("audio_tower", "model.audio_tower")),
    "audioflamingo3": ("AudioFlamingo3ForConditionalGeneration", ("audio_tower", "model.audio_tower")),
}


def find_audio_tower(model: torch.nn.Module, paths: tuple[str, ...]) -> torch.nn.Module:
    """The audio encoder submodule of an LALM, at the first of ``paths`` that exists."""
    for path in paths:
        module = model
        try:
            for attr in path.split("."):
                module = getattr(module, attr)
        except AttributeError:
            continue
        return module
    raise AttributeError(f"{type(model).__name__} has no audio encoder at any of {paths}")


class ReconstructionExpert(Expert):
    """Log-mel (and optionally LALM audio-encoder) targets.

    n_mels, n_fft, win_length, hop_length, f_min, f_max: the mel analysis (defaults: Whisper-like 80 mels,
        25 ms window, 10 ms hop at 16 kHz, so ``logmel`` has frame rate 100).
    log_floor: mel power is floored here before the natural log, so silence is a finite value.
    encoder_source: local folder or hub id of a supported LALM whose audio encoder output becomes the
        ``encoder`` target; ``None`` for log-mel only.
    encoder_frame_rate: frames per second of that encoder output (25 for all three supported families:
        Whisper-style 100 Hz mels, conv stride 2, average-pool 2).
    encoder_dtype: dtype the LALM is loaded in (``"float32"``, ``"bfloat16"``, ...).
    logmel_from: ``"loader"`` (computed from the waveform in the data loader, never cached) or ``"extraction"``
        (cached).
    encoder_from: ``"forward"`` (taken from the trained model's frozen audio tower in the forward, never cached) or
        ``"extraction"`` (cached: the encoder of another model, or of a tower that trains).
    """

    name = "reconstruction"

    def __init__(
        self,
        n_mels: int = 80,
        n_fft: int = 400,
        win_length: int = 400,
        hop_length: int = 160,
        f_min: float = 0.0,
        f_max: float | None = None,
        log_floor: float = 1e-5,
        sample_rate: int = 16000,
        encoder_source: str | None = None,
        encoder_frame_rate: float = 25.0,
        encoder_dtype: str = "float32",
        logmel_from: str = "loader",
        encoder_from: str = "forward",
        device: str | torch.device = "cpu",
    ):
        super().__init__(device)
        if win_length > n_fft:
            raise ValueError(f"win_length ({win_length}) must be <= n_fft ({n_fft})")
        if logmel_from not in ("loader", "extraction") or encoder_from not in ("forward", "extraction"):
            raise ValueError(f"reconstruction: logmel_from must be 'loader' or 'extraction' (got {logmel_from!r}) and "
                             f"encoder_from 'forward' or 'extraction' (got {encoder_from!r})")
        self.logmel_from, self.encoder_from = logmel_from, encoder_from
        self.sample_rate = sample_rate
        self.n_mels, self.n_fft, self.win_length, self.hop_length = n_mels, n_fft, win_length, hop_length
        self.f_min, self.f_max, self.log_floor = f_min, f_max if f_max is not None else sample_rate / 2, log_floor
        self.encoder_source = encoder_source
        self.encoder_frame_rate = encoder_frame_rate
        self.encoder_dtype = encoder_dtype
        self._encoder_dim: int | None = None
        self._encoder = None
        self._cpu_filters: tuple[torch.Tensor, torch.Tensor] | None = None
        self._feature_extractor = None
        self._model_type: str | None = None

    # -- spec ---------------------------------------------------------------------------------------------
    def specs(self) -> tuple[TargetSpec, ...]:
        specs = [TargetSpec("logmel", self.sample_rate, self.sample_rate / self.hop_length, self.n_mels, "regression",
                            computed_in=self.logmel_from)]
        if self.encoder_source is not None:
            specs.append(TargetSpec("encoder", self.sample_rate, self.encoder_frame_rate, self._encoder_width(),
                                    "embedding", computed_in=self.encoder_from))
        return tuple(specs)

    def params(self) -> dict[str, Any]:
        return {
            "n_mels": self.n_mels, "n_fft": self.n_fft, "win_length": self.win_length, "hop_length": self.hop_length,
            "f_min": self.f_min, "f_max": self.f_max, "log_floor": self.log_floor, "window": "hann",
            "encoder_source": self.encoder_source, "encoder_frame_rate": self.encoder_frame_rate,
            "encoder_dtype": self.encoder_dtype if self.encoder_source else None,
        }  # where each target is made is in its spec (computed_in), which the fingerprint covers too

    def _encoder_config(self):
        from transformers import AutoConfig

        config = load_pretrained(AutoConfig.from_pretrained, self.encoder_source, "LALM (reconstruction encoder)",
                                 required_file="config.json")
        if config.model_type not in ENCODER_FAMILIES:
            raise ModelSourceError(
                f"LALM (reconstruction encoder) source {self.encoder_source!r} has model_type "
                f"{config.model_type!r}; supported: {', '.join(ENCODER_FAMILIES)}"
            )
        return config

    def _encoder_width(self) -> int:
        if self._encoder_dim is None:
            config = self._encoder_config()
            if config.model_type == "qwen2_5_omni":
                self._encoder_dim = config.thinker_config.audio_config.output_dim
            else:
                self._encoder_dim = config.audio_config.d_model
        return self._encoder_dim

    # -- loading ------------------------------------------------------------------------------------------
    def _mel_filters(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The mel filterbank ``(freqs, mels)`` and the analysis window, on ``device``."""
        import torchaudio

        fbanks = torchaudio.functional.melscale_fbanks(
            self.n_fft // 2 + 1, self.f_min, self.f_max, self.n_mels, self.sample_rate, norm="slaney",
            mel_scale="slaney",
        )
        return fbanks.to(device), torch.hann_window(self.win_length, device=device)

    def load(self) -> None:
        self._fbanks, self._window = self._mel_filters(self.device)
        if self.encoder_source is not None and self.encoder_from == "extraction":
            if self._encoder is None:
                self._load_encoder()
            else:  # after .to(device): move the loaded encoder rather than reading the LALM again
                self._encoder = self._encoder.to(self.device)

    def _load_encoder(self) -> None:
        import transformers
        from transformers import AutoFeatureExtractor

        config = self._encoder_config()
        class_name, tower_paths = ENCODER_FAMILIES[config.model_type]
        model_class = getattr(transformers, class_name)
        model = load_pretrained(model_class.from_pretrained, self.encoder_source, "LALM (reconstruction encoder)",
                                required_file="config.json", dtype=getattr(torch, self.encoder_dtype))
        # keep only the encoder: the rest of the LALM is freed with `model`
        self._encoder = find_audio_tower(model, tower_paths).to(self.device).eval()
        self._model_type = config.model_type
        self._feature_extractor = load_pretrained(AutoFeatureExtractor.from_pretrained, self.encoder_source,
                                                  "LALM feature extractor", required_file=None)

    # -- compute ------------------------------------------------------------------------------------------
    def log_mel(self, waveforms: torch.Tensor, filters: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> torch.Tensor:
        """(batch, samples) -> (batch, frames, n_mels), frame i centred on sample i * hop_length.

        Zero ("constant") centre padding, so a clip padded on the right inside a batch gets exactly the
        frames it gets alone. ``filters``: (filterbank, window) to use instead of the loaded ones.
        """
        fbanks, window = filters or (self._fbanks, self._window)
        spec = torch.stft(waveforms.float(), self.n_fft, self.hop_length, self.win_length, window,
                          center=True, pad_mode="constant", return_complex=True)
        power = spec.abs().pow(2)  # (batch, freqs, frames)
        mel = torch.einsum("bft,fm->btm", power, fbanks)
        return mel.clamp_min(self.log_floor).log()

    def compute(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[dict[str, np.ndarray]]:
        """Every target (the cache keeps those with ``computed_in="extraction"``); the encoder only when it is
        cached: in the forward the trained model gives it."""
        specs = {s.name: s for s in self.specs()}
        if waveforms.device.type == "cpu":  # each clip alone: on the CPU a padded batch only adds the padding's work
            logmel = [self.log_mel(waveforms[b : b + 1, : int(n)])[0] for b, n in enumerate(lengths)]
        else:
            logmel = self.log_mel(waveforms)
        out = [{"logmel": fit_frames(logmel[b], specs["logmel"].num_frames(int(n)))} for b, n in enumerate(lengths)]
        if self.encoder_source is not None and self.encoder_from == "extraction":
            encoded = self.encode(waveforms, lengths)
            for b, n in enumerate(lengths):
                out[b]["encoder"] = fit_frames(encoded[b], specs["encoder"].num_frames(int(n)))
        return out

    def loader_targets(self, audio: np.ndarray, sampling_rate: int) -> dict[str, np.ndarray]:
        """``logmel`` of one clip in the data loader (when ``logmel_from="loader"``): the values :meth:`compute`
        gives for it, from the same code. ``audio``: ``(samples,)`` float32 at ``sampling_rate`` (resampled to the
        expert's rate with soxr_hq, the cache's default resampler, when they differ)."""
        if self.logmel_from != "loader":
            return {}
        from coat.data.sources import resample

        # on the CPU, whatever device the expert runs on elsewhere: data-loader workers hold no GPU context, and
        # nothing else (no LALM encoder) is loaded for it
        if self._cpu_filters is None:
            self._cpu_filters = self._mel_filters(torch.device("cpu"))
        clip = resample(np.asarray(audio, dtype=np.float32), sampling_rate, self.sample_rate)
        with torch.inference_mode():
            logmel = self.log_mel(torch.from_numpy(clip)[None], self._cpu_filters)[0]
        spec = next(s for s in self.specs() if s.name == "logmel")
        return {"logmel": fit_frames(logmel, spec.num_frames(len(clip)))}

    def encode(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """The LALM audio encoder's output per example, ``(frames, dim)``.

        Clips longer than the feature extractor's window (30 s for Whisper-style encoders) are cut into
        windows, all windows of the batch go through the encoder in one call, and each clip's windows are
        concatenated back, as the LALMs do for long audio.
        """
        fe = self._feature_extractor
        chunk = int(getattr(fe, "n_samples", 30 * self.sample_rate))
        pieces, owner = [], []
        for b, n in enumerate(lengths.tolist()):
            audio = waveforms[b, : int(n)].float().cpu().numpy()
            for start in range(0, max(int(n), 1), chunk):
                pieces.append(audio[start : start + chunk])
                owner.append(b)
        feats = fe(pieces, sampling_rate=self.sample_rate, return_tensors="pt", padding="max_length",
                   return_attention_mask=True)
        features = feats["input_features"].to(self.device, dtype=next(self._encoder.parameters()).dtype)
        mask = feats["attention_mask"].to(self.device)
        hidden = self._run_encoder(features, mask)  # list of (frames_i, dim)
        per_clip: list[list[torch.Tensor]] = [[] for _ in range(len(lengths))]
        for b, h in zip(owner, hidden):
            per_clip[b].append(h.float())
        return [torch.cat(parts, 0) for parts in per_clip]

    def _run_encoder(self, features: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """features (chunks, mels, 3000), mask (chunks, 3000) -> valid encoder frames of each chunk."""
        tower = self._encoder
        mel_lengths = mask.sum(-1)
        if self._model_type == "qwen2_5_omni":
            # the Omni encoder takes the valid mel frames of all chunks packed along time
            packed = features.permute(0, 2, 1)[mask.bool()].permute(1, 0)
            cnn_lengths, out_lengths = tower._get_feat_extract_output_lengths(mel_lengths)
            hidden = tower(packed, feature_lens=mel_lengths, aftercnn_lens=cnn_lengths).last_hidden_state
            return list(torch.split(hidden, out_lengths.tolist(), dim=0))
        cnn_lengths, out_lengths = tower._get_feat_extract_output_lengths(mel_lengths)
        if self._model_type == "audioflamingo3":
            hidden = tower(features, input_features_mask=mask).last_hidden_state
        else:  # qwen2_audio: the same mask the LALM builds in its forward
            from transformers.masking_utils import create_bidirectional_mask

            cnn_frames = (features.shape[-1] - 2) // 2 + 1
            valid = torch.arange(cnn_frames, device=mask.device)[None, :] < cnn_lengths[:, None]
            attn = create_bidirectional_mask(config=tower.config, inputs_embeds=features.new_zeros(
                features.shape[0], cnn_frames, 1), attention_mask=valid.long())
            hidden = tower(features, attention_mask=attn).last_hidden_state
        return [hidden[i, : max(1, int(n))] for i, n in enumerate(out_lengths.tolist())]

