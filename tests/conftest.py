"""Shared fixtures: tiny models of every supported family, saved once and loaded through from_pretrained."""

import pytest
import torch
import transformers as tf

from coat import zoo

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def saved_tiny(tmp_path_factory):
    """family -> folder holding a tiny random model saved with save_pretrained."""
    root = tmp_path_factory.mktemp("tiny_models")
    paths = {}
    for family in zoo.FAMILIES:
        path = root / family
        zoo.build_model(family).save_pretrained(path)
        paths[family] = path
    return paths


@pytest.fixture
def load_tiny(saved_tiny):
    """load_tiny(family) -> a fresh model loaded from disk with the real class's from_pretrained."""

    def load(family, **kwargs):
        cls = getattr(tf, zoo.MODEL_CLASSES[family])
        model = cls.from_pretrained(saved_tiny[family], **kwargs).eval()
        model.generation_config.pad_token_id = zoo.PAD
        model.generation_config.eos_token_id = None
        return model

    return load
