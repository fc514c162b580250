"""Every YAML in configs/ is validated against its dataclass, and its experts are buildable."""

from pathlib import Path

import pytest

from coat.ablation import load_ablation_config
from coat.analysis import AnalyzeConfig
from coat.config_io import ConfigError, from_dict, load_config
from coat.demo import DemoConfig
from coat.evaluation import EvalConfig
from coat.experts import build_experts
from coat.extraction import ExtractConfig
from coat.training import TrainConfig

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))
SPECIAL = {"targets_example.yaml": ExtractConfig, "demo.yaml": DemoConfig, "eval_tiny.yaml": EvalConfig,
           "analyze_tiny.yaml": AnalyzeConfig}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_is_valid(path):
    if path.name == "ablate_tiny.yaml":  # an ablation resolves its train and eval configs down to the experts
        load_ablation_config(path)
        return
    cls = SPECIAL.get(path.name, TrainConfig)
    config = load_config(cls, path)
    if cls is TrainConfig:  # expert names and parameters are checked by building them (no weights load here)
        experts = build_experts(config.experts)
        assert len(experts) == len(config.experts)


def test_real_model_configs_exist():
    names = {p.name for p in CONFIGS}
    assert {"qwen2_audio.yaml", "qwen2_5_omni.yaml", "audioflamingo3.yaml", "tiny.yaml"} <= names


def test_a_partial_section_keeps_the_parents_defaults_and_numbers_are_numbers():
    from dataclasses import dataclass, field

    @dataclass
    class Inner:
        size: int = 1
        other: int = 2

    @dataclass
    class Outer:
        inner: Inner = field(default_factory=lambda: Inner(size=10, other=20))
        lr: float = 0.1

    got = from_dict(Outer, {"inner": {"other": 5}, "lr": "5e-3"})  # YAML 1.1 reads 5e-3 as a string
    assert got == Outer(Inner(size=10, other=5), 0.005)


TINY = Path(__file__).resolve().parent.parent / "configs" / "tiny.yaml"


@pytest.mark.parametrize("override, message", [
    ('coat.freeze_base="false"', r"coat.freeze_base: expected true or false \(a boolean\), got 'false' \(a string\)"),
    ('targets.compute="false"', r"targets.compute: expected true or false"),
    ('training.bf16="false"', r"training.bf16: expected true or false"),
    ("training.save_steps=abc", r"training.save_steps: expected an integer, got 'abc' \(a string\)"),
    ("lora.r=abc", r"lora.r: expected an integer, got 'abc'"),
    ("experts=pitch", r"experts: expected a list of ExpertConfig mappings or strings, got 'pitch' \(a string\)"),
    ("stages=[{name: a, train: thinking}]", r"stages\[0\].train: expected a list of strings, got 'thinking'"),
    ("heads.dropout=[0.1]", r"heads.dropout: expected a number, got \[0.1\] \(a list\)"),
    ("experts=[{name: pitch, params: [1]}]", r"experts\[0\].params: expected a mapping"),
    ("data.synth.peak_db=[1, 2, 3]", r"data.synth.peak_db: expected a list of 2 values"),
    ("model.dtype=[float32]", r"model.dtype: expected a string, got \['float32'\]"),
])
def test_every_value_is_checked_against_its_field_type_naming_the_key(override, message):
    # the values arrive as YAML reads them: `"false"` (quoted) is a string, never the boolean
    with pytest.raises(ConfigError, match=message):
        load_config(TrainConfig, TINY, [override])


def test_yaml_spellings_of_numbers_are_accepted():
    config = load_config(TrainConfig, TINY, ["stages=[{name: a, learning_rate: 5e-3, max_steps: 1e2, epochs: 2}]",
                                             "heads.dropout=0", "experts=[pitch]", "data.synth.peak_db=[-20, -1]"])
    stage = config.stages[0]
    assert (stage.learning_rate, stage.max_steps, stage.epochs) == (0.005, 100, 2)
    assert config.heads.dropout == 0 and config.experts[0].name == "pitch"
    with pytest.raises(ConfigError, match=r"stages\[0\].max_steps: expected an integer, got 2.5"):
        load_config(TrainConfig, TINY, ["stages=[{name: a, max_steps: 2.5}]"])


def test_the_cli_reports_a_bad_value_before_any_work(capsys, tmp_path):
    from coat.cli import main

    code = main(["train", str(TINY), f"training.output_dir={tmp_path}/out", "training.save_steps=abc"])
    assert code == 2
    assert "training.save_steps: expected an integer, got 'abc'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
