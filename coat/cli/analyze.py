"""coat analyze <config.yaml> [key=value ...]: attention shares and linear probes of CoAT adapters vs the base."""

from __future__ import annotations

from coat.config_help import command_help
from coat.config_io import ConfigError, load_config

USAGE = "coat analyze [config.yaml] [key=value ...]"
SUMMARY = ("Measures, per decoder layer, the share of attention that answer tokens give to the thinking positions "
           "and to the audio (base model and each CoAT adapter), and trains linear probes on the thinking states "
           "for expert attributes (pitch class, emotion, sound event, phoneme, or any metadata column) against the "
           "same probes on the base model's last audio position. Writes analysis.json, attention_share.png and "
           "probes.png to output_dir.")
EXAMPLES = ["coat analyze configs/analyze_tiny.yaml       # offline, seconds: a tiny random model (the plumbing)"]


def help_text(argv=()) -> str:
    from coat.analysis import AnalyzeConfig

    return command_help("coat analyze", SUMMARY, AnalyzeConfig, usage=USAGE, examples=EXAMPLES)


def main(argv: list[str]) -> int:
    from coat.analysis import AnalyzeConfig, run_analysis
    from coat.smoke import tiny_model_note

    if argv and argv[0].startswith("-"):
        raise ConfigError(f"usage: {USAGE}  (e.g. configs/analyze_tiny.yaml; coat analyze --help lists the keys)")
    path, overrides = (argv[0], argv[1:]) if argv and "=" not in argv[0] else (None, argv)
    config = load_config(AnalyzeConfig, path, overrides)
    results = run_analysis(config)
    if config.model.create_tiny:
        print(tiny_model_note("coat analyze"))
    print(f"coat analyze: {results['n_examples']} examples, {results['n_answer_tokens']} answer tokens -> "
          f"{config.output_dir}/analysis.json, attention_share.png, probes.png")
    return 0
