"""`coat bench generation` and `coat bench training` at the tiny size: files, fields, exact forward-call counts;
`coat bench targets` on two cheap experts: its sizes and fidelity figures.

Wall-clock figures are never asserted (shared CI machines); only that they and their ratios are positive numbers.
"""

import json
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the top-level benchmarks/ folder

from benchmarks import generation, targets, training  # noqa: E402
from coat import zoo  # noqa: E402


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_generation_tiny(tmp_path, capsys):
    k, n = 2, 3
    assert generation.main(["--size", "tiny", "--device", "cpu", "--ks", str(k), "--new-tokens", str(n),
                            "--repeats", "1", "--warmup", "0", "--out", str(tmp_path)]) == 0
    assert "| base |" in capsys.readouterr().out
    result = json.loads((tmp_path / "generation.json").read_text())
    assert (tmp_path / "generation.md").read_text().startswith("generation: qwen2_audio tiny")
    rows = {r["name"]: r for r in result["rows"]}
    assert list(rows) == ["base", f"coat K={k}", f"base +{k} prompt", f"coconut K={k}", f"text CoT K={k}"]
    # N new tokens: N forward calls, with or without CoAT; the latent block and the text CoT add K calls
    assert rows["base"]["forward_calls"] == n
    assert rows[f"coat K={k}"]["forward_calls"] == n
    assert rows[f"base +{k} prompt"]["forward_calls"] == n
    assert rows[f"coconut K={k}"]["forward_calls"] == n + k
    assert rows[f"text CoT K={k}"]["forward_calls"] == n + k
    prompt = rows["base"]["prompt_tokens"]
    assert rows[f"coat K={k}"]["prompt_tokens"] == rows[f"base +{k} prompt"]["prompt_tokens"] == prompt + k
    assert rows[f"coconut K={k}"]["positions_before_answer"] == prompt + k
    for row in rows.values():
        for key in ("ttft_s", "decode_tokens_per_s", "total_s", "ttft_ratio", "decode_tokens_per_s_ratio",
                    "total_ratio", "calls_ratio", "gflops_to_first_token", "gflops_per_decode_token"):
            assert _positive(row[key]), (row["name"], key, row[key])
    assert rows[f"coat K={k}"]["calls_ratio"] == 1.0
    # the prefill does K more positions of work; every decode step is the base model's, over K more cache entries
    assert rows[f"coat K={k}"]["gflops_to_first_token"] > rows["base"]["gflops_to_first_token"]
    assert rows[f"coat K={k}"]["gflops_per_decode_token"] == pytest.approx(
        rows[f"base +{k} prompt"]["gflops_per_decode_token"], rel=1e-9)
    assert result["targets"][f"K={k}"]["forward_calls_equal_base"] is True
    assert _positive(result["targets"][f"K={k}"]["ttft_vs_padded_base_ratio"])


@pytest.mark.parametrize("family", ["qwen2_audio", "qwen2_5_omni_thinker", "audioflamingo3"])
def test_coconut_without_latent_steps_is_greedy_decoding(family):
    model = zoo.build_model(family)
    inputs = zoo.make_inputs(model, audios_per_prompt=(1, 1), padding_side="left")
    expected = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    tokens = generation.coconut_generate(model, inputs, num_latent=0, new_tokens=4)
    assert torch.equal(tokens, expected[:, inputs["input_ids"].shape[1]:])
    assert generation.coconut_generate(model, inputs, num_latent=3, new_tokens=4).shape == (2, 4)


@pytest.mark.parametrize("family, hidden, layers", [("qwen2_audio", 4096, 32), ("qwen2_5_omni_thinker", 3584, 28),
                                                    ("audioflamingo3", 3584, 28)])
def test_seven_b_shapes(family, hidden, layers):
    config = zoo.released_config(family)
    text = config.text_config
    assert (text.hidden_size, text.num_hidden_layers) == (hidden, layers)
    assert config.audio_config.d_model == 1280 and config.audio_config.encoder_layers == 32


def test_lora_targets_stay_in_the_language_model():
    model = zoo.build_model("qwen2_audio")
    names = training.lora_target_names(model)
    assert len(names) == 4 * model.config.text_config.num_hidden_layers
    assert all(".language_model.layers." in n and "audio_tower" not in n for n in names)


