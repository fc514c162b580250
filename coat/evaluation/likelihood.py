"""Likelihood scoring of multiple-choice answers: which option does the model find most likely after the prompt?

An option is scored as the answer training teaches the model to give (:func:`coat.data.collate.answer_suffix`):
the option in the task's answer format followed by the chat template's turn end (``"C4<|im_end|>"``). The turn
end is part of it because training labels it, and because without it a short option that begins a longer one ("it
rises" / "it rises then falls") would collect the longer one's probability too. Its score is the sum of the
log-probabilities of those tokens; the pick is the option with the highest sum divided by the option's length in
UTF-8 bytes (lm-eval-harness's ``acc_norm``: longer options are not penalised for having more tokens); the
unnormalised pick (the highest sum, its ``acc``) is reported beside it.

The prompt, with its audio and the CoAT thinking block, is run once: every option of a prompt is scored from the
prompt's KV cache (``DynamicCache.batch_select_indices`` repeats each prompt's cache over its options), all options of
a batch in one forward call. Qwen2.5-Omni cannot reuse it: its mRoPE positions after the prefill come from
``rope_deltas`` the prefill stores per row, so it runs prompt + option as full sequences, one call per option index.
Both ways give the same log-probabilities (tests/test_likelihood.py).
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass

import torch

from coat.data.collate import answer_suffix
from coat.data.prompts import prompt_text

# model types whose positions after a prefill are not a function of the attention mask (mRoPE with rope_deltas)
FULL_SEQUENCE_TYPES = frozenset({"qwen2_5_omni_thinker", "qwen2_5_omni"})


@dataclass
class ContinuationScore:
    """One continuation after one prompt: the sum of its tokens' log-probabilities, its token count, and whether
    greedy decoding would produce it (every token the argmax)."""

    logprob: float
    tokens: int
    greedy: bool


def _text_model(model):
    """(the module that runs a continuation from a cache, its model type)."""
    from coat.model import CoATModel

    base = model.base_model if isinstance(model, CoATModel) else model
    return base, base.config.model_type


def reuses_prompt_cache(model) -> bool:
    """Whether ``model``'s options are scored from one prefill's cache (else as full sequences)."""
    return _text_model(model)[1] not in FULL_SEQUENCE_TYPES


def _check_right_padded(mask: torch.Tensor) -> torch.Tensor:
    lengths = mask.sum(-1)
    positions = torch.arange(mask.shape[1], device=mask.device)[None]
    if not torch.equal(mask.bool(), positions < lengths[:, None]):
        raise ValueError("likelihood scoring needs right-padded prompts (tokenizer.padding_side = 'right'): a "
                         "prompt's positions must start at 0")
    return lengths


def _gather(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probability of each target, whether it is the argmax): logits (n, vocab), targets (n,)."""
    logits = logits.float()
    chosen = logits.gather(-1, targets[:, None])[:, 0]
    return chosen - torch.logsumexp(logits, -1), logits.argmax(-1) == targets


def _scores(logprobs: torch.Tensor, greedy: torch.Tensor, lengths: list[int]) -> list[ContinuationScore]:
    """Per row of (rows, L) token log-probabilities, the score of its first ``lengths[row]`` tokens."""
    return [ContinuationScore(float(logprobs[r, :n].sum()), n, bool(greedy[r, :n].all()))
            for r, n in enumerate(lengths)]


def _flat(continuations: list[list[list[int]]]) -> tuple[list[int], list[list[int]]]:
    rows = [b for b, options in enumerate(continuations) for _ in options]
    flat = [ids for options in continuations for ids in options]
    if any(not ids for ids in flat) or not flat:
        raise ValueError("every prompt needs at least one option, and every option at least one token")
    return rows, flat


def _regroup(scores: list[ContinuationScore], continuations) -> list[list[ContinuationScore]]:
    out, start = [], 0
    for options in continuations:
        out.append(scores[start:start + len(options)])
        start += len(options)
    return out


def _from_cache(model, inputs: dict, continuations: list[list[list[int]]]) -> list[list[ContinuationScore]]:
    text_model, _ = _text_model(model)
    out = model(**inputs, use_cache=True)
    mask = out.get("coat_attention_mask")
    mask = inputs["attention_mask"] if mask is None else mask  # thinking positions included
    lengths = _check_right_padded(mask)
    cache = out.get("cache") if out.get("cache") is not None else out.get("past_key_values")
    rows, flat = _flat(continuations)
    index = torch.tensor(rows, device=mask.device)
    cache.batch_select_indices(index)  # each prompt's cache once per option
    width = max(len(ids) for ids in flat)
    ids = torch.zeros((len(flat), width), dtype=torch.long, device=mask.device)
    cont_mask = torch.zeros_like(ids)
    for r, option in enumerate(flat):
        ids[r, :len(option)] = torch.tensor(option)
        cont_mask[r, :len(option)] = 1
    positions = lengths[index][:, None] + torch.arange(width, device=mask.device)[None]
    cache_arg = "cache" if "cache" in inspect.signature(text_model.forward).parameters else "past_key_values"
    step = text_model(input_ids=ids, attention_mask=torch.cat([mask[index], cont_mask], 1), position_ids=positions,
                      use_cache=True, **{cache_arg: cache})
    # token 0 is predicted by the prompt's last position, token j by the continuation's position j - 1
    last = out.logits[index, lengths[index] - 1]  # (n, vocab)
    first_lp, first_greedy = _gather(last, ids[:, 0])
    rest = step.logits[:, : width - 1]
    rest_lp, rest_greedy = _gather(rest.reshape(-1, rest.shape[-1]), ids[:, 1:].reshape(-1))
    logprobs = torch.cat([first_lp[:, None], rest_lp.view(len(flat), width - 1)], 1)
    greedy = torch.cat([first_greedy[:, None], rest_greedy.view(len(flat), width - 1)], 1)
    return _regroup(_scores(logprobs, greedy, [len(o) for o in flat]), continuations)


