"""insert_thinking and ThinkingEmbedding on hand-written tensors, and the training surface (dtype,
gradient checkpointing, devices, repetition penalty) on a tiny real model."""

import pytest
import torch
from transformers import RepetitionPenaltyLogitsProcessor

import coat
from coat import zoo
from coat.model import _RepetitionPenaltyWithoutThinking
from coat.thinking import ThinkingEmbedding, audio_span_ends, insert_thinking, padding_side_of

A, END, P = 7, 8, 0  # audio placeholder, audio end, pad
T1, T2 = 100, 101  # two thinking ids (K = 2)


def _insert(ids, mask, labels=None, end=END):
    ids, mask = torch.tensor(ids), torch.tensor(mask)
    labels = torch.tensor(labels) if labels is not None else None
    ends = audio_span_ends(ids, mask, A, end)
    return insert_thinking(ids, mask, labels, torch.tensor([T1, T2]), ends, P)


def test_insert_after_end_token_with_left_padding_and_two_spans():
    out = _insert(
        [[5, A, A, END, 3, A, END, 4], [P, P, P, 5, A, END, 3, 4]],
        [[1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1, 1]],
        [[-100, -100, -100, -100, -100, -100, -100, 4], [-100, -100, -100, -100, -100, -100, 3, 4]],
    )
    assert padding_side_of(out.attention_mask) == "left"
    assert out.input_ids.tolist() == [
        [5, A, A, END, T1, T2, 3, A, END, T1, T2, 4],
        [P, P, P, P, P, 5, A, END, T1, T2, 3, 4],
    ]
    assert out.attention_mask.tolist() == [[1] * 12, [0] * 5 + [1] * 7]
    assert out.labels.tolist() == [[-100] * 11 + [4], [-100] * 10 + [3, 4]]
    assert out.num_spans.tolist() == [2, 1]
    assert out.think_rows.tolist() == [0, 0, 0, 0, 1, 1]
    assert out.think_cols.tolist() == [4, 5, 9, 10, 8, 9]
    assert out.think_slots.tolist() == [0, 1, 2, 3, 0, 1]


def test_insert_without_end_token_and_right_padding():
    out = _insert([[5, A, A, 3, P], [A, 4, A, A, 6]], [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], end=None)
    assert padding_side_of(out.attention_mask) == "right"
    assert out.input_ids.tolist() == [[5, A, A, T1, T2, 3, P, P, P], [A, T1, T2, 4, A, A, T1, T2, 6]]
    assert out.attention_mask.tolist() == [[1, 1, 1, 1, 1, 1, 0, 0, 0], [1] * 9]


def test_no_audio_no_insertion_and_padding_placeholders_ignored():
    ids, mask = [[P, A, 3, 4], [5, 6, 3, 4]], [[0, 1, 1, 1], [1, 1, 1, 1]]
    out = _insert(ids, mask)  # the first row's audio id is a real token: one span
    assert out.input_ids.tolist() == [[P, A, T1, T2, 3, 4], [P, P, 5, 6, 3, 4]]
    untouched = _insert([[5, 6, 3]], [[1, 1, 1]])
    assert untouched.input_ids.tolist() == [[5, 6, 3]]


def test_padding_on_both_sides_is_an_error():
    with pytest.raises(ValueError, match="neither left- nor right-padded"):
        padding_side_of(torch.tensor([[0, 1, 1], [1, 1, 0]]))


def test_thinking_embedding_routes_ids():
    base = torch.nn.Embedding(10, 4)
    emb = ThinkingEmbedding(base, 3, init="normal")
    ids = torch.tensor([[1, 10, 12, 3]])
    out = emb(ids)
    assert torch.equal(out[0, 0], base.weight[1]) and torch.equal(out[0, 3], base.weight[3])
    assert torch.equal(out[0, 1], emb.thinking[0]) and torch.equal(out[0, 2], emb.thinking[2])


def test_repetition_penalty_skips_thinking_ids():
    scores = torch.randn(2, 20)
    with_think = torch.tensor([[3, 5, 25, 26, 7], [4, 25, 26, 4, 9]])
    without = torch.tensor([[3, 5, 3, 3, 7], [4, 4, 4, 4, 9]])
    got = _RepetitionPenaltyWithoutThinking(1.3, vocab_offset=25)(with_think, scores.clone())
    assert torch.equal(got, RepetitionPenaltyLogitsProcessor(1.3)(without, scores.clone()))


def test_generate_with_repetition_penalty(load_tiny):
    base = load_tiny("qwen2_audio")
    model = coat.wrap(base, num_thinking=4)
    inputs = zoo.make_inputs(base, audios_per_prompt=[1, 2], seed=11)
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False, repetition_penalty=1.5)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 4


def test_bfloat16_base_trains_a_float32_table(load_tiny):
    base = load_tiny("audioflamingo3", dtype=torch.bfloat16)
    model = coat.wrap(base, num_thinking=4)
    table = model.thinking_embedding.thinking
    assert table.dtype == torch.float32 and table.device == model.thinking_embedding.weight.device
    inputs = zoo.make_inputs(base, audios_per_prompt=[1, 1], answer_len=3, seed=12)
    inputs["input_features"] = inputs["input_features"].bfloat16()
    out = model(**inputs)
    assert out.logits.dtype == torch.bfloat16 and out.thinking_states.dtype == torch.bfloat16
    out.loss.backward()
    assert table.grad is not None and torch.isfinite(table.grad).all() and table.grad.abs().sum() > 0


@pytest.mark.parametrize("family", ["qwen2_audio", "qwen2_5_omni_thinker"])
def test_gradient_checkpointing_gives_the_same_gradient(family, load_tiny):
    grads = []
    for checkpointing in (False, True):
        base = load_tiny(family)
        model = coat.wrap(base, num_thinking=4)
        torch.manual_seed(0)
        model.thinking_embedding.thinking.data.normal_()
        if checkpointing:
            base.gradient_checkpointing_enable()
        model.train()
        inputs = zoo.make_inputs(base, audios_per_prompt=[1, 2], answer_len=3, seed=13)
        model(**inputs).loss.backward()
        grads.append(model.thinking_embedding.thinking.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_device_map_loading_puts_the_table_next_to_the_embeddings(load_tiny):
    base = load_tiny("qwen2_audio", device_map={"": "cpu"})
    model = coat.wrap(base, num_thinking=4)
    assert model.thinking_embedding.thinking.device == model.thinking_embedding.weight.device


def test_right_padded_batch_matches_each_row_alone(load_tiny):
    base = load_tiny("voxtral")
    model = coat.wrap(base, num_thinking=3)
    inputs = zoo.make_inputs(base, audios_per_prompt=[1, 2], padding_side="right", seed=14)
    with torch.no_grad():
        batched = model(**inputs)
        valid = inputs["attention_mask"][0].bool()
        alone = model(input_ids=inputs["input_ids"][:1, valid], attention_mask=inputs["attention_mask"][:1, valid],
                      input_features=inputs["input_features"][:1])
    n = alone.logits.shape[1]
    assert torch.allclose(batched.logits[0, :n], alone.logits[0], atol=1e-5)
    assert torch.allclose(batched.thinking_states[0, :3], alone.thinking_states[0], atol=1e-5)
