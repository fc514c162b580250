"""coat demo: the quick demo end to end through the CLI, its outputs, the adapter reload, determinism with the
cached pre-trained model, and the config file. The full 3-seed check is ``slow``."""

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

import coat
from coat.cli import main as coat_main
from coat.config_io import ConfigError
from coat.demo import VARIANTS, DemoConfig, event_caption, load_demo_config
from coat.loading import ModelConfig, load_model_and_processor

ROOT = Path(__file__).resolve().parent.parent


def _process_settings():
    from transformers.utils import logging as hf_logging

    return torch.get_num_threads(), hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    """Two quick demos with the same seed sharing one cache: the second reuses the pre-trained model. The first runs
    its variants here, one after another (workers=1); the second runs as its own process with another string hash
    seed, as a user's second command would, and trains and evaluates in two worker processes (the default)."""
    tmp = tmp_path_factory.mktemp("demo")
    args = ["demo", "--quick", f"cache_dir={tmp}/cache", "--output"]
    before = _process_settings()
    assert coat_main([*args, str(tmp / "first"), "workers=1"]) == 0
    assert _process_settings() == before  # the demo's fixed threads and quiet logging do not leak to the caller
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    done = subprocess.run([sys.executable, "-m", "coat", *args, str(tmp / "second")], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp, [tmp / "first", tmp / "second"]


def test_quick_demo_writes_the_report_and_a_reloadable_adapter(quick_runs):
    tmp, (out, _) = quick_runs
    for name in ("demo.md", "demo.png", "demo.json"):
        assert (out / name).is_file(), name
    table = (out / "demo.md").read_text()
    report = json.loads((out / "demo.json").read_text())
    assert list(report["table"]) == list(VARIANTS)
    assert report["split"] == "test" and report["seeds"] == [0]
    categories = report["config"]["data"]["synth"]["categories"]
    for category in ["**overall**", *categories]:
        assert f"| {category} |" in table
    # CoAT's column names its experts and weights
    assert "expert heads (pitch 0.3, formants 0.3, speech_activity 0.3) |" in table
    assert "| note | 0.250 |" in table and "| contour | 0.333 |" in table  # a uniform guess among the choices
    assert "| speech_pitch | 0.500 |" in table and "| speech_word | 0.250 |" in table
    metrics = report["runs"][0]["metrics"]
    assert all(metrics[v]["n"] == report["config"]["data"]["synth"]["test_size"] for v in VARIANTS)
    # the likelihood picks' accuracy beside the generated answers', from the same evaluation
    assert "Likelihood (the option with the highest log-probability per byte" in table
    for variant in VARIANTS:
        for row, cell in report["likelihood_table"][variant].items():
            assert cell["mean"] == pytest.approx(metrics[variant][row])
    assert f"| **overall** | 0.347 | {metrics['no_thinking']['likelihood_accuracy']:.3f} |" in table

    base, processor = load_model_and_processor(ModelConfig(name_or_path=report["model_dir"]))
    assert type(base).__name__ == "Qwen2AudioForConditionalGeneration"
    model = coat.CoATModel.from_pretrained(base, out / "adapter")
    assert model.num_thinking == report["config"]["num_thinking"]
    assert sorted(model.heads.specs) == ["formant_voicing", "formants", "pitch", "speech_activity", "voicing"]
    assert any("lora_" in name for name, _ in model.named_parameters())
    assert (Path(report["model_dir"]) / "pretrain.json").is_file()


def test_quick_demo_is_deterministic_and_reuses_the_pretrained_model(quick_runs):
    tmp, (first, second) = quick_runs
    assert len(list((tmp / "cache").glob("model-*"))) == 1
    assert (first / "demo.md").read_text() == (second / "demo.md").read_text()
    one, two = (json.loads((out / "demo.json").read_text()) for out in (first, second))
    assert one["table"] == two["table"] and one["likelihood_table"] == two["likelihood_table"]
    assert (one["config"]["workers"], two["config"]["workers"]) == (1, 2)
    assert two["cpu_seconds"]["total"] > two["cpu_seconds"]["variants"] > 0  # the workers' CPU time is counted
    assert one["model_dir"] == two["model_dir"]
    assert one["timings"]["pretrain_and_load"] > two["timings"]["pretrain_and_load"]
    for path in (first / "adapter").rglob("*.safetensors"):
        assert path.read_bytes() == (second / "adapter" / path.relative_to(first / "adapter")).read_bytes()


def test_demo_yaml_is_the_dataclass_defaults_and_overrides_apply():
    assert asdict(load_demo_config(ROOT / "configs" / "demo.yaml")) == asdict(DemoConfig())
    config = load_demo_config(None, ["training.steps=3", "quick=true", "seeds=2", "output_dir=x"])
    assert (config.seeds, config.output_dir, config.training.steps) == (2, "x", 3)
    assert config.pretrain.steps == DemoConfig().quick_overrides["pretrain"]["steps"]
    with pytest.raises(ConfigError, match="trainin"):
        load_demo_config(None, ["trainin.steps=3"])


@pytest.mark.slow
def test_full_demo_tones_and_speech_three_seeds_both_scorings(tmp_path):
    """The issue's check: the default ``coat demo`` writes a table with tone and speech categories, 3 seeds' mean
    and spread, for both scorings (about 7 minutes on 2 idle CPU cores from an empty cache). Whether CoAT beats both
    baselines by more than the spread is measured and reported, not assumed (README)."""
    from coat.data.synth import category_groups

    out = tmp_path / "out"
    assert coat_main(["demo", "--output", str(out), f"cache_dir={tmp_path}/cache"]) == 0
    report = json.loads((out / "demo.json").read_text())
    assert report["seeds"] == [0, 1, 2] and report["split"] == "test"
    groups = category_groups()
    categories = [*groups["tones"], *groups["speech"]]
    assert report["config"]["data"]["synth"]["categories"] == categories
    text = (out / "demo.md").read_text()
    for table, metric in (("table", "accuracy"), ("likelihood_table", "likelihood_accuracy")):
        for variant in VARIANTS:
            runs = [run["metrics"][variant] for run in report["runs"]]
            for row in [metric, *(f"{metric}/{c}" for c in categories)]:
                values = [m[row] for m in runs]
                cell = report[table][variant][row]
                assert cell["mean"] == pytest.approx(sum(values) / 3)
                assert cell["std"] == pytest.approx(float(torch.tensor(values, dtype=torch.float64).std()))
    for category in categories:
        assert text.count(f"| {category} |") == 2, category  # in both tables, each cell mean +- std
    assert text.count("±") == 2 * 3 * (len(categories) + 1)
    for check in (report["check"], report["likelihood_check"]):
        assert check["met"] == (check["margin"] > check["seed_spread"])


def test_a_nested_override_keeps_the_demo_defaults_of_its_section():
    config = load_demo_config(None, ["data.synth.validation_size=7", "heads.layers=2"])
    synth = config.data.synth
    assert synth.train_size == DemoConfig().data.synth.train_size and synth.validation_size == 7
    assert config.heads.num_frames == DemoConfig().heads.num_frames and config.heads.layers == 2


def test_event_captions_name_the_sound_but_not_the_detail_the_questions_ask_about():
    from coat.data.synth import SynthConfig, generate_split

    examples = generate_split(SynthConfig(train_size=60, validation_size=0, test_size=0), "train")
    for ex in examples:
        caption = event_caption(ex)
        assert caption and caption in ex["caption"] or ex["category"] == "count" or ex["answer"] == "beeps", ex["id"]
        words = set(caption.split())
        if ex["category"] in ("note", "count"):
            assert ex["answer"] not in words, (caption, ex["answer"])
        if ex["category"] in ("contour", "loudness"):
            assert not words & {"rises", "falls", "steady", "louder", "softer", "equally"}, caption
        assert not any(w.isdigit() for w in words), caption
    assert {event_caption(ex) for ex in examples if ex["category"] == "count"} == {"short beeps"}
    with pytest.raises(ValueError, match="detailed_fraction"):
        load_demo_config(None, ["pretrain.detailed_fraction=1.5"])


def test_event_captions_of_speech_say_a_voice_speaks_but_not_how():
    """Spoken clips are captioned as a generic captioner would: a voice (two for speech_voice) and, for
    speech_word, the word said (speech content, as the vowel sung); never high or low, fast or slow, which voice,
    rising or falling, or how many words."""
    from coat.data.synth import SynthConfig, generate_split

    examples = generate_split(SynthConfig(categories=["speech"], train_size=24, validation_size=0, test_size=0),
                              "train")
    detail = {"high", "low", "fast", "slow", "slowly", "first", "second", "rises", "falls", "asking", "last"}
    for ex in examples:
        caption = event_caption(ex)
        words = set(caption.split())
        assert "voice" in words or "voices" in words, caption
        assert not words & detail and not any(w.isdigit() for w in words), (caption, ex["caption"])
        if ex["category"] == "speech_word":
            assert ex["answer"] in words and caption == ex["caption"]
        else:
            assert ex["answer"] not in caption


def test_text_captions_teach_the_detail_words_as_text_only_examples():
    """pretrain.text_captions: the clips captioned by event_caption also give their detailed caption as a text-only
    example (no audio features in its batch); the language model then predicts the detail words better than
    without, from the same clips and steps."""
    import numpy as np

    from coat import zoo
    from coat.data.collate import CoATCollator
    from coat.data.config import DataConfig
    from coat.data.synth import SynthConfig, generate_split
    from coat.demo import (
        CAPTION_PROMPT,
        PretrainConfig,
        SmallModelConfig,
        _caption,
        build_small_model,
        demo_words,
        pretrain_captioning,
    )

    processor = zoo.build_qwen2_audio_processor(demo_words(), chunk_seconds=2)
    collate = CoATCollator(processor)
    vocab = processor.tokenizer.get_vocab()
    held_out = [{"audio": None, "prompt": CAPTION_PROMPT, "answer": _caption(ex["caption"], vocab)}
                for ex in generate_split(SynthConfig(seed=7, train_size=24, validation_size=0, test_size=0), "train")]
    batch = collate(held_out)
    assert "input_features" not in batch and processor.tokenizer.convert_tokens_to_ids("<|AUDIO|>") not in \
        batch["input_ids"]
    n_answer = len(processor.tokenizer(held_out[0]["answer"] + "<|im_end|>", add_special_tokens=False)["input_ids"])
    assert int((batch["labels"][0] != -100).sum()) == n_answer
    with pytest.raises(ValueError, match="text-only"):
        collate([held_out[0], {**held_out[1], "audio": np.zeros(16000, np.float32)}])

    small = SmallModelConfig(hidden_size=32, intermediate_size=64, layers=1, attention_heads=2, kv_heads=1,
                             audio_d_model=16, audio_layers=1, audio_heads=2, audio_ffn=32)
    losses = {}
    for text_captions in (False, True):
        data = DataConfig(synth=SynthConfig(train_size=1, validation_size=1, test_size=1))
        config = DemoConfig(model=small, data=data,
                            pretrain=PretrainConfig(examples=24, steps=30, batch_size=8, learning_rate=3e-3,
                                                    detailed_fraction=0.0, text_captions=text_captions))
        model = build_small_model(processor, small)
        pretrain_captioning(model, processor, config, log=lambda *_: None)
        with torch.no_grad():
            losses[text_captions] = float(model(**batch).loss)
    assert losses[True] < losses[False], losses
