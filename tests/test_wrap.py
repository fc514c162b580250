"""coat.wrap() on every supported family: the checks of the core issue, one parametrised matrix."""

import json

import pytest
import torch
import transformers as tf

import coat
from coat import zoo
from coat.thinking import IGNORE_INDEX

FAMILIES = zoo.FAMILIES
K = 8


def _count_forward_calls(module):
    calls = []
    handle = module.register_forward_pre_hook(lambda mod, args, kwargs: calls.append(1), with_kwargs=True)
    return calls, handle


@pytest.mark.parametrize("family", FAMILIES)
def test_zero_thinking_equals_base(family, load_tiny):
    base = load_tiny(family)
    inputs = zoo.make_inputs(base, audios_per_prompt=[2, 1, 0], padding_side="left", seed=1)
    with torch.no_grad():
        expected = base(**inputs).logits
        got = coat.wrap(base, coat.CoATConfig(num_thinking=0))(**inputs).logits
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() < 1e-5


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_inserts_thinking_after_every_audio_span(family, load_tiny):
    base = load_tiny(family)
    model = coat.wrap(base, coat.CoATConfig(num_thinking=K))
    inputs = zoo.make_inputs(base, audios_per_prompt=[2, 1], padding_side="left", answer_len=3, seed=2)
    batch = model.insert_thinking(inputs["input_ids"], inputs["attention_mask"], inputs["labels"])
    think = batch.input_ids >= model.thinking_embedding.offset
    assert think.sum(1).tolist() == [2 * K, K]
    assert bool((batch.labels[think] == IGNORE_INDEX).all())
    assert bool((batch.attention_mask[think] == 1).all())
    # Removing the thinking positions gives back the caller's tokens, mask and labels, row by row.
    for row in range(2):
        keep = ~think[row] & batch.attention_mask[row].bool()
        valid = inputs["attention_mask"][row].bool()
        assert batch.input_ids[row][keep].tolist() == inputs["input_ids"][row][valid].tolist()
        assert batch.labels[row][keep].tolist() == inputs["labels"][row][valid].tolist()
    # Left padding: every row ends at the last column.
    assert bool(batch.attention_mask[:, -1].all())
    out = model(**inputs)
    assert out.thinking_states.shape == (2, 2 * K, base.config.get_text_config().hidden_size)
    assert out.thinking_mask.sum(1).tolist() == [2 * K, K]
    assert out.loss is not None and torch.isfinite(out.loss)


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_one_prefill_caller_coordinates_and_batched_equals_unbatched(family, load_tiny):
    base = load_tiny(family)
    model = coat.wrap(base, coat.CoATConfig(num_thinking=K))
    inputs = zoo.make_inputs(base, audios_per_prompt=[2, 1, 1], padding_side="left", seed=3)
    new_tokens = 6
    calls, handle = _count_forward_calls(model.base_model)
    out = model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False)
    handle.remove()
    assert len(calls) == new_tokens
    prompt_len = inputs["input_ids"].shape[1]
    assert out.shape == (3, prompt_len + new_tokens)
    assert torch.equal(out[:, :prompt_len], inputs["input_ids"])
    assert int(out.max()) < model.thinking_embedding.offset  # no thinking ids in what the caller sees

    for row in range(3):
        valid = inputs["attention_mask"][row].bool()
        single = zoo.make_inputs(base, audios_per_prompt=[2, 1, 1], padding_side="left", seed=3)
        n_audio_before = sum([2, 1, 1][:row])
        n_audio = [2, 1, 1][row]
        one = {"input_ids": single["input_ids"][row : row + 1, :][:, valid],
               "attention_mask": single["attention_mask"][row : row + 1, :][:, valid],
               "input_features": single["input_features"][n_audio_before : n_audio_before + n_audio]}
        for name in ("feature_attention_mask", "input_features_mask"):
            if name in single:
                one[name] = single[name][n_audio_before : n_audio_before + n_audio]
        alone = model.generate(**one, max_new_tokens=new_tokens, do_sample=False)
        assert alone[0, -new_tokens:].tolist() == out[row, -new_tokens:].tolist()


@pytest.mark.parametrize("family", FAMILIES)
def test_gradient_reaches_only_the_thinking_table(family, load_tiny):
    base = load_tiny(family)
    model = coat.wrap(base, coat.CoATConfig(num_thinking=K))
    model.train()
    table = model.thinking_embedding.thinking
    assert [p for p in model.parameters() if p.requires_grad] == [table]
    inputs = zoo.make_inputs(base, audios_per_prompt=[1, 2], padding_side="right", answer_len=4, seed=4)
    model(**inputs).loss.backward()
    assert table.grad is not None and table.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters() if p is not table)


