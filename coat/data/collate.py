"""From (audio, question, answer) examples to model inputs: the family's processor and chat template, labels
on the answer only, and each example's expert targets (cached ones, and those made from the waveform here, in the
data loader: log-mel).

    dataset = QADataset(source, DataConfig(...), sampling_rate=16000, caches=[pitch_cache],
                        loader_experts=[reconstruction_expert])
    collator = CoATCollator(processor)
    batch = collator([dataset[0], dataset[1]])   # input_ids, attention_mask, input_features, ..., labels,
                                                  # expert_targets (target name -> one array per example)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from coat.data.config import DataConfig
from coat.data.prompts import prompt_text, user_messages
from coat.targets import cut_targets, prepare_active_targets
from coat.thinking import IGNORE_INDEX


class QADataset(torch.utils.data.Dataset):
    """Examples of an :class:`~coat.data.sources.AudioSource` as dicts ``{id, audio, prompt, answer, targets}``, their
    fields read as the :class:`~coat.data.config.DataConfig` ``data`` says.

    ``caches``: :class:`~coat.experts.cache.TargetCache` objects whose targets are attached per example; every
    example must be in every cache (checked up front: the error names the missing ids). A peak target (pitch)
    comes as its ``(frames, 1)`` peak positions, rebuilt into its distribution on the heads' frames by the collator.
    ``loader_experts``: experts (:class:`~coat.experts.base.Expert`) whose ``loader_targets(audio, sampling_rate)``
    make targets from each example's waveform here, in the data loader, instead of a cache (log-mel: cheaper to
    compute than to read back).
    """

    def __init__(self, source, data: DataConfig, sampling_rate: int, caches: Sequence = (),
                 loader_experts: Sequence = ()):
        self.source, self.data, self.sampling_rate = source, data, sampling_rate
        self.caches = list(caches)
        self.loader_experts = list(loader_experts)
        if data.answer_column is None:
            raise ValueError("training needs answers: data.answer_column is null")
        ids = source.ids()
        for cache in self.caches:
            cache.require(ids)
        for i, id_ in enumerate(ids):  # a bad row fails here, naming it, not mid-training
            meta = source.metadata(i)
            if meta.get("path") and not Path(meta["path"]).is_file():
                raise FileNotFoundError(f"example {id_!r}: audio file {meta['path']!r} does not exist")
            for name in (data.question_column, data.answer_column):
                if meta.get(name) in (None, ""):
                    raise ValueError(f"example {id_!r} has no {name!r} field; fields: {sorted(meta)}")
            data.texts(meta)  # an answer that is not among its choices fails here

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict:
        example = self.source.load(i, self.sampling_rate)
        prompt, answer = self.data.texts(example.metadata)
        targets = {}
        for cache in self.caches:
            targets.update(cache.targets(example.id, peaks=True))
        for expert in self.loader_experts:
            targets.update(expert.loader_targets(example.audio, self.sampling_rate))
        return {"id": example.id, "audio": example.audio, "prompt": prompt, "answer": answer, "targets": targets}


def audio_window(processor) -> int | None:
    """The most samples of one audio (at the processor's sampling rate) that the model receives, or None (all).

    What each family's processor does with a long clip: Qwen2-Audio and Qwen2.5-Omni pad and cut every audio to the
    Whisper feature extractor's window (``n_samples``: ``chunk_length`` seconds, 30 s for the released models);
    Audio Flamingo 3 and Music Flamingo split it into ``chunk_length`` windows up to ``max_audio_len`` seconds (600 /
    1200 s) and cut the rest; Voxtral (``truncation: False``) pads to a multiple of 30 s and keeps all of it.
    """
    extractor = processor.feature_extractor
    rate = int(extractor.sampling_rate)
    max_seconds = getattr(processor, "max_audio_len", None)
    if max_seconds is not None:
        chunk = getattr(extractor, "chunk_length", None)
        if chunk:
            return int(max_seconds // chunk) * int(chunk * rate)
        return int(max_seconds * rate)
    if (getattr(type(processor), "audio_kwargs", None) or {}).get("truncation") is False:
        return None
    samples = getattr(extractor, "n_samples", None)
    return int(samples) if samples else None


def answer_suffix(processor, prompt: str, answer: str, user_text: str, num_audios: int = 1) -> str:
    """The text that follows ``prompt`` (:func:`~coat.data.prompts.prompt_text` of ``user_text``) when the assistant
    answers ``answer``: the answer and the chat template's turn end (``"C4<|im_end|>"``), trailing whitespace cut.
    What training labels, and what likelihood scoring scores (:mod:`coat.evaluation.likelihood`)."""
    reply = {"role": "assistant", "content": [{"type": "text", "text": answer}]}
    full = processor.apply_chat_template(user_messages(user_text, num_audios) + [reply], tokenize=False)
    if full.startswith(prompt):
        return full[len(prompt):].rstrip()
    return answer + (processor.tokenizer.eos_token or "")


class CoATCollator:
    """Batch examples with the model's own processor; labels are -100 everywhere but on the answer tokens.

    The answer is appended as the chat template closes an assistant turn; its tokens are counted by
    tokenising that suffix alone, so the template's boundary after the generation prompt must not merge
    tokens (true of the supported families' templates, which end the prompt in a newline).

    A batch whose examples all have ``audio`` None is text-only: the prompt has no audio placeholder and the batch
    no audio features (the demo's pre-training teaches words that way). A batch cannot mix the two.

    Long clips: the model receives at most :func:`audio_window` samples of each audio (its processor cuts the rest),
    so a longer clip is cut to that window here and its targets with it (:func:`cut_targets`): the heads learn the
    audio the model hears, never the part it does not. The first cut clip is reported with a warning.
    """

    def __init__(self, processor, sampling_rate: int | None = None, heads=None, weights: dict | None = None):
        """``heads`` (an :class:`~coat.heads.ExpertHeads`: its ``specs`` and frame grid ``config``) and their loss
        ``weights``: when given, targets are resampled onto the heads' frames here, in the data loader, instead of in
        every training step."""
        self.processor = processor
        self.sampling_rate = sampling_rate or processor.feature_extractor.sampling_rate
        self.tokenizer = processor.tokenizer
        self.specs = dict(heads.specs) if heads is not None else None
        self.head_config = heads.config if heads is not None else None
        self.weights = dict(weights or {})
        self.window = audio_window(processor)
        self._warned = False

    def _fit_to_window(self, example: dict) -> dict:
        """``example`` with its audio and targets cut to what the model receives (unchanged when it fits)."""
        audio = example.get("audio")
        if audio is None or self.window is None or len(audio) <= self.window:
            return example
        heard, clip = self.window / self.sampling_rate, len(audio) / self.sampling_rate
        targets = example.get("targets") or {}
        if targets and self.specs is None:
            raise ValueError(f"example {example.get('id')!r} is {clip:.1f} s long and the model receives "
                             f"{heard:.1f} s: pass heads= to the collator so its targets can be cut to that")
        if not self._warned:
            self._warned = True
            warnings.warn(f"example {example.get('id')!r} is {clip:.1f} s long; the model receives its first "
                          f"{heard:.1f} s (the processor's audio window), so its frame-level targets are cut to the "
                          f"same {heard:.1f} s and its clip-level targets are left out. Longer clips are cut the same "
                          "way without another warning", UserWarning, stacklevel=3)
        return {**example, "audio": audio[: self.window],
                "targets": cut_targets(targets, self.specs or {}, heard, clip)}

    def _suffix(self, prompt: str, answer: str, user_text: str, num_audios: int = 1) -> str:
        return answer_suffix(self.processor, prompt, answer, user_text, num_audios)

    def __call__(self, examples: list[dict]) -> dict:
        if not examples:
            raise ValueError("CoATCollator got an empty batch (no examples)")
        examples = [self._fit_to_window(ex) for ex in examples]
        audios = [ex.get("audio") for ex in examples]
        text_only = all(audio is None for audio in audios)
        if not text_only and any(audio is None for audio in audios):
            raise ValueError("a batch mixes examples with audio and text-only examples (audio None); "
                             "collate them in separate batches")
        num_audios = 0 if text_only else 1
        texts, n_answer = [], []
        for ex in examples:
            prompt = prompt_text(self.processor, ex["prompt"], num_audios)
            suffix = self._suffix(prompt, ex["answer"], ex["prompt"], num_audios)
            texts.append(prompt + suffix)
            n_answer.append(len(self.tokenizer(suffix, add_special_tokens=False)["input_ids"]))
        if text_only:
            batch = dict(self.tokenizer(texts, padding=True, return_tensors="pt"))
        else:
            batch = dict(self.processor(text=texts, audio=audios, sampling_rate=self.sampling_rate, padding=True,
                                        return_tensors="pt"))
        mask = batch["attention_mask"]
        # The answer is the last n valid tokens of each row, whichever side the padding is on.
        from_end = mask.flip(1).cumsum(1).flip(1)  # valid tokens from here to the row's end
        answer = mask.bool() & (from_end <= torch.tensor(n_answer)[:, None])
        batch["labels"] = torch.where(answer, batch["input_ids"], torch.full_like(batch["input_ids"], IGNORE_INDEX))
        names = sorted({name for ex in examples for name in ex.get("targets", {})})
        from_forward = self.specs is not None and not text_only and any(
            s.computed_in == "forward" and self.weights.get(n, 1.0) != 0 for n, s in self.specs.items())
        if names or from_forward:
            targets = {n: [ex["targets"].get(n) for ex in examples] for n in names}
            if self.specs is not None:
                # the seconds each audio holds: a target made in the forward gets the frames a cached one would
                seconds = [len(ex["audio"]) / self.sampling_rate for ex in examples] if not text_only else None
                targets = prepare_active_targets(targets, self.specs, self.head_config, self.weights, seconds)
            batch["expert_targets"] = targets
        return batch


class PartsCollator:
    """A batch that may hold examples with audio and text-only examples (``audio`` None): each kind collated on its
    own by ``collator`` (those with audio first), as ``{"parts": [batch, ...]}``; :class:`coat.training.CoATTrainer`
    trains on the example-weighted mean of the parts' losses. The demo's pre-training batches are such."""

    def __init__(self, collator: CoATCollator):
        self.collator = collator

    def __call__(self, examples: list[dict]) -> dict:
        with_audio = [ex for ex in examples if ex.get("audio") is not None]
        text_only = [ex for ex in examples if ex.get("audio") is None]
        return {"parts": [self.collator(kind) for kind in (with_audio, text_only) if kind]}
