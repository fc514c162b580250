"""The released configurations (coat.zoo.released_config) at their real widths, cut to 2 decoder + 2 audio-encoder
layers so a CPU holds them: every width, vocabulary size, mel-bin count, audio window and special id as released.

Per family: a random-weight model saved and loaded through ``from_pretrained``; one 30 s clip through the family's
feature extractor (Whisper, 128 mels, 30 s window) with a question, written with the family's real special ids;
``coat.wrap`` at K=16: forward with a gradient to the thinking table, one training step with LoRA (r 16) and the
default heads, greedy generation of 8 tokens in 8 forward calls, and save/load with equal logits. 3-3.5 minutes and
10-11 GB peak memory per family on 2 CPU cores (float32; measured: Qwen2-Audio 214 s / 10.8 GB, the Qwen2.5-Omni
thinker 205 s / 10.0 GB, Audio Flamingo 3 182 s / 10.0 GB): ``slow``, run one family at a time
(``pytest -m slow tests/test_released.py -k qwen2_audio``). The fast tests here check the released ids and widths
on the meta device and count what CoAT adds at full depth (``coat bench widths``).
"""

import gc

import numpy as np
import pytest
import torch
import transformers as tf

import coat
from benchmarks.training import TARGET_SPECS, random_targets
from coat import zoo
from coat.heads import HeadConfig, prepare_active_targets

K = 16
WIDTHS = {  # (text hidden, vocabulary, audio d_model, mel bins, audio positions, audio placeholder id)
    "qwen2_audio": (4096, 156032, 1280, 128, 1500, 151646),
    "qwen2_5_omni_thinker": (3584, 152064, 1280, 128, 1500, 151646),
    "audioflamingo3": (3584, 151672, 1280, 128, 1500, 151669),
}
FEATURE_MASK = {"qwen2_audio": "feature_attention_mask", "qwen2_5_omni_thinker": "feature_attention_mask",
                "audioflamingo3": "input_features_mask"}


@pytest.mark.parametrize("family", list(WIDTHS))
def test_released_configs_carry_the_released_ids_and_the_adapters_find_them(family):
    from coat.adapters import get_adapter

    model = zoo.build_released(family, decoder_layers=1, audio_layers=1, vision_layers=1, device="meta")
    ids = zoo.RELEASED[family]["ids"]
    adapter = get_adapter(model)
    assert adapter.audio_token_id(model.config) == ids["audio"] == WIDTHS[family][-1]
    assert adapter.audio_end_token_id(model.config) == ids["audio_eos"]  # Qwen2-Audio: from its tokenizer, 151648
    assert zoo.special_ids(model) == ids and zoo.special_ids(zoo.build_model(family)) == zoo.TOY_IDS
    inputs = zoo.make_inputs(model, audios_per_prompt=(1, 1), audio_seconds=30, answer_len=2, seed=3)
    assert inputs["input_features"].shape == (2, 128, 3000)
    assert (inputs["input_ids"] == ids["audio"]).sum(1).tolist() == [750, 750]
    assert inputs["input_ids"][:, -3].tolist() != [ids["pad"]] * 2 and int(inputs["input_ids"].max()) < WIDTHS[
        family][1]
    if ids["audio_eos"] is not None:  # the span closes with the family's end marker
        assert (inputs["input_ids"] == ids["audio_eos"]).sum(1).tolist() == [1, 1]


def test_widths_benchmark_counts_what_coat_adds_at_full_depth(tmp_path):
    from benchmarks import widths

    assert widths.main(["--out", str(tmp_path)]) == 0
    result = __import__("json").loads((tmp_path / "widths.json").read_text())
    for row in result["rows"]:
        config = zoo.released_config(row["family"]).get_text_config()
        heads, hidden = config.num_attention_heads, config.hidden_size
        kv = config.num_key_value_heads * hidden // heads
        # LoRA r 16 on q, k, v, o of every decoder layer: r x (in + out) each
        lora = config.num_hidden_layers * 16 * ((hidden + hidden) + 2 * (hidden + kv) + (hidden + hidden))
        assert row["coat"] == {"thinking": 16 * hidden, "heads": row["coat"]["heads"], "lora": lora}
        assert 0 < row["coat"]["heads"] < 20e6 and row["coat_total"] < 0.005 * row["base_total"]
        assert row["base_total"] == sum(row["base"].values()) and 8e9 < row["base_total"] < 9e9
        memory = row["memory"]
        assert memory["total_bytes"] == sum(t["bytes"] for t in memory["terms"]) and memory["fits_80gb"]
    assert "| qwen2_audio | 8.397 B |" in (tmp_path / "widths.md").read_text()


def _thirty_second_clip(sampling_rate: int) -> np.ndarray:
    """30 s of a gliding tone over noise: real audio for the feature extractor."""
    t = np.arange(30 * sampling_rate) / sampling_rate
    rng = np.random.default_rng(0)
    return (0.3 * np.sin(2 * np.pi * (220 + 20 * t) * t) + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)


