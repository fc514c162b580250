"""``coat demo``'s report: mean and spread over seeds of every accuracy row (overall and per category) for both
scorings, the check (CoAT above both baselines by more than the seed spread), ``demo.md``'s tables with chance
levels, the console lines and ``demo.png``."""

from __future__ import annotations

import math
from pathlib import Path

from coat.data.synth import SynthConfig
from coat.reports import figure, markdown_table
from coat.smoke import quick_demo_note

VARIANTS = ("no_thinking", "thinking", "coat")
VARIANT_HELP = {
    "no_thinking": "no thinking block (LoRA only)",
    "thinking": "thinking block, no experts (pause-style)",
    "coat": "CoAT: thinking + expert heads",
}

def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


# two scores per question: the generated answer (parsed) and the likelihood pick (formatting cannot decide it)
SCORES = {"accuracy": "generated answer", "likelihood_accuracy": "likelihood (the most likely option per byte)"}


def _table_and_check(runs: list[dict], categories, metric: str) -> tuple[dict, dict]:
    rows = [metric, *(f"{metric}/{c}" for c in categories)]
    table = {}
    for variant in VARIANTS:
        table[variant] = {}
        for row in rows:
            mean, std = _mean_std([run["metrics"][variant].get(row, 0.0) for run in runs])
            table[variant][row] = {"mean": mean, "std": std}
    coat, others = table["coat"][metric], [table[v][metric] for v in VARIANTS if v != "coat"]
    spread = max([coat["std"], *(o["std"] for o in others)])
    best_baseline = max(o["mean"] for o in others)
    check = {"coat_mean": coat["mean"], "best_baseline_mean": best_baseline, "seed_spread": spread,
             "margin": coat["mean"] - best_baseline, "met": len(runs) > 1 and coat["mean"] - best_baseline > spread}
    return table, check


def summarize(runs: list[dict], categories) -> dict:
    """Mean and sample std over seeds of every metric row (overall and per category), for the generated answers
    (``table``, ``check``: the demo's check) and the likelihood picks (``likelihood_table``, ``likelihood_check``)."""
    table, check = _table_and_check(runs, categories, "accuracy")
    likelihood_table, likelihood_check = _table_and_check(runs, categories, "likelihood_accuracy")
    return {"seeds": [run["seed"] for run in runs], "table": table, "check": check,
            "likelihood_table": likelihood_table, "likelihood_check": likelihood_check}


def per_category_text(metrics: dict, categories, title: str) -> str:
    lines = [f"{title}: " + "  ".join(f"{v}" for v in VARIANTS)]
    for metric, what in SCORES.items():
        lines.append(f"  {what}:")
        for row in [metric, *(f"{metric}/{c}" for c in categories)]:
            name = row.split("/")[-1] if "/" in row else "overall"
            lines.append(f"  {name:<11}" + "".join(f"{metrics[v].get(row, 0.0):>13.3f}" for v in VARIANTS))
    return "\n".join(lines)


def chance_levels(data: SynthConfig) -> dict[str, float]:
    """Accuracy of a uniform guess among each category's choices, and over all (categories are equally large)."""
    from coat.data.synth import CATEGORIES

    levels = {c: 1.0 / min(data.num_choices, len(CATEGORIES[c].answers(data))) for c in data.categories}
    return {**levels, "overall": sum(levels.values()) / len(levels)}


def variant_labels(report: dict) -> dict[str, str]:
    """What each variant is, for the table and the chart; CoAT's label names its experts and their weights."""
    experts = ", ".join(f"{e['name']} {e['weight']:g}" for e in report["config"]["experts"])
    return {**VARIANT_HELP, "coat": f"{VARIANT_HELP['coat']} ({experts})"}