@pytest.mark.parametrize("family", FAMILIES)
def test_save_and_load_round_trip(family, load_tiny, tmp_path):
    base = load_tiny(family)
    model = coat.wrap(base, coat.CoATConfig(num_thinking=K, thinking_layer=0))
    with torch.no_grad():
        model.thinking_embedding.thinking.add_(torch.randn_like(model.thinking_embedding.thinking))
    inputs = zoo.make_inputs(base, audios_per_prompt=[2, 1], padding_side="left", seed=5)
    with torch.no_grad():
        expected = model(**inputs)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coat_config.json", "coat_model.safetensors"]
    saved = json.loads((tmp_path / "coat_config.json").read_text())
    assert saved["num_thinking"] == K and saved["thinking_layer"] == 0

    reloaded = coat.CoATModel.from_pretrained(load_tiny(family), tmp_path)
    with torch.no_grad():
        got = reloaded(**inputs)
    assert torch.equal(got.logits, expected.logits)
    assert torch.equal(got.thinking_states, expected.thinking_states)


def test_load_into_other_size_or_type_is_a_clear_error(load_tiny, tmp_path):
    coat.wrap(load_tiny("qwen2_audio"), num_thinking=4).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="trained on a 'qwen2_audio' model"):
        coat.CoATModel.from_pretrained(load_tiny("audioflamingo3"), tmp_path)
    config = zoo.tiny_config("qwen2_audio")
    config.text_config.hidden_size = 64
    config.text_config.intermediate_size = 128
    wider = tf.Qwen2AudioForConditionalGeneration(config)
    with pytest.raises(ValueError, match="hidden size 32, this base model has 64"):
        coat.CoATModel.from_pretrained(wider, tmp_path)
    with pytest.raises(FileNotFoundError, match="coat_config.json"):
        coat.CoATModel.from_pretrained(load_tiny("qwen2_audio"), tmp_path / "missing")


def test_full_qwen2_5_omni_is_wrapped_through_its_thinker():
    full = zoo.build_full_omni()
    model = coat.wrap(full, num_thinking=K)
    assert model.base_model is full.thinker
    inputs = zoo.make_inputs(full.thinker, audios_per_prompt=[1, 2], padding_side="left", seed=6)
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape == (2, inputs["input_ids"].shape[1] + 4)


def test_prompt_without_audio_is_left_unchanged(load_tiny):
    base = load_tiny("qwen2_audio")
    model = coat.wrap(base, num_thinking=K)
    inputs = zoo.make_inputs(base, audios_per_prompt=[0, 0], padding_side="left", seed=7)
    batch = model.insert_thinking(inputs["input_ids"], inputs["attention_mask"])
    assert torch.equal(batch.input_ids, inputs["input_ids"])
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, base(**inputs).logits)
        assert model(**inputs).thinking_states.shape == (2, 0, 32)


@pytest.mark.parametrize("family", FAMILIES)
def test_audio_features_that_do_not_match_placeholders_raise_the_base_error(family, load_tiny):
    base = load_tiny(family)
    model = coat.wrap(base, num_thinking=K)
    inputs = zoo.make_inputs(base, audios_per_prompt=[2], padding_side="left", seed=8)
    ids = inputs["input_ids"]
    drop = int((ids[0] == zoo.AUDIO).nonzero()[0])  # one placeholder fewer than the features fill
    inputs["input_ids"] = torch.cat([ids[:, :drop], ids[:, drop + 1 :]], 1)
    inputs["attention_mask"] = inputs["attention_mask"][:, 1:]
    with pytest.raises((ValueError, RuntimeError)):
        model(**inputs)


@pytest.mark.parametrize("bad", [-1, 2.5, "8", True])
def test_bad_num_thinking_is_a_value_error(bad):
    with pytest.raises(ValueError, match="num_thinking"):
        coat.CoATConfig(num_thinking=bad)


def test_unsupported_model_names_the_supported_types():
    config = tf.Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                            num_key_value_heads=2, vocab_size=50)
    with pytest.raises(ValueError, match="Supported: audioflamingo3.*register_adapter"):
        coat.wrap(tf.Qwen2ForCausalLM(config))


