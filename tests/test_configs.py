"""Every YAML in configs/ is validated against its dataclass, and its experts are buildable."""

from pathlib import Path

import pytest

from coat.ablation import load_ablation_config
from coat.analysis import AnalyzeConfig
from coat.cli.targets import TargetsConfig
from coat.config_io import load_config
from coat.evaluation import EvalConfig
from coat.experts import build_experts
from coat.training import TrainConfig

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))
SPECIAL = {"targets_example.yaml": TargetsConfig, "eval_tiny.yaml": EvalConfig, "analyze_tiny.yaml": AnalyzeConfig}


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