def _score_table(report: dict, table: dict, several: bool) -> str:
    labels = variant_labels(report)
    chance = chance_levels(SynthConfig(**report["config"]["data"]["synth"]))
    rows = []
    for row in table["coat"]:
        key = row.split("/", 1)[1] if "/" in row else "overall"
        cells = [f"**{key}**" if key == "overall" else key, f"{chance[key]:.3f}"]
        for variant in VARIANTS:
            cell = table[variant][row]
            cells.append(f"{cell['mean']:.3f} ± {cell['std']:.3f}" if several else f"{cell['mean']:.3f}")
        rows.append(cells)
    return markdown_table(["category", "chance", *(labels[v] for v in VARIANTS)], rows)


def _check_line(check: dict) -> str:
    verdict = "met" if check["met"] else "not met"
    return (f"CoAT minus the best baseline (overall): {check['margin']:+.3f}; largest seed std: "
            f"{check['seed_spread']:.3f}; check (margin > spread over >1 seed): {verdict}.\n")


def demo_markdown(report: dict) -> str:
    """demo.md: the generated answers' accuracy (the demo's check), then the likelihood picks' accuracy beside it."""
    seeds = report["seeds"]
    several = len(seeds) > 1
    head = "mean ± std over seeds " + ", ".join(map(str, seeds)) if several else f"seed {seeds[0]}"
    text = (f"# coat demo: synthetic acoustic QA, {report['split']} split accuracy ({head})\n\n"
            f"Generated answers (greedy, read by coat's parser; an answer that names no option counts wrong):\n\n"
            + _score_table(report, report["table"], several) + "\n" + _check_line(report["check"]))
    if report.get("likelihood_table"):
        text += ("\nLikelihood (the option with the highest log-probability per byte of its answer after the prompt; "
                 "no generation, so formatting cannot decide it):\n\n"
                 + _score_table(report, report["likelihood_table"], several) + "\n"
                 + _check_line(report["likelihood_check"]))
    return text + (f"\n{quick_demo_note()}\n" if report.get("quick") else "")


def plot(report: dict, path: Path) -> None:
    """demo.png: accuracy per category and variant, with a title that names the split, its size and the seeds,
    error bars of the seed std (more than one seed), a dashed chance line per category, and the legend below the
    axes, where it covers no bar."""
    rows = list(report["table"]["coat"])
    labels = ["overall" if r == "accuracy" else r.split("/", 1)[1] for r in rows]
    data = SynthConfig(**report["config"]["data"]["synth"])
    chance = chance_levels(data)
    seeds = report["seeds"]
    names = variant_labels(report)
    with figure(path, (1.3 * len(rows) + 2, 4.8)) as (_, ax):
        width = 0.8 / len(VARIANTS)
        for i, variant in enumerate(VARIANTS):
            means = [report["table"][variant][r]["mean"] for r in rows]
            stds = [report["table"][variant][r]["std"] for r in rows]
            xs = [j + (i - (len(VARIANTS) - 1) / 2) * width for j in range(len(rows))]
            ax.bar(xs, means, width, yerr=stds if len(seeds) > 1 else None, label=names[variant], capsize=3,
                   error_kw={"elinewidth": 1})
        for j, key in enumerate(labels):  # a uniform guess among the category's choices
            ax.hlines(chance[key], j - 0.45, j + 0.45, colors="black", linestyles="--", linewidth=1,
                      label="chance (a uniform guess among the choices)" if j == 0 else None)
        ax.set_xticks(range(len(rows)), labels)
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy")
        n = data.split_size(report["split"])
        if len(seeds) > 1:
            spread = f"mean over {len(seeds)} seeds ({', '.join(map(str, seeds))}); error bars: std over the seeds"
        else:
            spread = f"one seed ({seeds[0]}), so no error bars (coat demo --seeds N for mean and std)"
        title = f"coat demo: synthetic acoustic QA, {report['split']} split ({n} clips)\n{spread}"
        if report.get("quick"):
            title += "\n--quick smoke run: a few training steps, the numbers mean nothing"
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, frameon=False)
