"""What each command does once its config is loaded: run its recipe, then say what it made. The table in
coat/cli/__init__.py maps a command to its config class and one of these; each returns the exit status, and its
docstring is the command's ``--help``: the summary, notes, and ``Examples:``."""

from __future__ import annotations

import os
import sys

from coat.smoke import tiny_model_note


def train(config) -> int:
    """Distillation training: a base LALM gets K thinking positions after every audio span, expert heads read them
    and learn the expert targets, LoRA adapts the language model; a schedule of stages, each a transformers Trainer
    run. Running the same command again resumes an interrupted run; a run whose stages are all finished trains
    nothing and says so.

    Examples:
        coat train configs/tiny.yaml                      # offline: a tiny random model, about a minute
        coat train configs/tiny.yaml training.output_dir=runs/tiny2 coat.num_thinking=4
        coat train configs/qwen2_audio.yaml data.source.path=/data/train.jsonl   # a GPU and the hub
        accelerate launch -m coat train configs/qwen2_audio.yaml data.source.path=/data/train.jsonl
    """
    from coat.training import TrainingDataError, run_training

    try:
        result = run_training(config)
    except (FloatingPointError, TrainingDataError) as err:  # a NaN loss, NaN weights, no usable examples
        print(f"coat train: {err}", file=sys.stderr)
        return 1
    if int(os.environ.get("RANK", "0")) == 0:  # once, not once per process
        if config.model.create_tiny:
            print(tiny_model_note("coat train"))
        if result.trained_stages:
            print(f"trained {', '.join(result.trained_stages)}; adapter saved to {result.adapter}")
        else:
            print(f"nothing to train: every stage of {result.output_dir} finished in an earlier run; the adapter is "
                  f"{result.adapter} (another training.output_dir starts a new run)")
    return 0


def targets(config) -> int:
    """Computes the expert targets (pitch, emotion, sound events, phonetics, log-mel, ...) of every example of the
    data once, batched by length, into a fingerprinted Arrow cache per expert under targets.cache_dir, which
    training reads (the data, experts and targets sections are coat train's). Bad audio is reported per example in
    report.jsonl and left out; an interrupted run resumes where it stopped.

    Several processes: accelerate launch --multi_gpu --num_processes N -m coat targets <config> (one shard per
    process; add --num_machines/--machine_rank/--main_process_ip for several nodes, with targets.cache_dir on a
    shared disk). Without CUDA the same command starts N CPU processes in a gloo group (accelerate's --cpu
    --num_processes N starts only one unless it is given an MPI hostfile).

    Examples:
        coat targets configs/targets_example.yaml             # 48 synthetic clips, written on first use
        coat targets configs/targets_example.yaml data.source.path=runs/targets_example/data
        accelerate launch --multi_gpu --num_processes 2 -m coat targets configs/targets_example.yaml
    """
    from coat.extraction import run_extraction

    run_extraction(config)
    return 0


def evaluate(config) -> int:
    """Evaluate a base LALM and CoAT adapters side by side on a suite of tasks: multiple-choice audio QA (accuracy
    overall, per category and per breakdown field; MMAU and MMAR files read as published with benchmark: mmau|mmar,
    and written back with the official output key on every item), classification by prompt (accuracy, macro-F1) and
    transcription (WER). Scoring: MMAU's string_match (mmau), coat's parser (parse) and the most likely option per
    byte from one prefill (likelihood). Items that cannot be answered are listed and counted wrong. Writes
    results.json (every prediction) and results.md to output_dir; a model that fails is reported by name, the others
    are kept, and the command exits 1.

    Examples:
        coat eval configs/eval_tiny.yaml                    # offline: a tiny random model (scores ~0)
        coat eval configs/eval_tiny.yaml adapters=[runs/tiny/train/adapter]   # after coat train
    """
    from coat.evaluation import results_markdown, run_eval, summary_lines

    results = run_eval(config)
    print(results_markdown(results), end="")
    for line in summary_lines(results):
        print(line)
    if config.model.create_tiny:
        print(tiny_model_note("coat eval"))
    print(f"results: {config.output_dir}/results.json, {config.output_dir}/results.md")
    for column, failure in results["failed"].items():
        print(f"coat eval: {column} ({failure['path'] or 'base model'}) failed: {failure['error']}", file=sys.stderr)
    return 1 if results["failed"] else 0


def ablate(config) -> int:
    """Which experts matter? Train and evaluate a grid of expert sets with the same seed, data and budget:
    no_thinking (plain LoRA, K = 0), pause (thinking block, no experts), each expert alone, all but one, and all.
    Each run gets a folder under output_dir and is finished when its done.json exists: running the command again
    skips finished runs and resumes an unfinished one. Writes ablation.md, ablation.csv and ablation.png.

    Examples:
        coat ablate configs/ablate_tiny.yaml                   # offline: 5 runs of a tiny random model
        coat ablate configs/ablate_tiny.yaml "runs=[pause, all]" output_dir=runs/ablate_small
    """
    from coat.ablation import run_ablation

    summary = run_ablation(config)
    print(summary["markdown"], end="")  # with the smoke-run note when the model is a tiny random one
    print(f"results: {summary['md']}, {summary['csv']}, {summary['png']} ({summary['metric']})")
    return 0


def analyze(config) -> int:
    """Measures, per decoder layer, the share of attention that answer tokens give to the thinking positions and to
    the audio (base model and each CoAT adapter), and trains linear probes on the thinking states for expert
    attributes (pitch class, emotion, sound event, phoneme, or any metadata column) against the same probes on the
    base model's last audio position. Writes analysis.json, attention_share.png and probes.png to output_dir.

    Examples:
        coat analyze configs/analyze_tiny.yaml       # offline, seconds: a tiny random model
    """
    from coat.analysis import run_analysis

    results = run_analysis(config)
    if config.model.create_tiny:
        print(tiny_model_note("coat analyze"))
    print(f"coat analyze: {results['n_examples']} examples, {results['n_answer_tokens']} answer tokens -> "
          f"{config.output_dir}/analysis.json, attention_share.png, probes.png")
    return 0


def demo(config) -> int:
    """The whole idea end to end, offline on a CPU: pre-trains (once, cached in cache_dir) a small Qwen2-Audio on
    the synthetic benchmark's captions (tones and speech), then trains and evaluates no thinking (LoRA only), a
    thinking block without experts, and CoAT with the same seed and budget, for 3 seeds, in two worker processes.
    Writes demo.md, demo.png, demo.json and the CoAT adapter/ to output_dir. About 7 minutes on 2 idle CPU cores
    from an empty cache.

    Examples:
        coat demo                                  # 3 seeds: the README's table, about 7 minutes on 2 CPU cores
        coat demo --quick                          # smoke run, one seed, about 30 s (quick=true)
        coat demo configs/demo.yaml --seeds 1      # one seed
        coat demo --quick training.steps=4 --output runs/demo_try
    """
    from coat.demo import run_demo
    from coat.demo_report import demo_markdown

    report = run_demo(config)
    print(demo_markdown(report), end="")  # what run_demo wrote to demo.md
    print(f"wrote {config.output_dir}/demo.md, demo.png, demo.json and adapter/ ({report['timings']['total']:.0f} s)")
    return 0
