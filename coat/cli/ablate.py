"""coat ablate <config.yaml> [key=value ...]: train and evaluate a grid of expert sets (coat/ablation.py)."""

from __future__ import annotations

from coat.config_help import command_help
from coat.config_io import ConfigError

USAGE = "coat ablate <config.yaml> [key=value ...]"
SUMMARY = ("Which experts matter? Train and evaluate a grid of expert sets with the same seed, data and budget: "
           "no_thinking (plain LoRA, K = 0), pause (thinking block, no experts), each expert alone, all but one, "
           "and all. Each run gets a folder under output_dir and is finished when its done.json exists: running "
           "the command again skips finished runs and resumes an unfinished one. Writes ablation.md, ablation.csv "
           "and ablation.png.")
EXAMPLES = [
    "coat ablate configs/ablate_tiny.yaml                   # offline: 5 runs of a tiny random model (scores ~0)",
    'coat ablate configs/ablate_tiny.yaml "runs=[no_thinking, pause, all]" output_dir=runs/ablate_small',
]


def help_text(argv=()) -> str:
    from coat.ablation import AblationConfig

    return command_help("coat ablate", SUMMARY, AblationConfig, usage=USAGE, examples=EXAMPLES)


def main(argv: list[str]) -> int:
    from coat.ablation import load_ablation_config, run_ablation

    if not argv or argv[0].startswith("-") or "=" in argv[0]:
        raise ConfigError(f"usage: {USAGE}  (e.g. configs/ablate_tiny.yaml; coat ablate --help lists the keys)")
    config = load_ablation_config(argv[0], argv[1:])
    summary = run_ablation(config)
    print(summary["markdown"], end="")  # with the smoke-run note when the model is a tiny random one
    print(f"results: {summary['md']}, {summary['csv']}, {summary['png']} ({summary['metric']})")
    return 0
