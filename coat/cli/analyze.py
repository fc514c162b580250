"""``coat analyze <config.yaml> [key=value ...]``: attention shares and linear probes of CoAT adapters vs the base.

What is compared, and the outputs (``analysis.json``, ``attention_share.png``, ``probes.png``), are described in
:mod:`coat.analysis`; ``configs/analyze_tiny.yaml`` is a complete example that runs offline.
"""

from __future__ import annotations

from coat.config_io import load_config


def main(argv: list[str]) -> int:
    from coat.analysis import AnalyzeConfig, run_analysis

    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    path, overrides = (argv[0], argv[1:]) if argv and "=" not in argv[0] else (None, argv)
    config = load_config(AnalyzeConfig, path, overrides)
    results = run_analysis(config)
    print(f"coat analyze: {results['n_examples']} examples, {results['n_answer_tokens']} answer tokens -> "
          f"{config.output_dir}/analysis.json, attention_share.png, probes.png")
    return 0
