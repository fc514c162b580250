"""``coat demo [config.yaml] [--quick] [--seeds N] [--output DIR] [key=value ...]``: the offline CoAT demo.

Pre-trains (once, cached) a small Qwen2-Audio on the synthetic benchmark's captions, then trains and evaluates
no thinking / thinking without experts / CoAT with the same budget. See :mod:`coat.demo`.
"""

from __future__ import annotations

import argparse

from coat.config_io import ConfigError

USAGE = "coat demo [config.yaml] [--quick] [--seeds N] [--output DIR] [key=value ...]"


def main(argv: list[str]) -> int:
    from coat.demo import load_demo_config, run_demo

    description = " ".join(__doc__.split("\n\n")[1].split())
    parser = argparse.ArgumentParser(prog="coat demo", usage=USAGE, description=description)
    parser.add_argument("config", nargs="?", help="YAML config (default: the DemoConfig defaults)")
    parser.add_argument("--quick", action="store_true", help="the config's `quick` overrides: about a minute")
    parser.add_argument("--seeds", type=int, help="number of seeds (mean +- std over them)")
    parser.add_argument("--output", help="output folder (output_dir)")
    args, rest = parser.parse_known_args(argv)
    if args.config and "=" in args.config:
        args.config, rest = None, [args.config, *rest]
    bad = [item for item in rest if "=" not in item]
    if bad:
        raise ConfigError(f"unexpected argument(s) {bad}; usage: {USAGE}")
    config = load_demo_config(args.config, rest, quick=args.quick, seeds=args.seeds, output=args.output)
    report = run_demo(config)
    print(open(f"{config.output_dir}/demo.md").read(), end="")
    print(f"wrote {config.output_dir}/demo.md, demo.png, demo.json and adapter/ "
          f"({report['timings']['total']:.0f} s)")
    return 0