def test_refused_arguments_say_why(load_tiny):
    base = load_tiny("qwen2_audio")
    model = coat.wrap(base, num_thinking=2)
    inputs = zoo.make_inputs(base, audios_per_prompt=[1], seed=9)
    with pytest.raises(ValueError, match="position_ids"):
        model(**inputs, position_ids=torch.zeros_like(inputs["input_ids"]))
    with pytest.raises(ValueError, match="already contain thinking ids"):
        model(**{**inputs, "input_ids": inputs["input_ids"].clamp(max=500) + 200})


def test_unwrap_gives_back_the_base_model_exactly(load_tiny, tmp_path):
    base = load_tiny("qwen2_audio")
    inputs = zoo.make_inputs(base, audios_per_prompt=[1, 2], seed=15)
    with torch.no_grad():
        expected = base(**inputs).logits
    model = coat.wrap(base, num_thinking=4)
    model.add_lora(r=4, alpha=8, dropout=0.0)
    for param in model.coat_parameters(("lora",)):
        param.data.normal_()
    model.save_pretrained(tmp_path)
    assert model.unwrap() is base
    assert not any("lora_" in name for name, _ in base.named_parameters())
    with torch.no_grad():
        assert torch.equal(base(**inputs).logits, expected)
    again = coat.CoATModel.from_pretrained(base, tmp_path)  # loads cleanly into the restored base
    assert again.lora_config is not None


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_goes_into_the_audio_encoder_only_when_asked(family, load_tiny, tmp_path):
    base = load_tiny(family)
    inputs = zoo.make_inputs(base, audios_per_prompt=[1], seed=21)

    def lora_layers(model):
        return {name.split(".layers.")[0] for name, _ in model.base_model.named_parameters() if "lora_A" in name}

    text_only = coat.wrap(base, num_thinking=4)
    text_only.add_lora(r=4, alpha=8, dropout=0.0)
    assert lora_layers(text_only) == {"model.language_model"}
    text_only.unwrap()

    model = coat.wrap(base, num_thinking=4)
    model.add_lora(r=4, alpha=8, dropout=0.0, audio_target_modules=["q_proj", "fc1"])
    assert lora_layers(model) == {"model.language_model", "model.audio_tower"}
    audio = {n.split(".layers.")[1].split(".lora_A")[0].split(".", 1)[1]
             for n, _ in model.base_model.named_parameters() if "lora_A" in n and "audio_tower" in n}
    assert audio == {"self_attn.q_proj", "fc1"}
    for param in model.coat_parameters(("lora",)):
        param.data.normal_(std=0.02)
    with torch.no_grad():
        expected = model(**inputs).logits
    model.save_pretrained(tmp_path)
    model.unwrap()
    again = coat.CoATModel.from_pretrained(load_tiny(family), tmp_path)
    with torch.no_grad():
        assert torch.equal(again(**inputs).logits, expected)


def test_lora_names_that_are_not_in_the_layers_are_an_error(load_tiny):
    model = coat.wrap(load_tiny("qwen2_audio"), num_thinking=4)
    with pytest.raises(ValueError, match=r"no LoRA target\(s\) \['o_proj'\] in model.audio_tower.layers"):
        model.add_lora(audio_target_modules=["q_proj", "o_proj"])
    with pytest.raises(ValueError, match="out_proj"):
        model.add_lora(target_modules=["out_proj"])
    assert model.lora_config is None


# ------------------------------------------------------------------ the saved adapter is one unit (issue 15)
def _base_state(base):
    """What a wrap changes in a base model: its input embedding, its parameter flags, its hooks, LoRA layers."""
    layers = base.model.language_model.layers
    return (type(base.get_input_embeddings()).__name__,
            {n: p.requires_grad for n, p in base.named_parameters()},
            sum(len(layer._forward_hooks) for layer in layers))


def _lora_model(base, seed=0):
    model = coat.wrap(base, num_thinking=4)
    model.add_lora(r=4, alpha=8, dropout=0.0)
    torch.manual_seed(seed)
    for param in model.coat_parameters(("lora",)):
        param.data.normal_(std=0.05)
    return model


def test_a_missing_lora_folder_is_an_error_and_leaves_the_base_as_it_was(load_tiny, tmp_path):
    base = load_tiny("qwen2_audio")
    model = _lora_model(base)
    model.save_pretrained(tmp_path / "adapter")
    model.unwrap()
    before = _base_state(base)
    import shutil

    shutil.rmtree(tmp_path / "adapter" / "lora")
    with pytest.raises(FileNotFoundError, match=r"incomplete: lora/adapter_config.json is missing"):
        coat.CoATModel.from_pretrained(base, tmp_path / "adapter")
    assert _base_state(base) == before
    assert json.loads((tmp_path / "adapter" / "coat_config.json").read_text())["lora"] is True
    (tmp_path / "adapter" / "coat_model.safetensors").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="coat_model.safetensors is empty"):
        coat.CoATModel.from_pretrained(base, tmp_path / "adapter")


