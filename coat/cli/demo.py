"""coat demo [config.yaml] [--quick] [--seeds N] [--output DIR] [key=value ...]: the offline demo (coat/demo.py)."""

from __future__ import annotations

import argparse

from coat.config_help import command_help
from coat.config_io import ConfigError

USAGE = "coat demo [config.yaml] [--quick] [--seeds N] [--output DIR] [key=value ...]"
SUMMARY = ("The whole idea end to end, offline on a CPU: pre-trains (once, cached in cache_dir) a small "
           "Qwen2-Audio on the synthetic benchmark's captions, then trains and evaluates no thinking (LoRA only), "
           "a thinking block without experts, and CoAT with the same seed and budget. Writes demo.md, demo.png, "
           "demo.json and the CoAT adapter/ to output_dir. About 8 minutes per seed on 2 CPU cores from an empty "
           "cache.")
# (flag, metavar, type, help): the parser and the help text are built from this one list
OPTIONS = [
    ("--quick", None, None, "apply the config's quick overrides: a smoke run of about 20 s (scores mean nothing)"),
    ("--seeds", "N", int, "number of seeds (mean +- std over them, error bars in demo.png)"),
    ("--output", "DIR", str, "output folder (output_dir)"),
]
EXAMPLES = [
    "coat demo                                  # one seed, about 8 minutes on 2 CPU cores",
    "coat demo --quick                          # smoke run, about 20 s",
    "coat demo configs/demo.yaml --seeds 3      # the README's table",
    "coat demo --quick training.steps=4 --output runs/demo_try",
]


def help_text(argv=()) -> str:
    from coat.demo import DemoConfig

    options = [(f"{flag} {metavar or ''}".strip(), text) for flag, metavar, _, text in OPTIONS]
    return command_help("coat demo", SUMMARY, DemoConfig, usage=USAGE, options=options, examples=EXAMPLES)


def main(argv: list[str]) -> int:
    from coat.demo import load_demo_config, run_demo

    parser = argparse.ArgumentParser(prog="coat demo", usage=USAGE, add_help=False)
    parser.add_argument("config", nargs="?")
    for flag, metavar, type_, _ in OPTIONS:
        if type_ is None:
            parser.add_argument(flag, action="store_true")
        else:
            parser.add_argument(flag, metavar=metavar, type=type_)
    args, rest = parser.parse_known_args(argv)
    if args.config and "=" in args.config:
        args.config, rest = None, [args.config, *rest]
    bad = [item for item in rest if "=" not in item]
    if bad:
        raise ConfigError(f"unexpected argument(s) {bad}; usage: {USAGE} (coat demo --help lists the keys)")
    config = load_demo_config(args.config, rest, quick=args.quick, seeds=args.seeds, output=args.output)
    report = run_demo(config, quick=args.quick)
    print(open(f"{config.output_dir}/demo.md").read(), end="")
    print(f"wrote {config.output_dir}/demo.md, demo.png, demo.json and adapter/ "
          f"({report['timings']['total']:.0f} s)")
    return 0
