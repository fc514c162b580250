"""Attention shares: for every decoder layer, the attention mass the answer queries give to a set of key positions
(the audio span, the thinking block), averaged over heads, then over the answer queries of an example. The models
run teacher-forced on the same answer tokens (the base generates them where the data has none), so only their
attention patterns differ. Also where the base's hidden states and the thinking states are read for the probes."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def attention_share(attentions, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """(layers,) attention mass from ``queries`` to ``keys``, averaged over heads and queries.

    attentions: per layer (1, heads, seq, seq) softmax weights (``output_attentions=True``);
    queries: (n_q,) positions; keys: (seq,) bool.
    """
    shares = []
    for layer in attentions:
        rows = layer[0].float()[:, queries]  # (heads, n_q, seq)
        shares.append(rows[..., keys.to(rows.device)].sum(-1).mean())
    return torch.stack(shares).cpu()


def answer_queries(seq_len: int, num_answer: int) -> torch.Tensor:
    """(num_answer,) the positions that predict the last ``num_answer`` tokens of an unpadded sequence."""
    return torch.arange(seq_len - num_answer - 1, seq_len - 1)


def encode_example(processor, audio: np.ndarray, text: str, answer: str | None) -> tuple[dict, int]:
    """Processor outputs for the prompt followed by the answer, and the number of answer tokens (0: no answer)."""
    from coat.data.prompts import prompt_text

    sr = processor.feature_extractor.sampling_rate
    prompt = prompt_text(processor, text)
    inputs = processor(text=[prompt], audio=[audio], sampling_rate=sr, return_tensors="pt")
    if answer is None:
        return dict(inputs), 0
    full = processor(text=[prompt + answer], audio=[audio], sampling_rate=sr, return_tensors="pt")
    n_prompt, ids = inputs["input_ids"].shape[1], full["input_ids"]
    if ids.shape[1] <= n_prompt or not torch.equal(ids[0, :n_prompt], inputs["input_ids"][0]):
        raise ValueError(f"the answer {answer!r} does not tokenize as a continuation of its prompt")
    return dict(full), ids.shape[1] - n_prompt


class _LayerRecorder:
    """Forward hooks on every decoder layer: each layer's output at one position per forward."""

    def __init__(self, layers: nn.ModuleList):
        self.position: int | None = None
        self.states: list[torch.Tensor | None] = [None] * len(layers)
        self._hooks = [layer.register_forward_hook(self._hook(i)) for i, layer in enumerate(layers)]

    def _hook(self, index: int):
        def hook(module, args, output):
            if self.position is not None:
                hidden = output[0] if isinstance(output, tuple) else output
                self.states[index] = hidden[0, self.position].detach().float().cpu()
        return hook

    def remove(self):
        for hook in self._hooks:
            hook.remove()


def _to(inputs: dict, device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


def _progress(iterable, enabled: bool, desc: str):
    from coat.progress import progress_bar

    return progress_bar(iterable, desc=desc, unit="example", enabled=enabled)


@torch.no_grad()
def run_base(text_model, layers: nn.ModuleList, audio_id: int, encoded: list[tuple[dict, int]], device,
             generate_tokens: int, progress: bool = True):
    """The unwrapped base: generates answers where there are none, then per example the audio attention share
    (layers,) and every decoder layer's output at the last audio position (layers, hidden)."""
    recorder = _LayerRecorder(layers)
    shares, states, done = [], [], []
    try:
        for inputs, n_answer in _progress(encoded, progress, "base"):
            inputs = _to(inputs, device)
            if n_answer == 0:
                out = text_model.generate(**inputs, max_new_tokens=generate_tokens, do_sample=False)
                new = out[:, inputs["input_ids"].shape[1]:]
                inputs["input_ids"] = torch.cat([inputs["input_ids"], new], 1)
                inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
                n_answer = new.shape[1]
            ids = inputs["input_ids"][0]
            audio = ids == audio_id
            if not bool(audio.any()):
                raise ValueError("an example's prompt has no audio placeholder; check the processor and data")
            recorder.position = int(audio.nonzero()[-1])
            out = text_model(**inputs, output_attentions=True)
            recorder.position = None
            shares.append(attention_share(out.attentions, answer_queries(len(ids), n_answer), audio))
            states.append(torch.stack(recorder.states))
            done.append(({k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}, n_answer))
    finally:
        recorder.remove()
    return torch.stack(shares), torch.stack(states), done


@torch.no_grad()
def run_coat(model, encoded: list[tuple[dict, int]], name: str, device, progress: bool = True):
    """A wrapped model, teacher-forced on the same answers: per example the thinking and audio shares (layers,)
    and the mean thinking state of the (first) audio span (hidden,)."""
    thinking, audio, states = [], [], []
    k = model.num_thinking
    for inputs, n_answer in _progress(encoded, progress, name):
        out = model(**_to(inputs, device), output_attentions=True)
        ids = model.insert_thinking(inputs["input_ids"].to(device)).input_ids[0]
        queries = answer_queries(len(ids), n_answer)
        thinking.append(attention_share(out.attentions, queries, ids >= model.thinking_embedding.offset))
        audio.append(attention_share(out.attentions, queries, ids == model.audio_token_id))
        states.append(out.thinking_states[0, :k].float().mean(0).cpu())
    return torch.stack(thinking), torch.stack(audio), torch.stack(states)