def _full_sequences(model, inputs: dict, continuations: list[list[list[int]]]) -> list[list[ContinuationScore]]:
    """Prompt + option as one sequence: one forward call per option index over the whole batch (a prompt with fewer
    options repeats its first one there, and that row is left out), so the audio inputs stay as they are."""
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    lengths = _check_right_padded(mask).tolist()
    scores: list[list[ContinuationScore | None]] = [[None] * len(options) for options in continuations]
    for c in range(max(len(options) for options in continuations)):
        chosen = [options[c] if c < len(options) else options[0] for options in continuations]
        rows = [ids[b, :lengths[b]].tolist() + option for b, option in enumerate(chosen)]
        width = max(map(len, rows))
        seq = torch.zeros((len(rows), width), dtype=torch.long, device=ids.device)
        seq_mask = torch.zeros_like(seq)
        for b, row in enumerate(rows):
            seq[b, :len(row)] = torch.tensor(row)
            seq_mask[b, :len(row)] = 1
        out = model(**{**inputs, "input_ids": seq, "attention_mask": seq_mask})
        full_mask = out.get("coat_attention_mask")
        full_len = (seq_mask if full_mask is None else full_mask).sum(-1)
        for b, option in enumerate(chosen):
            if c >= len(continuations[b]):
                continue
            n = len(option)
            start = int(full_len[b]) - n  # right padded: the option is the row's last n valid tokens
            targets = torch.tensor(option, device=seq.device)
            lp, greedy = _gather(out.logits[b, start - 1: start - 1 + n], targets)
            scores[b][c] = ContinuationScore(float(lp.sum()), n, bool(greedy.all()))
    return scores


@torch.no_grad()
def continuation_logprobs(model, inputs: dict, continuations: list[list[list[int]]],
                          reuse_cache: bool | None = None) -> list[list[ContinuationScore]]:
    """Score token continuations after a batch of prompts.

    ``model``: a :class:`~coat.model.CoATModel` or a base LALM; ``inputs``: the processor's outputs for B prompts,
    right padded, on the model's device; ``continuations[b]``: the token ids of each option of prompt b.
    ``reuse_cache``: None chooses by model (:func:`reuses_prompt_cache`); False forces full sequences.
    Returns ``scores[b][option]``.
    """
    if len(continuations) != inputs["input_ids"].shape[0]:
        raise ValueError(f"{len(continuations)} option lists for {inputs['input_ids'].shape[0]} prompts")
    if reuse_cache is None:
        reuse_cache = reuses_prompt_cache(model)
    run = _from_cache if reuse_cache else _full_sequences
    return run(model, inputs, continuations)


@contextlib.contextmanager
def _padding_side(tokenizer, side: str):
    before = tokenizer.padding_side
    tokenizer.padding_side = side
    try:
        yield
    finally:
        tokenizer.padding_side = before


def score_options(model, processor, user_texts: list[str], audios: list, answers: list[list[str]], device,
                  reuse_cache: bool | None = None) -> list[list[ContinuationScore]]:
    """Score each prompt's answers as training formats them (each answer and the turn end after the chat-templated
    user turn). ``user_texts[b]``: the question as the user asks it (its choices listed); ``audios[b]``: a
    ``(samples,)`` array at the processor's rate, a list of them (several audios), or None (text only);
    ``answers[b]``: the answer texts to score."""
    tokenizer = processor.tokenizer
    counts = [0 if a is None else len(a) if isinstance(a, (list, tuple)) else 1 for a in audios]
    prompts = [prompt_text(processor, text, n) for text, n in zip(user_texts, counts, strict=True)]
    continuations = [[tokenizer(answer_suffix(processor, prompt, answer, text, n), add_special_tokens=False)
                      ["input_ids"] for answer in options]
                     for prompt, text, n, options in zip(prompts, user_texts, counts, answers, strict=True)]
    flat_audio = [x for a, n in zip(audios, counts, strict=True) if n
                  for x in (a if isinstance(a, (list, tuple)) else [a])]
    with _padding_side(tokenizer, "right"):
        if flat_audio:
            rate = processor.feature_extractor.sampling_rate
            inputs = processor(text=prompts, audio=flat_audio, sampling_rate=rate, padding=True, return_tensors="pt")
        else:
            inputs = tokenizer(prompts, padding=True, return_tensors="pt")
    inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in dict(inputs).items()}
    return continuation_logprobs(model, inputs, continuations, reuse_cache)


def pick(scores: list[ContinuationScore], answers: list[str]) -> tuple[int, int]:
    """(the option with the highest log-probability per UTF-8 byte of its answer text, the one with the highest
    log-probability): lm-eval-harness's ``acc_norm`` and ``acc`` picks. Ties go to the first option."""
    per_byte = [s.logprob / max(1, len(a.encode("utf-8"))) for s, a in zip(scores, answers, strict=True)]
    raw = [s.logprob for s in scores]
    return max(range(len(raw)), key=per_byte.__getitem__), max(range(len(raw)), key=raw.__getitem__)
