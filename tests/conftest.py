"""Shared fixtures: tiny models of every supported family, saved once and loaded through from_pretrained; a tiny
Qwen2-Audio with its real processor and a CoAT adapter, saved; the ``accelerate launch`` command of the
multi-process tests."""

import sys

import pytest
import torch
import transformers as tf

import coat
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
def save_tiny_with_adapter(tmp_path_factory):
    """save(name, words) -> a new folder holding ``model/`` (a tiny random Qwen2-Audio and its real processor, whose
    tokenizer knows ``words``) and ``adapter/`` (a CoAT adapter of it, K = 4), both loadable with from_pretrained."""

    def save(name: str, words: list[str]):
        root = tmp_path_factory.mktemp(name)
        processor = zoo.build_qwen2_audio_processor(words, chunk_seconds=2)
        processor.save_pretrained(root / "model")
        zoo.model_for_processor(processor, seed=0).save_pretrained(root / "model")
        base = tf.Qwen2AudioForConditionalGeneration.from_pretrained(root / "model")
        coat.wrap(base, num_thinking=4).save_pretrained(root / "adapter")
        return root

    return save


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