def test_saving_without_lora_over_an_adapter_with_lora_leaves_no_stale_lora(load_tiny, tmp_path):
    base = load_tiny("qwen2_audio")
    inputs = zoo.make_inputs(base, audios_per_prompt=[1], seed=31)
    with_lora = _lora_model(base)
    with_lora.save_pretrained(tmp_path)
    with_lora.unwrap()
    (tmp_path / ".coat_model.safetensors.x.tmp").write_bytes(b"left by a kill in an older version")
    coat.CoATModel.from_pretrained(base, tmp_path).unwrap()
    plain = coat.wrap(base, num_thinking=4)
    with torch.no_grad():
        expected = plain(**inputs).logits
    plain.save_pretrained(tmp_path)
    plain.unwrap()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coat_config.json", "coat_model.safetensors"]
    again = coat.CoATModel.from_pretrained(base, tmp_path)
    assert again.lora_config is None
    with torch.no_grad():
        assert torch.equal(again(**inputs).logits, expected)


def test_save_refuses_a_foreign_folder_and_non_finite_weights(load_tiny, tmp_path):
    model = coat.wrap(load_tiny("qwen2_audio"), num_thinking=4)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"not part of a CoAT adapter \(notes.txt\)"):
        model.save_pretrained(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    with torch.no_grad():
        model.thinking_embedding.thinking[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="'thinking' holds NaN/inf"):
        model.save_pretrained(tmp_path / "adapter")
    assert not (tmp_path / "adapter").exists()


def test_a_failed_wrap_leaves_the_base_model_unchanged(load_tiny):
    base = load_tiny("qwen2_audio")
    before = _base_state(base)
    with pytest.raises(ValueError, match="thinking_layer=99 is out of range"):
        coat.wrap(base, num_thinking=4, thinking_layer=99)
    assert _base_state(base) == before
    model = coat.wrap(base, num_thinking=4)  # a valid wrap works: nothing is left "already wrapped"
    model.unwrap()
    assert _base_state(base) == before


def test_a_failed_from_pretrained_leaves_the_base_model_unchanged(load_tiny, tmp_path):
    base = load_tiny("qwen2_audio")
    model = _lora_model(base)
    model.save_pretrained(tmp_path)
    model.unwrap()
    before = _base_state(base)
    lora = tmp_path / "lora" / "adapter_model.safetensors"
    lora.write_bytes(lora.read_bytes()[:100])  # what a kill mid-write leaves
    with pytest.raises(ValueError, match="adapter_model.safetensors cannot be read"):
        coat.CoATModel.from_pretrained(base, tmp_path)
    assert _base_state(base) == before
    assert not any("lora_" in n for n, _ in base.named_parameters())
    coat.wrap(base, num_thinking=4).unwrap()


def test_an_adapter_for_another_vocabulary_size_is_refused(load_tiny, tmp_path):
    base = load_tiny("qwen2_audio")
    coat.wrap(base, num_thinking=4).save_pretrained(tmp_path)
    other = load_tiny("qwen2_audio")
    other.resize_token_embeddings(other.get_input_embeddings().num_embeddings + 8)
    with pytest.raises(ValueError, match="input embeddings"):
        coat.CoATModel.from_pretrained(other, tmp_path)


def test_a_very_large_num_thinking_warns():
    with pytest.warns(UserWarning, match="num_thinking=2000 is above 1024"):
        coat.CoATConfig(num_thinking=2000)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        coat.CoATConfig(num_thinking=1024)


def test_an_empty_batch_is_a_clear_error(load_tiny):
    model = coat.wrap(load_tiny("qwen2_audio"), num_thinking=4)
    with pytest.raises(ValueError, match="input_ids is empty"):
        model(input_ids=torch.zeros((0, 5), dtype=torch.long))
    with pytest.raises(ValueError, match="input_ids is empty"):
        model.generate(input_ids=torch.zeros((0, 5), dtype=torch.long), max_new_tokens=1)


def test_freeze_base_must_be_a_boolean_in_python_too():
    with pytest.raises(ValueError, match="freeze_base must be True or False, got 'false'"):
        coat.CoATConfig(freeze_base="false")
