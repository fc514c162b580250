"""The two figures of ``coat analyze``: attention shares per layer, and probe accuracies per task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coat.reports import figure


def plot_attention_share(results: dict[str, Any], path: str | Path) -> None:
    """Share per layer: base to audio (black), each adapter to audio (solid) and to thinking (dashed)."""
    import matplotlib.pyplot as plt

    with figure(path, (7, 4), dpi=120) as (_, ax):
        layers = np.arange(results["num_layers"])
        ax.plot(layers, results["attention_share"]["base"]["audio"], "k-o", label="base: audio")
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        adapters = [n for n in results["attention_share"] if n != "base"]
        for color, name in zip(colors * (len(adapters) // len(colors) + 1), adapters):
            share = results["attention_share"][name]
            ax.plot(layers, share["audio"], "-s", color=color, label=f"{name}: audio")
            ax.plot(layers, share["thinking"], "--^", color=color, label=f"{name}: thinking")
        ax.set(xlabel="decoder layer", ylabel="share of answer-query attention", ylim=(0, 1), xticks=layers,
               title=f"Where the answer attends ({results['n_examples']} examples)")
        ax.title.set_fontsize(10)
        ax.legend(fontsize=8)


def plot_probes(results: dict[str, Any], path: str | Path) -> None:
    """Grouped bars per probe task: base (per layer) and each adapter's thinking states; chance as a tick."""
    tasks = [t for t, r in results["probes"].items() if "skipped" not in r]
    series: list[str] = []
    for t in tasks:
        series += [f"base (layer {layer})" for layer in results["probes"][t]["base"]]
        series += [f"{name} thinking" for name in results["probes"][t]["thinking"]]
    series = list(dict.fromkeys(series))
    with figure(path, (max(5, 1.6 * len(tasks) + 2), 4), dpi=120) as (_, ax):
        width = 0.8 / max(len(series), 1)
        for j, label in enumerate(series):
            values = []
            for t in tasks:
                r = results["probes"][t]
                if label.startswith("base (layer "):
                    values.append(r["base"].get(label[len("base (layer "):-1], np.nan))
                else:
                    values.append(r["thinking"].get(label[: -len(" thinking")], {}).get("accuracy", np.nan))
            ax.bar(np.arange(len(tasks)) + (j - (len(series) - 1) / 2) * width, values, width, label=label)
        for x, t in enumerate(tasks):
            ax.hlines(results["probes"][t]["chance"], x - 0.45, x + 0.45, colors="k", linestyles=":",
                      label="chance (majority)" if x == 0 else None)
        ax.set(xticks=np.arange(len(tasks)), ylabel="held-out accuracy", ylim=(0, 1.05),
               title="Linear probes: thinking states vs base at the last audio position")
        ax.title.set_fontsize(10)
        ax.set_xticklabels(tasks)
        if tasks:
            ax.legend(fontsize=8)
