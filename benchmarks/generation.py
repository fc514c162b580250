"""`coat bench generation`: what CoAT costs at inference, next to the base model and the alternatives.

The same prompts (audio + question, greedy, a fixed N new tokens) run through:

- ``base``: the base model's ``generate()``;
- ``coat K=k``: ``coat.wrap(base, num_thinking=k).generate()``; the K thinking positions are extra prompt tokens;
- ``base +k prompt``: the base model on the prompt with k ordinary text tokens inserted where CoAT puts its
  block: the reference that shows CoAT's time to first token is that of a k-longer prompt, nothing more;
- ``coconut K=k``: a Coconut-style latent block (Hao et al. 2024): after the prefill, k sequential forward
  passes each feed the last hidden state back as the next input embedding through the KV cache, then N tokens
  are decoded. This is the multi-pass design CoAT is compared with; it is written here with the base model's
  own forward and ``past_key_values``;
- ``text CoT K=k``: a text chain of thought of k tokens before the answer (``generate`` of k + N tokens).

Every forward call of the base model is timed by a pre/post hook pair (CUDA-synchronised on GPU), which gives
the time to the first *answer* token (TTFT), the decode rate of the answer's remaining N-1 tokens, the total
latency and the forward-call count (decode tokens/s is per sequence: times ``--batch`` for the aggregate).
Variants are interleaved within each repeat after a warm-up round; figures are medians, and ratios are the
median of each round's ratio to ``base`` (neighbours in time, so load drifts of a shared machine cancel).
On CPU one torch thread is the default (``threads``): on shared cores it gives far steadier figures than
several threads competing with other work. One more untimed run of
each variant under torch's FlopCounterMode gives FLOPs to the first answer token and per decoded token: the
machine-independent check (matmuls and the CUDA SDPA kernels; the CPU SDPA kernel is not counted, so on CPU the
attention-score FLOPs, the only decode work that grows with the K extra cache entries, are left out).

    coat bench generation --size mid --new-tokens 32 --repeats 5      (python benchmarks/generation.py: the same)
    coat bench generation --size 7b --device cuda --dtype bfloat16   # real 7B shapes, random weights
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers as tf

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import coat  # noqa: E402
from benchmarks.common import BenchModelConfig, apply_model_settings, main_of, write_report  # noqa: E402
from coat import zoo  # noqa: E402
from coat.adapters import get_adapter  # noqa: E402
from coat.loading import DTYPES  # noqa: E402
from coat.reports import markdown_table  # noqa: E402
from coat.thinking import audio_span_ends, insert_thinking  # noqa: E402

SUBJECT = "generation"


def build(family: str, size: str, device: str, dtype: torch.dtype, seed: int = 0):
    """A random-weight model in eval mode on ``device``; ``7b`` is the released configuration, initialised directly
    on the device."""
    if size != "7b":
        return zoo.build_model(family, size, seed=seed, dtype=dtype).to(device)
    return zoo.build_released(family, dtype=dtype, device=device, seed=seed)


def make_prompts(model, family: str, batch: int, device: str, dtype: torch.dtype, seed: int = 0) -> dict:
    """``zoo.make_inputs`` (one audio per prompt, left padded: the model's own special ids and mel-bin count)."""
    inputs = zoo.make_inputs(model, audios_per_prompt=(1,) * batch, padding_side="left", seed=seed, family=family)
    return {k: (v.to(device, dtype) if v.is_floating_point() else v.to(device)) for k, v in inputs.items()}


# ---------------------------------------------------------------------------------------------- timing
class CallClock:
    """Forward pre/post hooks on the base model: the (start, end) time of every forward call."""

    def __init__(self, model: torch.nn.Module, device: str):
        self.cuda = str(device).startswith("cuda")
        self.calls: list[list[float]] = []
        self.flop_counter = None  # a FlopCounterMode while FLOPs are counted: cumulative FLOPs at each call's end
        self.flops: list[int] = []
        self._handles = [model.register_forward_pre_hook(self._start),
                         model.register_forward_hook(self._end)]

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def _start(self, module, args):
        self.calls.append([self.now(), float("nan")])

    def _end(self, module, args, output):
        self.calls[-1][1] = self.now()
        if self.flop_counter is not None:
            self.flops.append(self.flop_counter.get_total_flops())

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _count_flops(clock: CallClock, run, answer_call: int, new_tokens: int) -> dict:
    """FLOPs (torch's FlopCounterMode) up to the first answer token and per decoded answer token: the
    machine-independent counterpart of TTFT and the decode rate."""
    from torch.utils.flop_counter import FlopCounterMode

    clock.flops.clear()
    with FlopCounterMode(display=False) as counter:
        clock.flop_counter = counter
        try:
            run()
        finally:
            clock.flop_counter = None
    total = counter.get_total_flops()
    first = clock.flops[answer_call - 1]
    return {"gflops_to_first_token": first / 1e9, "gflops_per_decode_token": (total - first) / (new_tokens - 1) / 1e9}


def _time_once(clock: CallClock, run, answer_call: int, new_tokens: int) -> dict:
    """Run ``run()`` once. ``answer_call``: 1-based forward call whose logits give the first answer token."""
    clock.calls.clear()
    start = clock.now()
    run()
    end = clock.now()
    first = clock.calls[answer_call - 1][1]
    return {"ttft_s": first - start, "decode_tokens_per_s": (new_tokens - 1) / (end - first),
            "total_s": end - start, "forward_calls": len(clock.calls)}


@torch.no_grad()
def coconut_generate(model, inputs: dict, num_latent: int, new_tokens: int) -> torch.Tensor:
    """Coconut-style latent reasoning: prefill, ``num_latent`` passes feeding the last hidden state back as the
    next input embedding (one position each, through the KV cache), then greedy decoding of ``new_tokens``.
    Costs 1 + num_latent + (new_tokens - 1) forward calls. Returns the new tokens ``(batch, new_tokens)``."""
    mask = inputs["attention_mask"]
    ones = mask.new_ones(mask.shape[0], 1)
    out = model(**inputs, use_cache=True, output_hidden_states=True, logits_to_keep=1)
    cache = out.past_key_values
    for _ in range(num_latent):
        mask = torch.cat([mask, ones], dim=1)
        out = model(inputs_embeds=out.hidden_states[-1][:, -1:], attention_mask=mask, past_key_values=cache,
                    position_ids=_next_position(model, mask), use_cache=True, output_hidden_states=True,
                    logits_to_keep=1)
    tokens = [out.logits[:, -1].argmax(-1, keepdim=True)]
    for _ in range(new_tokens - 1):
        mask = torch.cat([mask, ones], dim=1)
        out = model(input_ids=tokens[-1], attention_mask=mask, past_key_values=cache, use_cache=True,
                    position_ids=_next_position(model, mask), logits_to_keep=1)
        tokens.append(out.logits[:, -1].argmax(-1, keepdim=True))
    return torch.cat(tokens, dim=1)


def _next_position(model, mask: torch.Tensor) -> torch.Tensor:
    """Position of the one new token after ``mask`` (batch, seq): (batch, 1), or (3, batch, 1) with the prefill's
    rope deltas for mRoPE models (Qwen2.5-Omni), as ``generate()`` computes them."""
    position = mask.long().sum(-1, keepdim=True) - 1
    deltas = getattr(getattr(model, "model", None), "rope_deltas", None)
    if deltas is None:
        return position
    return (position + deltas.to(position.device).reshape(-1, 1)).unsqueeze(0).expand(3, -1, -1)


def padded_prompt(model, inputs: dict, extra: int, seed: int = 0) -> dict:
    """``inputs`` with ``extra`` ordinary text ids inserted where CoAT inserts its thinking block."""
    adapter = get_adapter(model)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    ends = audio_span_ends(ids, mask, adapter.audio_token_id(model.config), adapter.audio_end_token_id(model.config))
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(*zoo.TEXT_ID_RANGE, (extra,), generator=g).to(ids.device)
    batch = insert_thinking(ids, mask, None, text, ends, zoo.special_ids(model)["pad"])
    return dict(inputs, input_ids=batch.input_ids, attention_mask=batch.attention_mask)


def _variants(model, inputs: dict, ks: list[int], new_tokens: int) -> list[dict]:
    """Each variant: name, kind, k, prompt length, answer_call, setup() -> run callable, teardown()."""
    greedy = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    prompt = int(inputs["input_ids"].shape[1])
    wrapped: dict = {}

    def base_run(inp, n=new_tokens):
        g = dict(greedy, max_new_tokens=n, min_new_tokens=n)
        return lambda: model.generate(**inp, **g)

    def coat_setup(k):
        def setup():
            torch.manual_seed(k)
            wrapped["model"] = coat.wrap(model, coat.CoATConfig(num_thinking=k))
            return lambda: wrapped["model"].generate(**inputs, **greedy)
        return setup

    def coat_teardown():
        wrapped.pop("model").unwrap()

    out = [dict(name="base", kind="base", k=0, prompt_tokens=prompt, answer_call=1,
                setup=lambda: base_run(inputs), teardown=None)]
    for k in ks:
        padded = padded_prompt(model, inputs, k)
        out += [
            dict(name=f"coat K={k}", kind="coat", k=k, prompt_tokens=prompt + k, answer_call=1,
                 setup=coat_setup(k), teardown=coat_teardown),
            dict(name=f"base +{k} prompt", kind="padded_base", k=k, prompt_tokens=prompt + k, answer_call=1,
                 setup=lambda p=padded: base_run(p), teardown=None),
            dict(name=f"coconut K={k}", kind="coconut", k=k, prompt_tokens=prompt, answer_call=k + 1,
                 setup=lambda k=k: (lambda: coconut_generate(model, inputs, k, new_tokens)), teardown=None),
            dict(name=f"text CoT K={k}", kind="text_cot", k=k, prompt_tokens=prompt, answer_call=k + 1,
                 setup=lambda k=k: base_run(inputs, k + new_tokens), teardown=None),
        ]
    return out


# ---------------------------------------------------------------------------------------------- run
def run(family: str = "qwen2_audio", size: str = "mid", device: str = "cpu", dtype: str = "float32",
        ks: tuple[int, ...] = (8, 16, 32), new_tokens: int = 32, batch: int = 1, repeats: int = 5,
        warmup: int = 1, seed: int = 0) -> dict:
    """Measure every variant ``repeats`` times, interleaved, after ``warmup`` rounds; medians and ratios."""
    if new_tokens < 2:
        raise ValueError("new_tokens must be >= 2 (the decode rate is over the answer's tokens after the first)")
    torch_dtype = DTYPES[dtype]
    model = build(family, size, device, torch_dtype, seed)
    inputs = make_prompts(model, family, batch, device, torch_dtype, seed)
    variants = _variants(model, inputs, list(ks), new_tokens)
    clock = CallClock(model, device)
    samples: dict[str, list[dict]] = {v["name"]: [] for v in variants}
    try:
        for round_ in range(warmup + repeats):
            # rotate the order each round so no variant always runs right after the same one
            shift = round_ % len(variants)
            for v in variants[shift:] + variants[:shift]:
                fn = v["setup"]()
                try:
                    sample = _time_once(clock, fn, v["answer_call"], new_tokens)
                finally:
                    if v["teardown"] is not None:
                        v["teardown"]()
                if round_ >= warmup:
                    samples[v["name"]].append(sample)
        flops = {}
        for v in variants:  # one untimed run each under the FLOP counter
            fn = v["setup"]()
            try:
                flops[v["name"]] = _count_flops(clock, fn, v["answer_call"], new_tokens)
            finally:
                if v["teardown"] is not None:
                    v["teardown"]()
    finally:
        clock.remove()

    rows = []
    for v in variants:
        s = samples[v["name"]]
        row = {key: v[key] for key in ("name", "kind", "k", "prompt_tokens")}
        row["positions_before_answer"] = v["prompt_tokens"] + (v["k"] if v["kind"] in ("coconut", "text_cot") else 0)
        for key in ("ttft_s", "decode_tokens_per_s", "total_s"):
            row[key] = statistics.median(x[key] for x in s)
        row["forward_calls"] = s[0]["forward_calls"]
        row.update(flops[v["name"]])
        if any(x["forward_calls"] != row["forward_calls"] for x in s):
            raise RuntimeError(f"{v['name']}: the forward-call count changed between repeats")
        rows.append(row)
    # Ratios: the median over rounds of (variant / base of the same round), so slow drifts in machine load
    # (shared CPUs) cancel between neighbours; ``*_min`` is the best round, the least disturbed estimate.
    base_samples = samples["base"]
    for row in rows:
        s = samples[row["name"]]
        for key, ratio in RATIOS.items():
            row[ratio] = statistics.median(x[key] / b[key] for x, b in zip(s, base_samples))
        row["ttft_s_min"] = min(x["ttft_s"] for x in s)
        row["decode_tokens_per_s_max"] = max(x["decode_tokens_per_s"] for x in s)
        row["samples"] = s
    base = rows[0]
    for row in rows:
        for key, ratio in FLOP_RATIOS.items():
            row[ratio] = row[key] / base[key]
    by_name = {r["name"]: r for r in rows}
    targets = {}
    for k in ks:
        c, p = by_name[f"coat K={k}"], by_name[f"base +{k} prompt"]
        targets[f"K={k}"] = {
            "decode_tokens_per_s_within_3pct": c["decode_tokens_per_s_ratio"] >= 0.97,
            "forward_calls_equal_base": c["forward_calls"] == base["forward_calls"],
            "decode_gflops_per_token_ratio": c["gflops_per_decode_token_ratio"],
            "decode_tokens_per_s_vs_padded_base_ratio": statistics.median(
                x["decode_tokens_per_s"] / y["decode_tokens_per_s"]
                for x, y in zip(samples[c["name"]], samples[p["name"]])),
            "ttft_vs_padded_base_ratio": statistics.median(
                x["ttft_s"] / y["ttft_s"] for x, y in zip(samples[c["name"]], samples[p["name"]])),
        }
    return {
        "subject": SUBJECT, "family": family, "size": size, "device": str(device), "dtype": dtype,
        "batch": batch, "new_tokens": new_tokens, "ks": list(ks), "repeats": repeats, "warmup": warmup,
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "transformers": tf.__version__,
        "timing": "median over interleaved repeats (ratios: median of per-round ratios to base); per-call times "
                  "from forward pre/post hooks on the base "
                  "model" + (" with torch.cuda.synchronize()" if str(device).startswith("cuda") else ""),
        "flops": "torch.utils.flop_counter.FlopCounterMode: matmuls and CUDA SDPA kernels (not the CPU SDPA one)",
        "rows": rows, "targets": targets,
    }


RATIOS = {"ttft_s": "ttft_ratio", "decode_tokens_per_s": "decode_tokens_per_s_ratio", "total_s": "total_ratio",
          "forward_calls": "calls_ratio"}
FLOP_RATIOS = {"gflops_to_first_token": "gflops_to_first_token_ratio",
               "gflops_per_decode_token": "gflops_per_decode_token_ratio"}
COLUMNS = [("name", "variant", "{}"), ("prompt_tokens", "prompt", "{}"),
           ("positions_before_answer", "ctx@answer", "{}"), ("ttft_s", "TTFT ms", "{:.1f}"),
           ("ttft_ratio", "xTTFT", "{:.3f}"), ("decode_tokens_per_s", "decode tok/s", "{:.1f}"),
           ("decode_tokens_per_s_ratio", "xdecode", "{:.3f}"), ("total_s", "total ms", "{:.1f}"),
           ("total_ratio", "xtotal", "{:.3f}"), ("forward_calls", "calls", "{}"), ("calls_ratio", "xcalls", "{:.3f}"),
           ("gflops_to_first_token", "GFLOP to 1st", "{:.3f}"),
           ("gflops_per_decode_token", "GFLOP/decode tok", "{:.4f}"),
           ("gflops_per_decode_token_ratio", "xdecode FLOP", "{:.4f}")]


def to_markdown(result: dict) -> str:
    head = (f"generation: {result['family']} {result['size']} on {result['device']} ({result['dtype']}), "
            f"batch {result['batch']}, {result['new_tokens']} new tokens, median of {result['repeats']}")
    rows = [[fmt.format(row[key] * 1000 if key in ("ttft_s", "total_s") else row[key]) for key, _, fmt in COLUMNS]
            for row in result["rows"]]
    checks = [[k.split("=")[1], t["decode_tokens_per_s_within_3pct"], f"{t['decode_gflops_per_token_ratio']:.4f}",
               f"{t['decode_tokens_per_s_vs_padded_base_ratio']:.3f}", t["forward_calls_equal_base"],
               f"{t['ttft_vs_padded_base_ratio']:.3f}"] for k, t in result["targets"].items()]
    header = ["K", "CoAT decode within 3% of base", "CoAT decode FLOP/token / base", "CoAT decode / base +K prompt",
              "CoAT calls == base", "CoAT TTFT / TTFT of base +K prompt"]
    return f"{head}\n\n{markdown_table([c[1] for c in COLUMNS], rows)}\n{markdown_table(header, checks)}"


def write(result: dict, out: str | Path) -> Path:
    return write_report(result, out, SUBJECT, to_markdown)


@dataclass
class GenerationBenchConfig(BenchModelConfig):
    """``coat bench generation``: the model, the K values and the generation budget."""

    out: str = field(default=f"runs/bench/{SUBJECT}", metadata={"help": "folder for generation.json / .md"})
    ks: list[int] = field(default_factory=lambda: [8, 16, 32], metadata={"help": "K values (--ks 8,16,32)"})
    new_tokens: int = field(default=32, metadata={"help": "N answer tokens (fixed length, greedy)"})
    batch: int = field(default=1, metadata={"help": "prompts per generate() call"})
    repeats: int = field(default=5, metadata={"help": "timed rounds of every variant (medians reported)"})
    warmup: int = field(default=1, metadata={"help": "untimed rounds of every variant first"})


def bench(config: GenerationBenchConfig) -> None:
    """What CoAT costs at inference, next to the base model and the alternatives: time to first token, decode
    tokens/s, forward calls and FLOPs of base, CoAT K=k, the base on a k-longer prompt, multi-pass latent
    (Coconut-style) and a text chain of thought, measured side by side in one run. Writes generation.json and
    generation.md to out.

    Examples:
        coat bench generation --size mid      # ~2.5 min on 2 CPU cores
        coat bench generation --size 7b --device cuda   # the released 7B shapes, random weights
    """
    dtype = apply_model_settings(config)
    result = run(family=config.family, size=config.size, device=config.device, dtype=dtype, ks=tuple(config.ks),
                 new_tokens=config.new_tokens, batch=config.batch, repeats=config.repeats, warmup=config.warmup,
                 seed=config.seed)
    write(result, config.out)
    print(to_markdown(result))


main = main_of(SUBJECT)

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
