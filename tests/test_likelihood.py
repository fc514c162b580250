"""Likelihood scoring: options scored from one prefill's cache equal the same options run as full sequences, for
every family (CoAT-wrapped and plain); an option's score is minus training's text loss on it; the pick is per byte."""

import numpy as np
import pytest
import torch

import coat
from coat import zoo
from coat.data.collate import CoATCollator
from coat.evaluation import ContinuationScore, continuation_logprobs, pick, score_options
from coat.evaluation.likelihood import reuses_prompt_cache


def _options(counts, seed=1):
    g = torch.Generator().manual_seed(seed)
    low, high = zoo.TEXT_ID_RANGE
    return [[torch.randint(low, high, (int(torch.randint(1, 5, (1,), generator=g)),), generator=g).tolist()
             for _ in range(k)] for k in counts]


@pytest.mark.parametrize("wrapped", [False, True], ids=["base", "coat"])
@pytest.mark.parametrize("family", zoo.FAMILIES)
def test_cached_prefill_equals_full_sequences(family, wrapped, load_tiny):
    base = load_tiny(family)
    model = coat.wrap(base, num_thinking=3) if wrapped else base
    inputs = zoo.make_inputs(base, (1, 2, 1), padding_side="right", family=family)
    options = _options((2, 4, 3))  # prompts with different numbers of options, options of 1-4 tokens
    full = continuation_logprobs(model, inputs, options, reuse_cache=False)
    cached = continuation_logprobs(model, inputs, options, reuse_cache=True)
    assert [len(s) for s in cached] == [2, 4, 3]
    for row_full, row_cached, row_ids in zip(full, cached, options):
        for a, b, ids in zip(row_full, row_cached, row_ids):
            assert b.tokens == a.tokens == len(ids) and b.greedy == a.greedy
            assert b.logprob == pytest.approx(a.logprob, abs=1e-5)  # a position off by one moves it by ~1e-4
    # by default every family but Qwen2.5-Omni (mRoPE positions kept from the prefill) reuses the prefill
    assert reuses_prompt_cache(model) == (family != "qwen2_5_omni_thinker")


def test_left_padded_prompts_are_refused(load_tiny):
    base = load_tiny("qwen2_audio")
    inputs = zoo.make_inputs(base, (1, 1), padding_side="left", text_len=(2, 9))
    with pytest.raises(ValueError, match="right-padded"):
        continuation_logprobs(base, inputs, _options((2, 2)))


@pytest.fixture(scope="module")
def small():
    words = ["A", "B", "C", "(A)", "(B)", "(C)", "C4", "D4", "it", "rises", "falls", "then", "Which", "note?",
             "Choices:"]
    processor = zoo.build_qwen2_audio_processor(words, chunk_seconds=1)
    model = zoo.model_for_processor(processor, seed=3)
    return processor, coat.wrap(model, num_thinking=4).eval()


def test_an_options_score_is_minus_trainings_text_loss_on_it(small):
    """The option is scored as training formats the answer (answer + the template's turn end): its log-probability
    is minus the summed text loss the collator's labels give the same example."""
    processor, model = small
    rng = np.random.default_rng(0)
    audios = [rng.standard_normal(16000).astype(np.float32) * 0.1 for _ in range(2)]
    questions = ["Which note? Choices: (A) C4 (B) D4", "Which note? Choices: (A) it rises (B) it falls (C) C4"]
    answers = [["C4", "D4"], ["it rises", "it falls", "C4"]]
    scores = score_options(model, processor, questions, audios, answers, torch.device("cpu"))
    collate = CoATCollator(processor)
    for audio, question, options, row in zip(audios, questions, answers, scores):
        for answer, score in zip(options, row):
            batch = collate([{"audio": audio, "prompt": question, "answer": answer}])
            n = int((batch["labels"] != -100).sum())
            with torch.no_grad():
                loss = model(**batch).loss
            assert score.tokens == n == len(answer.split()) + 1  # the words and <|im_end|>
            assert score.logprob == pytest.approx(-float(loss) * n, abs=1e-4)


def test_the_pick_is_per_byte_and_the_unnormalised_pick_comes_with_it():
    scores = [ContinuationScore(-4.0, 2, False), ContinuationScore(-6.0, 5, False), ContinuationScore(-9.0, 3, True)]
    answers = ["C4", "it rises then falls", "it falls"]  # 2, 19, 8 bytes: -2.0, -0.32, -1.125 per byte
    assert pick(scores, answers) == (1, 0)
    assert pick([ContinuationScore(-3.0, 1, False)] * 2, ["é", "ab"]) == (0, 0)  # é is 2 bytes: a tie, the first