TINY_TRAINING = ["--size", "tiny", "--device", "cpu", "--batch", "2", "--steps", "1", "--warmup", "0",
                 "--memory-steps", "1", "--head-d-model", "32", "--head-frames", "16"]


def _check_training(tmp_path, memory: bool):
    result = json.loads((tmp_path / "training.json").read_text())
    assert (tmp_path / "training.md").read_text().startswith("training: qwen2_audio tiny")
    rows = {r["variant"]: r for r in result["rows"]}
    assert list(rows) == ["lora", "coat text", "coat"]
    keys = ["step_s", "step_ratio", "step_gflops", "flops_ratio"]
    keys += ["peak_mb", "model_peak_mb", "peak_ratio", "process_peak_ratio"] if memory else []
    for row in rows.values():
        assert row["forward_calls_per_step"] == 1
        for key in keys:
            assert _positive(row[key]), (row["variant"], key, row[key])
        assert math.isfinite(row["last_loss"])
    assert rows["coat"]["sequence"] == rows["lora"]["sequence"] + result["k"]
    assert rows["lora"]["head_params"] == rows["coat text"]["head_params"] == 0 < rows["coat"]["head_params"]
    assert rows["lora"]["head_gflops"] == 0 < rows["coat"]["head_gflops"]
    assert rows["lora"]["step_gflops"] < rows["coat text"]["step_gflops"] < rows["coat"]["step_gflops"]
    assert rows["lora"]["trainable_params"] < rows["coat text"]["trainable_params"] < rows["coat"]["trainable_params"]
    return result


def test_training_tiny(tmp_path):
    assert training.main(TINY_TRAINING + ["--no-memory", "--out", str(tmp_path)]) == 0
    result = _check_training(tmp_path, memory=False)
    assert set(result["target_checks"]) == {"step_time_within_10pct"}


def test_training_memory_fields():
    opts = dict(family="qwen2_audio", size="tiny", device="cpu", dtype="float32", k=4, batch=1, answer_len=4,
                lora_rank=4, seed=0, memory_steps=1, threads=1, head=dict(d_model=32, num_frames=8))
    memory = training.measure_memory("coat", opts)
    assert memory["peak_mb"] >= memory["setup_mb"] > memory["runtime_mb"] > 0
    assert "VmHWM" in memory["memory_method"] or "ru_maxrss" in memory["memory_method"]


@pytest.mark.slow
def test_training_tiny_with_memory_subprocesses(tmp_path):
    assert training.main(TINY_TRAINING + ["--out", str(tmp_path)]) == 0
    result = _check_training(tmp_path, memory=True)
    assert set(result["target_checks"]) == {"step_time_within_10pct", "peak_memory_within_5pct"}


def test_targets_bench_sizes_speeds_and_fidelity(tmp_path, capsys):
    """Log-mel costs no disk (made in the data loader) and gives the float32 values; a speech-activity cache is
    smaller than its float32 copy and within float16 of it; the qwen2_audio set's total is the sum of its rows."""
    assert targets.main(["experts=[reconstruction, speech_activity]", "num_clips=1", "repeats=1",
                         f"out={tmp_path}"]) == 0
    assert "| reconstruction | 0.00 |" in capsys.readouterr().out
    result = json.loads((tmp_path / "targets.json").read_text())
    rows = {r["expert"]: r for r in result["results"]}
    assert rows["reconstruction"]["made_in_training"] == ["logmel"] and rows["reconstruction"]["mb_per_hour"] == 0
    assert rows["reconstruction"]["fidelity"]["logmel"]["max_abs_diff"] < 1e-4
    vad = rows["speech_activity"]
    assert 0 < vad["mb_per_hour"] < vad["float32_mb_per_hour"]
    assert vad["fidelity"]["speech_activity"]["max_abs_diff"] <= 2 ** -11
    assert all(_positive(r[k]) for r in rows.values() for k in ("batched_audio_s_per_s", "single_audio_s_per_s"))
    total = result["config_set"]
    assert total["measured"] == ["reconstruction"] and total["mb_per_hour"] == 0
