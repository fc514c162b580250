"""Shared fixtures: tiny models of every supported family, saved once and loaded through from_pretrained; the
``accelerate launch`` command of the multi-process tests."""

import sys

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


@pytest.fixture(scope="session")
def accelerate_launch():
    """accelerate_launch(processes, *options) -> the ``accelerate launch`` command line, up to the script.

    Every launch gets its own port: ``--main_process_port 0`` lets the launcher take a free one and bind it at
    once. Without it every launch on the machine shares accelerate's default 29500 and the test suites running side
    by side (one per worktree here, the CI's jobs on one runner) race between accelerate's "is 29500 in use?" check
    and the bind: the later launch fails with "address already in use"."""

    def command(processes: int, *options: str) -> list[str]:
        return [sys.executable, "-m", "accelerate.commands.launch", "--main_process_port", "0", "--num_processes",
                str(processes), *options]

    return command