def _count_calls(module):
    calls = []
    handle = module.register_forward_pre_hook(lambda mod, args, kwargs: calls.append(1), with_kwargs=True)
    return calls, handle


@pytest.mark.slow
@pytest.mark.parametrize("family", list(WIDTHS))
def test_released_widths_wrap_train_generate_and_reload(family, tmp_path):
    torch.set_num_threads(2)
    released = zoo.RELEASED[family]
    zoo.build_released(family, decoder_layers=2, audio_layers=2, vision_layers=2).save_pretrained(tmp_path / "base")
    gc.collect()
    base = getattr(tf, zoo.MODEL_CLASSES[family]).from_pretrained(tmp_path / "base").eval()
    base.generation_config.pad_token_id = released["ids"]["pad"]
    base.generation_config.eos_token_id = None
    text, audio = base.config.get_text_config(), base.config.audio_config
    hidden, vocab, d_model, mels, positions, audio_id = WIDTHS[family]
    assert (text.hidden_size, text.vocab_size, audio.d_model, audio.num_mel_bins, audio.max_source_positions) == (
        hidden, vocab, d_model, mels, positions)
    assert (text.num_hidden_layers, audio.encoder_layers) == (2, 2)

    # the family's feature extractor on one 30 s clip, and a prompt in the family's own ids
    extractor = tf.WhisperFeatureExtractor(feature_size=released["mel_bins"], sampling_rate=released["sampling_rate"],
                                           chunk_length=released["window_s"], hop_length=160, n_fft=400)
    features = extractor(_thirty_second_clip(released["sampling_rate"]), sampling_rate=released["sampling_rate"],
                         return_attention_mask=True, return_tensors="pt")
    assert features.input_features.shape == (1, mels, 2 * positions)  # 30 s: 3000 mel frames
    inputs = zoo.make_inputs(base, audios_per_prompt=(1,), answer_len=4, audio_seconds=30, seed=0)
    inputs["input_features"] = features.input_features
    inputs[FEATURE_MASK[family]] = features.attention_mask
    assert int((inputs["input_ids"] == audio_id).sum()) == 750  # a 30 s window's audio tokens
    prompt = {k: v for k, v in inputs.items() if k != "labels"}
    prompt["input_ids"], prompt["attention_mask"] = inputs["input_ids"][:, :-4], inputs["attention_mask"][:, :-4]

    torch.manual_seed(0)
    model = coat.wrap(base, num_thinking=K)
    # forward with a gradient to the thinking table
    out = model(**inputs)
    assert out.thinking_states.shape == (1, K, hidden) and torch.isfinite(out.loss)
    out.loss.backward()
    grad = model.thinking_embedding.thinking.grad
    assert grad is not None and bool(torch.isfinite(grad).all()) and float(grad.abs().sum()) > 0
    del out
    model.zero_grad(set_to_none=True)

    # one training step with LoRA and the default heads, on cached-target-like arrays of a 30 s clip
    model.add_heads(list(TARGET_SPECS), HeadConfig())
    model.add_lora(r=16, alpha=32, dropout=0.0)
    model.set_trainable(("thinking", "heads", "lora"))
    model.train()
    params = model.coat_parameters()
    before = [p.detach().clone() for p in params]
    targets = prepare_active_targets(random_targets([30.0]), model.heads.specs, model.heads.config,
                                     model.expert_weights)
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    out = model(**inputs, expert_targets=targets)
    assert set(out.expert_losses) == {s.name for s in TARGET_SPECS} and torch.isfinite(out.loss)
    out.loss.backward()
    optimizer.step()
    changed = {n for n, p, b in zip(("thinking", "heads", "lora"), [params[0], params[1], params[-1]],
                                    [before[0], before[1], before[-1]]) if not torch.equal(p, b)}
    assert changed == {"thinking", "heads", "lora"}
    del out, optimizer, before
    gc.collect()
    model.eval()

    # greedy generation of 8 tokens: one prefill, 8 forward calls
    calls, handle = _count_calls(model.base_model)
    try:
        ids = model.generate(**prompt, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    finally:
        handle.remove()
    assert ids.shape == (1, prompt["input_ids"].shape[1] + 8) and len(calls) == 8
    assert torch.equal(ids[:, :prompt["input_ids"].shape[1]], prompt["input_ids"])

    # save / load: the same logits
    with torch.no_grad():
        expected = model(**inputs, expert_targets=targets)
    model.save_pretrained(tmp_path / "adapter")
    reloaded = coat.CoATModel.from_pretrained(model.unwrap(), tmp_path / "adapter").eval()
    with torch.no_grad():
        got = reloaded(**inputs, expert_targets=targets)
    assert torch.equal(got.logits, expected.logits) and torch.equal(got.loss, expected.loss)
