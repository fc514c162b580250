"""The offline demo behind ``coat demo``: does CoAT beat its two baselines on the synthetic acoustic QA benchmark,
on tones and on speech?

One readable recipe, runnable on a CPU with nothing downloaded:

1. **A small LALM of a real family.** A Qwen2-Audio (``Qwen2AudioForConditionalGeneration``, wider than the test
   models: :class:`SmallModelConfig`) with a word-level tokenizer for the benchmark's text, **pre-trained from
   scratch** (full fine-tuning of audio tower, projector and language model) on clips of its own seed, so that its
   states are shaped for text before CoAT sees it. By default its audio is captioned the way a generic captioner
   would (:func:`event_caption`: the kind of sound, its timbre, the vowel; a voice speaking, the hVd word said),
   while the detailed captions (note, pitch direction, loudness change, count; high or low voice, fast or slow,
   which voice, rising or falling, how many words) come as text-only examples: the language model knows the words,
   as a real LALM's does from text, but the audio encoder is never taught the acoustic detail. Saved with
   ``save_pretrained`` to a folder keyed by a hash of its settings and loaded back with ``from_pretrained``: every
   seed and variant, and a second run with the same settings, reuse it.
2. **Three variants, one budget, per seed**, trained with :func:`coat.training.run_training` on the same QA train
   split (tone and spoken categories, one model for all), all with LoRA in the language model and the audio
   encoder: ``no_thinking`` (LoRA only), ``thinking`` (K thinking positions + LoRA, no expert loss: the pause-token
   baseline) and ``coat`` (thinking + expert heads + LoRA, with the losses of the experts that fit the categories on
   the thinking states after decoder layer 0: CREPE-tiny pitch, Praat formants, Silero speech activity; chosen on
   the validation split). Expert targets are computed once into the target cache (``coat targets``' code), by the
   worker processes while the model pre-trains; the variants then train and evaluate in ``workers`` processes.
3. **Evaluation** with :func:`coat.evaluation.run_eval` on the test split: per-category accuracy of the greedy
   answers, and of the likelihood picks beside it (the most likely option per byte, no generation);
   ``<output>/demo.md`` (mean +- std over seeds), ``demo.png``, ``demo.json`` (with wall and CPU seconds per
   stage), the first seed's CoAT ``adapter/``.

Status (3 seeds, test split, overall accuracy, generated / likelihood): LoRA only 0.441 +- 0.011 / 0.489 +- 0.019,
pause 0.418 +- 0.009 / 0.469 +- 0.004, CoAT 0.437 +- 0.019 / 0.488 +- 0.015: CoAT does not beat LoRA only, and the
check (above both baselines by more than the seed spread) is not met for either scoring. ``demo.md`` says whether
the check is met, as measured. The README lists the designs tried (on the validation split) and the times.

Determinism: every random draw is seeded (model init, pre-training order, variant seeds) and every job seeds what
it draws, so the same command gives the same table on the same machine, for any number of workers.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import multiprocessing
import os
import re
import resource
import shutil
import tempfile
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coat.config import CoATConfig
from coat.data.config import DataConfig
from coat.data.sources import SourceConfig
from coat.data.synth import GENERATOR_VERSION, SynthConfig
from coat.demo_report import VARIANTS, demo_markdown, per_category_text, plot, summarize
from coat.experts.base import ExpertConfig
from coat.files import atomic_dir, config_digest, write_atomic
from coat.heads import HeadConfig
from coat.training import LoraSettings

CAPTION_PROMPT = "Describe the audio."


# quick=true (--quick): the same recipe on a few dozen clips and one seed, about 30 s on 2 CPU cores (a smoke run)
QUICK: dict[str, Any] = {
    "output_dir": "runs/demo_quick",
    "seeds": 1,
    "pretrain": {"examples": 96, "steps": 30},
    "data": {"synth": {"train_size": 48, "validation_size": 24, "test_size": 48}},
    "training": {"steps": 8},
}


# ------------------------------------------------------------------------------------------------- configs
@dataclass
class SmallModelConfig:
    """Sizes of the small Qwen2-Audio the demo pre-trains (``coat.zoo``'s ``tiny`` is hidden 32, audio 16)."""

    hidden_size: int = field(default=96, metadata={"help": "language model width"})
    intermediate_size: int = field(default=192, metadata={"help": "language model MLP width"})
    layers: int = field(default=3, metadata={"help": "language model decoder layers"})
    attention_heads: int = field(default=4, metadata={"help": "language model attention heads"})
    kv_heads: int = field(default=2, metadata={"help": "language model key/value heads (grouped-query attention)"})
    audio_d_model: int = field(default=64, metadata={"help": "audio encoder width"})
    audio_layers: int = field(default=2, metadata={"help": "audio encoder layers"})
    audio_heads: int = field(default=4, metadata={"help": "audio encoder attention heads"})
    audio_ffn: int = field(default=128, metadata={"help": "audio encoder MLP width"})
    chunk_seconds: int = field(default=2, metadata={"help": "audio window of the feature extractor (>= clips)"})
    seed: int = field(default=0, metadata={"help": "seed of the random initial weights"})

    def __post_init__(self):
        if self.hidden_size % self.attention_heads or self.attention_heads % self.kv_heads:
            raise ValueError("hidden_size must divide by attention_heads, attention_heads by kv_heads")
        if self.audio_d_model % self.audio_heads:
            raise ValueError("audio_d_model must divide by audio_heads")


@dataclass
class PretrainConfig:
    """Captioning pre-training from scratch (audio -> caption), full fine-tuning of the whole model."""

    examples: int = field(default=1600, metadata={"help": "captioned clips (their own synth seed)"})
    data_seed: int = field(default=1000, metadata={"help": "synth seed of the pre-training clips (not the QA's)"})
    steps: int = field(default=1200, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=16, metadata={"help": "examples per step"})
    learning_rate: float = field(default=2e-3, metadata={"help": "peak learning rate (AdamW, cosine schedule)"})
    warmup_steps: int = field(default=20, metadata={"help": "linear warm-up steps"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    detailed_fraction: float = field(default=0.0, metadata={
        "help": "share of the clips captioned in detail (synth's captions: note names, pitch direction, loudness "
                "change, count); the others get event_caption's (the kind of sound, its timbre, the vowel)"})
    text_captions: bool = field(default=True, metadata={
        "help": "the clips not captioned in detail also give their detailed caption as a text-only example (no "
                "audio): the language model learns the words, as a real LALM's does from text, while the audio "
                "encoder is not taught the detail"})

    def __post_init__(self):
        self.detailed_fraction = float(self.detailed_fraction)  # `=1` on the command line keys the cache as 1.0 does
        if not 0.0 <= self.detailed_fraction <= 1.0:
            raise ValueError(f"pretrain.detailed_fraction must be in [0, 1], got {self.detailed_fraction}")


@dataclass
class VariantTraining:
    """The budget every variant gets (same steps, learning rate and data)."""

    steps: int = field(default=400, metadata={"help": "optimizer steps of each variant"})
    learning_rate: float = field(default=5e-3, metadata={"help": "learning rate of each variant"})
    batch_size: int = field(default=16, metadata={"help": "examples per step"})
    heads_warmup_steps: int = field(
        default=0, metadata={"help": "CoAT only: steps training thinking + heads before the joint stage "
                                     "(the baselines get the same number of extra LoRA steps)"})


@dataclass
class DemoConfig:
    """``coat demo``'s settings (configs/demo.yaml). ``quick`` applies the overrides ``quick_overrides`` holds."""

    output_dir: str = field(default="runs/demo", metadata={"help": "demo.md, demo.png, demo.json, adapter/"})
    cache_dir: str = field(default="runs/demo_cache",
                           metadata={"help": "pre-trained model, synthetic data and expert targets (reused)"})
    seeds: int = field(default=3, metadata={"help": "variant seeds seed, seed+1, ...; mean +- std when > 1"})
    seed: int = field(default=0, metadata={"help": "first variant seed (training order, thinking and head init)"})
    model: SmallModelConfig = field(default_factory=SmallModelConfig,
                                    metadata={"help": "the small Qwen2-Audio pre-trained from scratch"})
    pretrain: PretrainConfig = field(default_factory=PretrainConfig, metadata={"help": "its caption pre-training"})
    data: DataConfig = field(
        default_factory=lambda: DataConfig(synth=SynthConfig(categories=("tones", "speech"), train_size=600,
                                                             validation_size=360, test_size=600)),
        metadata={"help": "the synthetic acoustic QA benchmark (data.synth; the demo needs no source)"})
    eval_split: str = field(default="test", metadata={"help": "test, or validation for design choices"})
    num_thinking: int = field(default=8, metadata={"help": "K thinking positions of the two thinking variants"})
    thinking_layer: int = field(default=0, metadata={"help": "decoder layer whose thinking states the heads read"})
    heads: HeadConfig = field(
        default_factory=lambda: HeadConfig(num_frames=16, d_model=64, layers=1, heads=4, dropout=0.0),
        metadata={"help": "CoAT's expert heads"})
    experts: list[ExpertConfig] = field(default_factory=lambda: [
        ExpertConfig("pitch", {"model": "tiny", "hop_length": 800}, 0.3), ExpertConfig("formants", {}, 0.3),
        ExpertConfig("speech_activity", {}, 0.3)],
        metadata={"help": "CoAT's experts (on every clip; chosen on the validation split: README)"})
    lora: LoraSettings = field(default_factory=lambda: LoraSettings(
        r=8, alpha=16, dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        audio_target_modules=["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]),
        metadata={"help": "LoRA of every variant"})
    training: VariantTraining = field(default_factory=VariantTraining,
                                      metadata={"help": "the budget every variant gets"})
    eval_batch_size: int = field(default=50, metadata={"help": "prompts per generate() call in evaluation"})
    max_new_tokens: int = field(default=8, metadata={"help": "answer tokens generated per question (greedy)"})
    threads: int = field(default=1, metadata={"help": "torch CPU threads per process (fixed, for reproducible sums)"})
    workers: int = field(default=2, metadata={
        "help": "processes that train and evaluate the variants side by side (one per CPU core; each job seeds "
                "everything, so the table is the same for any number); 1: one after another in this process"})
    quick: bool = field(default=False, metadata={
        "help": "a smoke run of about 30 s: quick_overrides apply (under the command line's keys); its scores mean "
                "nothing and its report says so"})
    quick_overrides: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(QUICK),
                                            metadata={"help": "the overrides quick applies (a nested mapping)"})

    def __post_init__(self):
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if self.eval_split not in ("validation", "test"):
            raise ValueError(f"eval_split must be validation or test, got {self.eval_split!r}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.num_thinking < 1:
            raise ValueError("num_thinking must be >= 1 (the thinking variants need a block)")
        if self.data.synth is None or self.data.source is not None:
            raise ValueError("the demo runs on the synthetic benchmark: data.synth, and no data.source")
        if self.data.synth.split_size(self.eval_split) < 1 or self.data.synth.train_size < 1:
            raise ValueError(f"data.synth needs train examples and {self.eval_split} examples")


def load_demo_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> DemoConfig:
    """DemoConfig from its defaults, the YAML at ``path`` (keys it sets), then, with ``quick``, its
    ``quick_overrides``, then the ``key=value`` overrides (which win over both)."""
    from coat.config_io import from_dict, merge, parse_overrides, read_yaml

    data = read_yaml(path) if path is not None else {}
    cli = parse_overrides(overrides or [])
    config = from_dict(DemoConfig, merge(data, cli))
    if not config.quick:
        return config
    return from_dict(DemoConfig, merge(merge(data, config.quick_overrides), cli))


# ------------------------------------------------------------------------------------------------- small model
def demo_words() -> list[str]:
    """The small model's vocabulary: the tone and spoken categories' words and the caption prompt's."""
    from coat.data.speech_categories import speech_words
    from coat.data.synth import synth_words

    return list(dict.fromkeys([*synth_words(), *speech_words(), *CAPTION_PROMPT.split()]))


def build_small_model(processor, config: SmallModelConfig):
    """A random Qwen2-Audio of ``config``'s sizes (:func:`coat.zoo.model_for_processor`) whose vocabulary, special ids
    and audio window match ``processor``; its answers end at ``<|im_end|>`` (the chat template's turn end)."""
    from coat import zoo

    text = dict(hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
                num_hidden_layers=config.layers, num_attention_heads=config.attention_heads,
                num_key_value_heads=config.kv_heads, max_position_embeddings=512)
    audio = dict(d_model=config.audio_d_model, encoder_layers=config.audio_layers,
                 encoder_attention_heads=config.audio_heads, encoder_ffn_dim=config.audio_ffn)
    return zoo.model_for_processor(processor, seed=config.seed, text=text, audio=audio, answer_end="<|im_end|>")


def _caption(text: str, vocab) -> str:
    """The caption in the tokenizer's words: numbers such as ``(262 Hz)`` are not words of the benchmark."""
    return " ".join(w for w in text.split() if w in vocab)


def event_caption(example: dict) -> str:
    """What a generic audio captioner (AudioCaps-style) says about a synth clip: the kind of sound, its timbre and
    the vowel sung or the words spoken (speech content), but not the acoustic detail the QA asks about (which note,
    pitch direction, loudness change, how many beeps; for speech: high or low voice, fast or slow, which voice,
    rising or falling, how many words)."""
    category = example["category"]
    if category.startswith("speech_"):
        if category == "speech_word":
            return example["caption"]  # the word said, as the vowel sung
        if category == "speech_voice":
            return "two voices speaking"
        return "a voice speaking"
    if category == "note":
        return f"a {example['timbre']} {example['envelope']} tone"
    if category == "contour":
        return f"a {example['timbre']} tone"
    if category == "loudness":
        return f"a {example['source']}"
    if category == "vowel":
        return example["caption"].split(" sung")[0]
    if category == "count" or example.get("sound_type") == "beeps":
        return "short beeps"
    if category == "sound_type":
        return re.split(r" at | sweeping ", example["caption"])[0]
    return example["caption"]


def caption_examples(processor, config: DemoConfig) -> list[dict]:
    """The pre-training examples: each clip of its own seed with its caption (a detailed one for
    ``pretrain.detailed_fraction`` of them, :func:`event_caption`'s for the rest), and with ``text_captions`` the
    detailed caption of each of the rest as a text-only example (``audio`` None)."""
    from coat.data.synth import generate_split

    p = config.pretrain
    synth = SynthConfig(**{**asdict(config.data.synth), "seed": p.data_seed, "train_size": p.examples,
                           "validation_size": 0, "test_size": 0})
    vocab = processor.tokenizer.get_vocab()
    detailed = np.random.default_rng(p.data_seed).random(p.examples) < p.detailed_fraction
    examples = []
    for i, ex in enumerate(generate_split(synth, "train")):
        examples.append({"audio": ex["audio"], "prompt": CAPTION_PROMPT,
                         "answer": _caption(ex["caption"] if detailed[i] else event_caption(ex), vocab)})
        if p.text_captions and not detailed[i]:
            examples.append({"audio": None, "prompt": CAPTION_PROMPT, "answer": _caption(ex["caption"], vocab)})
    return examples


def drawn_in_order(examples: list[dict], batch_size: int, steps: int, seed: int) -> list[dict]:
    """``steps`` batches of ``examples``, one after the other: epochs of a seeded shuffle, a batch taking what is
    left of one epoch and the start of the next."""
    g = torch.Generator().manual_seed(seed)
    order: list[int] = []
    drawn = []
    for _ in range(steps):
        if len(order) < batch_size:
            order += torch.randperm(len(examples), generator=g).tolist()
        drawn += [examples[i] for i in order[:batch_size]]
        order = order[batch_size:]
    return drawn


def pretrain_captioning(model, processor, config: DemoConfig, log=print) -> list[float]:
    """Full fine-tuning on audio -> caption (every weight trains), on the CPU, with the training recipe's
    :class:`~coat.training.CoATTrainer`: AdamW and a cosine schedule with warm-up, the batches drawn in order, and
    text-only examples collated apart from those with audio (:class:`~coat.data.collate.PartsCollator`). Returns
    the loss curve (per step)."""
    from transformers import TrainingArguments, get_cosine_schedule_with_warmup

    from coat.data.collate import CoATCollator, PartsCollator
    from coat.training import stage_trainer

    p = config.pretrain
    drawn = drawn_in_order(caption_examples(processor, config), p.batch_size, p.steps, p.data_seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=p.learning_rate, weight_decay=p.weight_decay)
    schedule = get_cosine_schedule_with_warmup(optimizer, p.warmup_steps, p.steps)
    with tempfile.TemporaryDirectory() as scratch:  # the Trainer's output folder: nothing is saved there
        args = TrainingArguments(output_dir=scratch, per_device_train_batch_size=p.batch_size, max_steps=p.steps,
                                 train_sampling_strategy="sequential", max_grad_norm=1.0, logging_steps=50,
                                 save_strategy="no", report_to=[], remove_unused_columns=False, disable_tqdm=True,
                                 use_cpu=True, seed=p.data_seed)
        trainer = stage_trainer(model, args, drawn, PartsCollator(CoATCollator(processor)), "pretrain",
                                progress=False, optimizers=(optimizer, schedule))
        trainer.train()
    model.eval()
    return trainer.losses


def pretrained_model(config: DemoConfig, log=print) -> Path:
    """The folder of the pre-trained small model and its processor; built once per settings, then reused."""
    from coat import zoo

    key = config_digest(config.model, config.pretrain, config.data.synth.categories, GENERATOR_VERSION)
    folder = Path(config.cache_dir) / f"model-{key}"
    if (folder / "config.json").is_file():
        log(f"pre-trained model: reusing {folder}")
        return folder
    start = time.time()
    processor = zoo.build_qwen2_audio_processor(demo_words(), chunk_seconds=config.model.chunk_seconds)
    model = build_small_model(processor, config.model)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"pre-training a {n_params / 1e6:.2f}M-parameter Qwen2-Audio on captions ({config.pretrain.steps} steps)")
    losses = pretrain_captioning(model, processor, config, log)
    with atomic_dir(folder) as tmp:
        processor.save_pretrained(tmp)
        model.save_pretrained(tmp)
        (tmp / "pretrain.json").write_text(json.dumps({"losses": losses, "seconds": time.time() - start,
                                                       "parameters": n_params}, indent=1))
    log(f"pre-trained in {time.time() - start:.0f} s (caption loss {losses[0]:.2f} -> {losses[-1]:.2f}): {folder}")
    return folder


# ------------------------------------------------------------------------------------------------- variants
def train_config(config: DemoConfig, variant: str, model_dir: Path, seed: int, output_dir: Path):
    """The :class:`~coat.training.TrainConfig` of one variant: same data, steps, learning rate and seed."""
    from coat.experts.config import TargetsConfig
    from coat.loading import ModelConfig
    from coat.training import StageConfig, TrainConfig, TrainingSettings

    t = config.training
    k = 0 if variant == "no_thinking" else config.num_thinking
    parts = {"no_thinking": ["lora"], "thinking": ["thinking", "lora"], "coat": ["thinking", "heads", "lora"]}[variant]
    stages = []
    if t.heads_warmup_steps > 0:
        first = {"no_thinking": ["lora"], "thinking": ["thinking", "lora"], "coat": ["thinking", "heads"]}[variant]
        stages.append(StageConfig("warmup", first, max_steps=t.heads_warmup_steps, learning_rate=t.learning_rate))
    stages.append(StageConfig("joint", parts, max_steps=t.steps, learning_rate=t.learning_rate))
    # only the train split matters here: evaluation sizes must not change the data hash (and its targets)
    data = dataclasses.replace(config.data, synth=SynthConfig(**{**asdict(config.data.synth), "validation_size": 0,
                                                                 "test_size": 0}), synth_split="train")
    return TrainConfig(
        model=ModelConfig(name_or_path=str(model_dir), dtype="float32"),
        coat=CoATConfig(num_thinking=k, thinking_layer=config.thinking_layer),
        heads=config.heads,
        experts=copy.deepcopy(config.experts) if variant == "coat" else [],
        targets=TargetsConfig(cache_dir=str(Path(config.cache_dir) / "targets"), compute=True),
        data=data,
        lora=config.lora,
        stages=stages,
        training=TrainingSettings(output_dir=str(output_dir), seed=seed, per_device_batch_size=t.batch_size,
                                  logging_steps=max(1, t.steps // 10), save_steps=10**9, save_total_limit=1,
                                  progress=False),
    )


def expert_targets(config: DemoConfig, expert: ExpertConfig) -> dict:
    """Compute (or find) one expert's targets for the train split before any variant trains (a worker's job, run
    while the model pre-trains: targets need the audio, not the model). Returns its wall and CPU seconds.

    Done up front, not inside the CoAT variant's ``run_training``: extraction draws from the global RNG (data
    loader seeds), so a run that extracts would initialise its thinking table and heads differently from a
    run that finds the cache, and two runs of the same command would differ.
    """
    from coat.experts.config import load_experts, target_caches
    from coat.training import training_source

    with _demo_settings(config.threads):
        t0, c0 = time.time(), time.process_time()
        coat_config = train_config(config, "coat", Path(config.cache_dir), config.seed, Path(config.output_dir))
        target_caches(coat_config.targets, training_source(coat_config), load_experts(coat_config.targets, [expert]),
                      coat_config.heads)
        return {"seconds": time.time() - t0, "cpu": time.process_time() - c0}


def evaluate(config: DemoConfig, model_dir: Path, adapters: dict[str, Path], output_dir: Path) -> dict:
    """Multiple-choice accuracy (overall and per category) of each adapter on ``config.eval_split``: of the generated
    answers and of the likelihood picks."""
    from coat.evaluation import AdapterEntry, EvalConfig, TaskConfig, run_eval
    from coat.loading import ModelConfig

    split = config.eval_split
    data_dir = Path(config.cache_dir) / "targets" / f"eval-{config.data.synth.digest()}" / split
    data = dataclasses.replace(config.data, source=SourceConfig(path=str(data_dir / "manifest.jsonl")),
                               synth=copy.deepcopy(config.data.synth), synth_split=split)
    task = TaskConfig(name="synth", type="multiple_choice", data=data, scoring=["parse", "likelihood"])
    eval_config = EvalConfig(model=ModelConfig(name_or_path=str(model_dir), dtype="float32"),
                             adapters=[AdapterEntry(str(path), name) for name, path in adapters.items()],
                             evaluate_base=False, tasks=[task], output_dir=str(output_dir),
                             batch_size=config.eval_batch_size, max_new_tokens=config.max_new_tokens, progress=False)
    results = run_eval(eval_config)
    if results["failed"]:
        raise RuntimeError(f"evaluating the demo's adapters failed: {results['failed']}")
    return {name: results["models"][name]["synth"]["metrics"] for name in adapters}


@contextlib.contextmanager
def _demo_settings(threads: int):
    """Fixed CPU threads (reproducible sums) and quiet transformers logging (the demo logs its own lines, no
    weight-loading bars) while the demo runs; the caller's settings come back afterwards."""
    from transformers.utils import logging as hf_logging

    before = torch.get_num_threads(), hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    torch.set_num_threads(threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        hf_logging.set_verbosity(before[1])
        if before[2]:
            hf_logging.enable_progress_bar()


def run_demo(config: DemoConfig, log=print) -> dict:
    """Pre-train (or reuse) the small model, train and evaluate the three variants for each seed, write the
    report (a ``quick`` config's report says it is a smoke run). Returns ``demo.json``'s content."""
    with _demo_settings(config.threads):
        return _run_demo(config, log)


def _train_variant(config: DemoConfig, variant: str, model_dir: Path, seed: int, output_dir: Path) -> dict:
    """One variant's training (a worker's job): its adapter folder, wall and CPU seconds."""
    from coat.training import run_training

    with _demo_settings(config.threads):
        t0, c0 = time.time(), time.process_time()
        result = run_training(train_config(config, variant, model_dir, seed, output_dir))
        return {"adapter": str(result.adapter), "seconds": time.time() - t0, "cpu": time.process_time() - c0}


def _evaluate_seed(config: DemoConfig, model_dir: Path, adapters: dict[str, Path], output_dir: Path) -> dict:
    """One seed's evaluation of its three adapters (a worker's job): the metrics, wall and CPU seconds."""
    with _demo_settings(config.threads):
        t0, c0 = time.time(), time.process_time()
        metrics = evaluate(config, model_dir, adapters, output_dir)
        return {"metrics": metrics, "seconds": time.time() - t0, "cpu": time.process_time() - c0}


class _HerePool:
    """``workers=1``: each job runs in this process when submitted (its error raises there)."""

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        future.set_result(fn(*args))
        return future


@contextlib.contextmanager
def _pool(workers: int):
    """Where the variants train and evaluate: ``workers`` spawned processes (each job seeds everything it draws,
    so the table does not depend on which process runs it or when), or this process for 1."""
    if workers == 1:
        yield _HerePool()
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield pool
    finally:  # after a job's error, the queued jobs are dropped (the running ones finish), not run for minutes
        pool.shutdown(wait=True, cancel_futures=True)


def _train_and_evaluate(config: DemoConfig, model_dir: Path, out: Path, pool, log) -> list[dict]:
    """Every seed's three variants, then each seed's evaluation as soon as its variants are trained."""
    seeds = [config.seed + offset for offset in range(config.seeds)]
    for seed in seeds:
        shutil.rmtree(out / f"seed-{seed}", ignore_errors=True)  # run_training resumes finished stages: start clean
    runs = []
    trained = {(seed, variant): pool.submit(_train_variant, config, variant, model_dir, seed,
                                            out / f"seed-{seed}" / variant)
               for seed in seeds for variant in VARIANTS}
    evaluations = {}
    for seed in seeds:
        jobs = {variant: trained[seed, variant].result() for variant in VARIANTS}
        for variant, job in jobs.items():
            log(f"seed {seed}: trained {variant} in {job['seconds']:.0f} s (CPU {job['cpu']:.0f} s)")
        adapters = {variant: Path(job["adapter"]) for variant, job in jobs.items()}
        evaluations[seed] = pool.submit(_evaluate_seed, config, model_dir, adapters, out / f"seed-{seed}" / "eval")
        runs.append({"seed": seed, "seconds": {v: j["seconds"] for v, j in jobs.items()},
                     "cpu_seconds": {v: j["cpu"] for v, j in jobs.items()}})
    for run in runs:
        done = evaluations[run["seed"]].result()
        run["metrics"] = done["metrics"]
        run["seconds"]["eval"], run["cpu_seconds"]["eval"] = done["seconds"], done["cpu"]
        log(per_category_text(done["metrics"], config.data.synth.categories, f"seed {run['seed']}"))
    return runs


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its finished child processes (the workers)."""
    here, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return here.ru_utime + here.ru_stime + children.ru_utime + children.ru_stime


def _run_demo(config: DemoConfig, log) -> dict:
    from coat.training import training_source

    start, cpu_start = time.time(), _cpu_seconds()
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    # wall seconds, and CPU seconds (user + system, all threads; the workers' own added): on a shared machine the
    # wall time says how busy it was, the CPU time what the demo costs
    timings, cpu = {}, {}
    training_source(train_config(config, "coat", Path(config.cache_dir), config.seed, out))  # the train split, once
    with _pool(config.workers) as pool:
        targets = {e.name: pool.submit(expert_targets, config, e) for e in config.experts}  # while pre-training
        t0, c0 = time.time(), _cpu_seconds()
        model_dir = pretrained_model(config, log)
        timings["pretrain_and_load"], cpu["pretrain_and_load"] = time.time() - t0, _cpu_seconds() - c0
        done = {name: job.result() for name, job in targets.items()}
        if done:
            log(f"expert targets ({', '.join(done)}) ready ({time.time() - start:.0f} s since the start)")
        timings["targets"] = {name: job["seconds"] for name, job in done.items()}
        cpu["targets"] = sum(job["cpu"] for job in done.values())
        t0 = time.time()
        runs = _train_and_evaluate(config, model_dir, out, pool, log)
        timings["variants_and_eval"] = time.time() - t0
    cpu["variants"] = sum(run["cpu_seconds"][v] for run in runs for v in VARIANTS)
    cpu["eval"] = sum(run["cpu_seconds"]["eval"] for run in runs)
    shutil.rmtree(out / "adapter", ignore_errors=True)
    shutil.copytree(out / f"seed-{config.seed}" / "coat" / "adapter", out / "adapter")
    timings["total"] = time.time() - start
    cpu["total"] = _cpu_seconds() - cpu_start  # with the workers' start-up (imports), which no job counts
    report = summarize(runs, config.data.synth.categories)
    report.update(config=asdict(config), model_dir=str(model_dir), runs=runs, timings=timings, cpu_seconds=cpu,
                  split=config.eval_split, quick=config.quick)
    write_atomic(out / "demo.json", json.dumps(report, indent=2, default=str) + "\n")
    write_atomic(out / "demo.md", demo_markdown(report))
    plot(report, out / "demo.png")
    return report
