"""Every YAML in configs/ is validated against its dataclass, and its experts are buildable."""

from pathlib import Path

import pytest

from coat.ablation import load_ablation_config
from coat.analysis import AnalyzeConfig
from coat.cli.targets import TargetsConfig
from coat.config_io import from_dict, load_config
from coat.demo import DemoConfig
from coat.evaluation import EvalConfig
from coat.experts import build_experts
from coat.training import TrainConfig

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))
SPECIAL = {"targets_example.yaml": TargetsConfig, "demo.yaml": DemoConfig, "eval_tiny.yaml": EvalConfig,
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
