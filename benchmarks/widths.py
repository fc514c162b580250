"""What CoAT adds to each released model at full depth, and what one training step needs.

Every family's released configuration (``coat.zoo.released_config``) is built at full depth on the meta device (no
memory, a second or two), wrapped at K thinking positions with the default heads and LoRA, and its parameters are
counted by part: what CoAT adds (thinking table, heads, LoRA) next to the base (decoder layers, embeddings and
lm_head, audio tower and projector, Qwen2.5-Omni's vision tower). Then an estimate, term by term, of the memory of
one full-depth training step on one GPU: bf16 weights, LoRA, gradient checkpointing, a batch of 30 s clips with a
question, AdamW. The estimate is arithmetic from the shapes (written out in the report), not a measurement: on a
GPU, ``coat bench training --size 7b`` measures the step.

    coat bench widths      # K 16, LoRA r 16, batch 4, 30 s clips (python benchmarks/widths.py: the same)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import coat  # noqa: E402
from benchmarks.common import main_of, write_report  # noqa: E402
from benchmarks.training import TARGET_SPECS  # noqa: E402
from coat import zoo  # noqa: E402
from coat.heads import HeadConfig  # noqa: E402

SUBJECT = "widths"
GB = 1e9
AUDIO_TOKENS_PER_WINDOW = 750  # one 30 s window: 3000 mel frames, /2 by the encoder's conv, /2 by its pooling


def count(family: str, k: int = 16, lora_rank: int = 16, head_config: HeadConfig | None = None,
          dtype: torch.dtype = torch.bfloat16) -> dict:
    """Parameters (and their bytes in ``dtype`` for the base) of the full-depth released model, by part."""
    base = zoo.build_released(family, dtype=dtype, device="meta")
    text = base.config.get_text_config()
    model = coat.wrap(base, num_thinking=k)
    model.add_heads(list(TARGET_SPECS), head_config or HeadConfig())
    model.add_lora(r=lora_rank, alpha=2 * lora_rank, dropout=0.0)
    parts = {"decoder_layers": 0, "embeddings_and_lm_head": 0, "audio_tower_and_projector": 0, "vision_tower": 0,
             "other": 0}
    lora = sum(p.numel() for p in model.coat_parameters(("lora",)))
    for name, param in base.named_parameters():
        if "lora_" in name or name.endswith("embed_tokens.thinking"):
            continue
        if "audio_tower" in name or "multi_modal_projector" in name:
            parts["audio_tower_and_projector"] += param.numel()
        elif ".visual." in name or name.startswith("visual."):
            parts["vision_tower"] += param.numel()
        elif ".layers." in name:
            parts["decoder_layers"] += param.numel()
        elif "embed_tokens" in name or "lm_head" in name:
            parts["embeddings_and_lm_head"] += param.numel()
        else:
            parts["other"] += param.numel()
    coat_parts = {"thinking": model.thinking_embedding.thinking.numel(),
                  "heads": sum(p.numel() for p in model.heads.parameters()), "lora": lora}
    lora_dtype = next(p for p in model.coat_parameters(("lora",))).dtype
    return {"family": family, "checkpoint": zoo.RELEASED[family]["checkpoint"], "base": parts,
            "base_total": sum(parts.values()), "coat": coat_parts, "coat_total": sum(coat_parts.values()),
            "lora_dtype": str(lora_dtype).replace("torch.", ""), "hidden": text.hidden_size,
            "intermediate": text.intermediate_size, "layers": text.num_hidden_layers, "vocab": text.vocab_size,
            "kv_width": text.num_key_value_heads * (text.hidden_size // text.num_attention_heads)}


def memory_estimate(c: dict, batch: int = 4, text_tokens: int = 64, k: int = 16) -> dict:
    """Bytes of one training step (bf16 base, LoRA, gradient checkpointing, AdamW), term by term, with the formula
    of each. ``text_tokens``: prompt text, question and answer around the audio of one 30 s clip."""
    seq = AUDIO_TOKENS_PER_WINDOW + text_tokens + k
    tokens = batch * seq
    h, i, kv, v, layers = c["hidden"], c["intermediate"], c["kv_width"], c["vocab"], c["layers"]
    lora_bytes = 2 if c["lora_dtype"] == "bfloat16" else 4
    terms = [
        ("base weights (bf16)", 2 * c["base_total"], f"2 B x {c['base_total']:,} parameters"),
        (f"LoRA weight + grad + AdamW m, v ({c['lora_dtype']})", 4 * lora_bytes * c["coat"]["lora"],
         f"4 x {lora_bytes} B x {c['coat']['lora']:,}"),
        ("thinking table + heads: weight + grad + AdamW m, v (float32)",
         16 * (c["coat"]["thinking"] + c["coat"]["heads"]),
         f"16 B x {c['coat']['thinking'] + c['coat']['heads']:,}"),
        ("checkpointed layer inputs (bf16)", 2 * tokens * h * layers,
         f"2 B x {tokens} tokens x {h} x {layers} layers"),
        ("one decoder layer recomputed for backward (bf16)", 2 * tokens * (6 * h + 2 * kv + 4 * i),
         f"2 B x {tokens} x (6 x {h} + 2 x {kv} + 4 x {i}): norms, q/k/v/o, attention out, MLP gate/up/act/product"),
        ("logits: bf16, float32 for the loss, its gradient", 10 * tokens * v,
         f"(2 + 4 + 4) B x {tokens} x {v} vocabulary"),
        ("CUDA context, allocator slack (assumed)", 2 * GB, "2 GB"),
    ]
    total = sum(t[1] for t in terms)
    return {"batch": batch, "sequence": seq, "terms": [{"what": w, "bytes": b, "formula": f} for w, b, f in terms],
            "total_bytes": total, "fits_80gb": total < 80 * GB}


def run(k: int = 16, lora_rank: int = 16, batch: int = 4, families=tuple(zoo.RELEASED)) -> dict:
    rows = []
    for family in families:
        c = count(family, k=k, lora_rank=lora_rank)
        rows.append({**c, "memory": memory_estimate(c, batch=batch, k=k)})
    return {"subject": SUBJECT, "k": k, "lora_rank": lora_rank, "batch": batch,
            "heads": f"HeadConfig() defaults on the training benchmark's targets {[s.name for s in TARGET_SPECS]}",
            "lora_targets": "the adapters' defaults: q/k/v/o projections of every decoder layer", "rows": rows}


def _m(n: int) -> str:
    return f"{n / 1e6:,.2f} M"


def to_markdown(result: dict) -> str:
    lines = [f"widths: released configurations at full depth, K {result['k']}, LoRA r {result['lora_rank']} "
             f"({result['lora_targets']}), heads: {result['heads']}", "",
             "| family | base | decoder layers | embeddings + lm_head | audio tower + projector | vision tower "
             "| thinking | heads | LoRA | CoAT / base |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        b, c = r["base"], r["coat"]
        lines.append(f"| {r['family']} | {r['base_total'] / 1e9:.3f} B | {b['decoder_layers'] / 1e9:.3f} B "
                     f"| {b['embeddings_and_lm_head'] / 1e9:.3f} B | {b['audio_tower_and_projector'] / 1e6:,.1f} M "
                     f"| {b['vision_tower'] / 1e6:,.1f} M | {_m(c['thinking'])} | {_m(c['heads'])} | {_m(c['lora'])} "
                     f"| {100 * r['coat_total'] / r['base_total']:.3f} % |")
    for r in result["rows"]:
        m = r["memory"]
        lines += ["", f"{r['family']}: one training step, batch {m['batch']} x {m['sequence']} tokens (a 30 s clip: "
                  f"{AUDIO_TOKENS_PER_WINDOW} audio tokens, 64 text, {result['k']} thinking)", "",
                  "| term | GB | formula |", "|---|---|---|"]
        lines += [f"| {t['what']} | {t['bytes'] / GB:.2f} | {t['formula']} |" for t in m["terms"]]
        lines.append(f"| **total** | **{m['total_bytes'] / GB:.1f}** | fits one 80 GB GPU: {m['fits_80gb']} |")
    return "\n".join(lines) + "\n"


def write(result: dict, out: str | Path) -> Path:
    return write_report(result, out, SUBJECT, to_markdown)


@dataclass
class WidthsBenchConfig:
    """``coat bench widths``: the CoAT settings counted and the training step estimated."""

    out: str = field(default=f"runs/bench/{SUBJECT}", metadata={"help": "folder for widths.json / .md"})
    families: list[str] = field(default_factory=lambda: list(zoo.RELEASED),
                                metadata={"help": f"released configurations to count, of {list(zoo.RELEASED)}"})
    k: int = field(default=16, metadata={"help": "thinking positions K"})
    lora_rank: int = field(default=16, metadata={"help": "LoRA rank (q/k/v/o of every decoder layer)"})
    batch: int = field(default=4, metadata={"help": "30 s clips per training step in the memory estimate"})

    def __post_init__(self):
        unknown = [f for f in self.families if f not in zoo.RELEASED]
        if unknown or not self.families:
            raise ValueError(f"families must be a non-empty list of {list(zoo.RELEASED)}, got {self.families!r}")
        if min(self.k, self.lora_rank, self.batch) < 1:
            raise ValueError(f"k, lora_rank and batch must be >= 1, got {self.k}, {self.lora_rank}, {self.batch}")


def bench(config: WidthsBenchConfig) -> None:
    """What CoAT adds to each released model at full depth (thinking table, heads, LoRA next to the base's decoder,
    embeddings, audio and vision towers), counted on the meta device, and an estimate, term by term, of one
    full-depth training step's memory on one GPU (bf16, LoRA, gradient checkpointing, AdamW, 30 s clips). No GPU
    and no weights needed; on a GPU coat bench training --size 7b measures the step. Writes widths.json and
    widths.md to out.

    Examples:
        coat bench widths                     # ~10 s
        coat bench widths --families qwen2_audio --batch 8
    """
    result = run(k=config.k, lora_rank=config.lora_rank, batch=config.batch, families=tuple(config.families))
    write(result, config.out)
    print(to_markdown(result))


main = main_of(SUBJECT)

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
