"""``coat analyze``: the real CLI on a tiny Qwen2-Audio and synthetic audio, attention shares recomputed by hand,
probes on features whose labels are (or are not) linearly decodable, and config errors that name the problem."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as tf

import coat
from coat.analysis import AnalyzeConfig, ProbeTask, hz_to_pitch_class, probe_accuracy, resolve_labels, run_analysis
from coat.cli import main
from coat.config_io import ConfigError, load_config
from coat.data.prompts import format_question, prompt_text
from coat.data.synth import SynthConfig, generate_split
from coat.zoo import create_tiny_model

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "analyze_tiny.yaml"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return create_tiny_model(tmp_path_factory.mktemp("analyze") / "tiny")


def test_cli_writes_plots_and_json(tiny, tmp_path):
    out = tmp_path / "out"
    rc = main(["analyze", str(CONFIG), f"output_dir={out}", f"model.name_or_path={tiny}",
               "data.synth.test_size=12", "progress=false", f"targets.cache_dir={tmp_path / 'targets'}"])
    assert rc == 0
    for name in ("attention_share.png", "probes.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import json

    results = json.loads((out / "analysis.json").read_text())
    assert results["n_examples"] == 12 and results["answers"] == "reference" and results["num_layers"] == 2
    shares = results["attention_share"]
    assert set(shares) == {"base", "coat_k4"} and set(shares["coat_k4"]) == {"thinking", "audio"}
    for series in (shares["base"]["audio"], shares["coat_k4"]["audio"], shares["coat_k4"]["thinking"]):
        assert len(series) == 2 and all(0.0 <= s <= 1.0 for s in series)
    category = results["probes"]["category"]
    assert category["n_examples"] == 12 and category["n_train"] + category["n_test"] == 12
    assert 0.0 <= category["thinking"]["coat_k4"]["accuracy"] <= 1.0 and 0.0 <= category["chance"] <= 1.0
    assert category["thinking"]["coat_k4"]["layer"] == 1 and set(category["base"]) == {"1"}


def _layer_shares(attentions, queries, keys):
    return [float(a[0][:, queries][:, :, keys].sum(-1).mean()) for a in attentions]


def test_attention_share_equals_recomputation(tiny, tmp_path):
    """One example, an adapter saved to disk (K=3, thinking from layer 0): every share recomputed by hand."""
    processor = tf.AutoProcessor.from_pretrained(tiny)
    base = tf.Qwen2AudioForConditionalGeneration.from_pretrained(tiny, attn_implementation="eager").eval()
    vocab = base.get_input_embeddings().num_embeddings  # thinking ids are vocab .. vocab + K - 1
    torch.manual_seed(1)
    model = coat.wrap(base, num_thinking=3, thinking_layer=0)
    model.save_pretrained(tmp_path / "adapter")

    overrides = [f"model.name_or_path={tiny}", f"output_dir={tmp_path / 'out'}", "max_examples=1", "progress=false",
                 f"adapters=[{{name: saved, path: {tmp_path / 'adapter'}}}]", "probes=[]",
                 f"targets.cache_dir={tmp_path / 'targets'}"]
    results = run_analysis(load_config(AnalyzeConfig, CONFIG, overrides))

    example = generate_split(SynthConfig(train_size=0, validation_size=0, test_size=36), "test")[0]
    prompt = prompt_text(processor, format_question(example["question"], example["choices"]))
    kwargs = {"audio": [example["audio"]], "sampling_rate": 16000, "return_tensors": "pt"}
    n_prompt = processor(text=[prompt], **kwargs)["input_ids"].shape[1]
    inputs = processor(text=[prompt + example["answer"]], **kwargs)
    n_answer = inputs["input_ids"].shape[1] - n_prompt
    assert results["n_answer_tokens"] == n_answer >= 1

    with torch.no_grad():
        out = model(**inputs, output_attentions=True)
        expanded = model.insert_thinking(inputs["input_ids"]).input_ids[0]
        seq = len(expanded)
        assert seq == inputs["input_ids"].shape[1] + 3
        queries = torch.arange(seq - n_answer - 1, seq - 1)  # the positions that predict the answer tokens
        thinking = expanded >= vocab
        assert int(thinking.sum()) == 3
        audio = expanded == base.config.audio_token_index
        coat_thinking = _layer_shares(out.attentions, queries, thinking)
        coat_audio = _layer_shares(out.attentions, queries, audio)
        model.unwrap()
        plain = base(**inputs, output_attentions=True)
        ids = inputs["input_ids"][0]
        base_audio = _layer_shares(plain.attentions, torch.arange(len(ids) - n_answer - 1, len(ids) - 1),
                                   ids == base.config.audio_token_index)

    shares = results["attention_share"]
    np.testing.assert_allclose(shares["saved"]["thinking"], coat_thinking, atol=1e-5)
    np.testing.assert_allclose(shares["saved"]["audio"], coat_audio, atol=1e-5)
    np.testing.assert_allclose(shares["base"]["audio"], base_audio, atol=1e-5)
    assert all(0.0 < s < 1.0 for s in coat_thinking + coat_audio + base_audio)

    # no reference answer: the base model's greedy continuation is the answer every model is scored on
    generated = run_analysis(load_config(AnalyzeConfig, CONFIG, overrides + ["data.answer_column=null",
                                                                             "generate_tokens=3"]))
    assert generated["answers"] == "generated by base" and generated["n_answer_tokens"] == 3


def _decodable(n=400, classes=4, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    means = rng.standard_normal((classes, dim)) * 3
    features = means[labels] + rng.standard_normal((n, dim))
    return torch.tensor(features, dtype=torch.float32), labels, rng


def test_probe_decodes_linear_labels_and_not_shuffled_ones():
    from coat.analysis import split_indices

    features, labels, rng = _decodable()
    train, test = split_indices(len(labels), 0.7, seed=0)
    assert len(set(train) | set(test)) == len(labels) and not set(train) & set(test)
    decodable = probe_accuracy(features, labels, train, test)
    assert decodable["accuracy"] >= 0.97
    assert 0.15 < decodable["chance"] < 0.4  # four balanced classes
    shuffled = probe_accuracy(features, rng.permutation(labels), train, test)
    assert abs(shuffled["accuracy"] - shuffled["chance"]) < 0.15
    # string classes work the same
    named = probe_accuracy(features, np.array([f"class {v}" for v in labels], dtype=object), train, test)
    assert named["accuracy"] == decodable["accuracy"]


def test_bad_config_key_is_an_error_naming_it(tiny, tmp_path, capsys):
    with pytest.raises(ConfigError, match="adapterz"):
        load_config(AnalyzeConfig, CONFIG, ["adapterz=[]"])
    with pytest.raises(ConfigError, match=r"probes\[0\]\.colum"):
        load_config(AnalyzeConfig, CONFIG, ["probes=[{name: x, colum: f0_hz}]"])
    assert main(["analyze", str(CONFIG), "data.synth.tset_size=3", f"output_dir={tmp_path}"]) == 2
    assert "data.synth.tset_size" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="exactly one label source"):
        load_config(AnalyzeConfig, CONFIG, ["probes=[{name: x}]"])


def test_missing_label_source_is_a_clear_error_before_any_model_runs(tmp_path):
    never = tmp_path / "never-built"
    common = [f"model.name_or_path={never}", f"output_dir={tmp_path / 'out'}", "progress=false",
              f"targets.cache_dir={tmp_path / 'targets'}"]
    config = load_config(AnalyzeConfig, CONFIG, common + ["probes=[{name: mood, metadata: emotion_label}]"])
    with pytest.raises(ConfigError, match="probe 'mood'.*'emotion_label'"):
        run_analysis(config)
    config = load_config(AnalyzeConfig, CONFIG, common + ["probes=[{name: emotion, cache: emotion}]"])
    with pytest.raises(ConfigError, match="probe 'emotion'.*cache 'emotion' not found"):
        run_analysis(config)
    assert not never.exists()  # labels are resolved before the model is loaded


def test_pitch_class_labels_from_a_real_crepe_cache_match_the_synth_f0(tmp_path):
    from coat.data.sources import ExampleListSource
    from coat.experts import build_expert, compute_targets

    examples = generate_split(SynthConfig(train_size=0, validation_size=0, test_size=4, categories=("note",)), "test")
    source = ExampleListSource(examples)
    compute_targets(source, [build_expert("pitch", model="tiny")], tmp_path, progress=False)
    ids, meta = source.ids(), [source.metadata(i) for i in range(len(source))]
    from_cache = resolve_labels(ProbeTask(name="pitch", cache="pitch"), ids, meta, str(tmp_path))
    from_meta = resolve_labels(ProbeTask(name="pitch", metadata="f0_hz"), ids, meta, str(tmp_path))
    assert from_cache == from_meta == [hz_to_pitch_class(e["f0_hz"]) for e in examples]
    with pytest.raises(ConfigError, match="no target 'pich'"):
        resolve_labels(ProbeTask(name="p", cache="pitch", target="pich"), ids, meta, str(tmp_path))


def test_cached_labels_of_a_long_clip_describe_the_audio_the_model_receives(tmp_path):
    """2 s of A4 then 4 s of C5: over the whole clip the pitch class is C; the model (window 2 s) hears only A."""
    from coat.data.sources import ExampleListSource
    from coat.experts import build_expert, compute_targets

    t = np.arange(6 * 16000) / 16000
    audio = (0.5 * np.sin(2 * np.pi * np.where(t < 2, 440.0, 523.25) * t)).astype(np.float32)
    source = ExampleListSource([{"id": "long", "audio": audio, "sampling_rate": 16000}])
    compute_targets(source, [build_expert("pitch", model="tiny")], tmp_path, progress=False)
    task = ProbeTask(name="pitch", cache="pitch")
    assert resolve_labels(task, ["long"], [{}], str(tmp_path)) == ["C"]
    assert resolve_labels(task, ["long"], [{}], str(tmp_path), heard_seconds=2.0) == ["A"]


SPEECH_PROBES = ("probes=[{name: speaker_pitch, metadata: answer, where: {category: speech_pitch}}, "
                 "{name: speech_rate, metadata: answer, where: {category: [speech_rate]}}, "
                 "{name: voice, metadata: voice}, {name: category, metadata: category}, "
                 "{name: category_shuffled, metadata: category, shuffle: true}]")


def test_speech_probes_run_on_the_right_labels_and_shuffled_labels_are_at_chance(tiny, tmp_path):
    """The speech probes of the demo's analysis on a tiny model: speaker pitch and rate class from their categories'
    answers, the voice from every clip that has one; the same category labels, shuffled, score chance."""
    pytest.importorskip("espeakng_loader", reason="needs the 'speech' extra")
    from coat.data.speech_categories import ALL_VOICES

    config = load_config(AnalyzeConfig, CONFIG, [
        f"model.name_or_path={tiny}", f"output_dir={tmp_path / 'out'}", "progress=false",
        f"targets.cache_dir={tmp_path / 'targets'}", "data.synth.categories=[speech_pitch, speech_rate, speech_word]",
        "data.synth.test_size=60", SPEECH_PROBES])
    results = run_analysis(config)
    probes = results["probes"]
    assert probes["speaker_pitch"]["n_examples"] == 20 and probes["speaker_pitch"]["classes"] == ["a high voice",
                                                                                                 "a low voice"]
    assert probes["speech_rate"]["n_examples"] == 20 and probes["speech_rate"]["classes"] == ["fast", "slow"]
    assert probes["voice"]["n_examples"] == 60 and set(probes["voice"]["classes"]) <= set(ALL_VOICES)
    assert len(probes["voice"]["classes"]) > 5
    for name in ("speaker_pitch", "speech_rate", "voice", "category"):
        assert set(probes[name]["base"]) == {"1"} and 0.0 <= probes[name]["thinking"]["coat_k4"]["accuracy"] <= 1.0
    # the category is in the base model's last audio state (a one-word clip is short); shuffled, it is at chance
    real, shuffled = probes["category"], probes["category_shuffled"]
    assert real["base"]["1"] > real["chance"] + 0.2
    # a probe of random labels scores chance up to sampling noise on the small test split: within three binomial
    # standard deviations (about 0.33 at 18 test examples), and clearly below the real labels
    noise = 3 * math.sqrt(shuffled["chance"] * (1 - shuffled["chance"]) / shuffled["n_test"])
    for accuracy in (shuffled["base"]["1"], shuffled["thinking"]["coat_k4"]["accuracy"]):
        assert abs(accuracy - shuffled["chance"]) <= noise and accuracy < real["base"]["1"]
    table = (tmp_path / "out" / "analysis.md").read_text()
    assert "| speaker_pitch | 20 (14 / 6) | 2 |" in table and "coat_k4 thinking" in table


def test_where_and_shuffle_select_and_permute_labels(tmp_path):
    meta = [{"category": c, "answer": a, "voice": v} for c, a, v in
            [("speech_pitch", "a high voice", "f1"), ("speech_rate", "fast", "m3"), ("speech_pitch", "a low voice",
                                                                                      "m1"), ("note", "C4", None)]]
    ids = [str(i) for i in range(len(meta))]

    def labels(**task):
        return resolve_labels(ProbeTask(name="p", **task), ids, meta, str(tmp_path), seed=3)

    assert labels(metadata="answer", where={"category": "speech_pitch"}) == ["a high voice", None, "a low voice", None]
    assert labels(metadata="voice", where={"category": ["speech_pitch", "note"]}) == ["f1", None, "m1", None]
    shuffled = labels(metadata="answer", shuffle=True)
    assert sorted(shuffled) == sorted(m["answer"] for m in meta) and shuffled != [m["answer"] for m in meta]
    assert labels(metadata="voice", shuffle=True)[3] is None  # a missing label stays missing
    with pytest.raises(ConfigError, match="where names the metadata field 'speaker'"):
        labels(metadata="answer", where={"speaker": "f1"})
    with pytest.raises(ValueError, match="where must map"):
        ProbeTask(name="p", metadata="answer", where=["speech_pitch"])
