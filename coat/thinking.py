"""The two mechanisms of CoAT that touch the base model's inputs.

- :class:`ThinkingEmbedding` wraps the base input embedding: ids below ``offset`` (the base table size)
  look up the base table, ids ``offset .. offset+K-1`` look up a trainable ``K x hidden`` table. The base
  model's audio merge, positions, KV cache and ``generate()`` then work unchanged, because thinking
  positions are just more prompt tokens (docs/design.md, decision 1).
- :func:`insert_thinking` puts the K thinking ids after every audio span at tensor level, shifting
  ``attention_mask`` and ``labels`` (-100 at thinking positions) and re-padding on the batch's own
  padding side (decision 2). The processor and chat template stay untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from coat.distributed import embedding_statistics

IGNORE_INDEX = -100


class ThinkingEmbedding(nn.Module):
    """Base token embedding plus K trainable thinking rows addressed by ids ``offset .. offset+K-1``.

    The thinking table is kept in float32 (the trainable master copy) on the base table's device and is
    cast to the base embedding's output dtype, so a bfloat16 base trains a float32 table.
    """

    def __init__(self, base: nn.Embedding, num_thinking: int, init: str = "vocab", generator=None):
        super().__init__()
        self.base = base
        self.offset = base.num_embeddings
        table = torch.empty(num_thinking, base.embedding_dim, dtype=torch.float32, device=base.weight.device)
        if num_thinking:
            if init == "vocab":
                # Rows that look like typical token embeddings: their mean plus noise of their spread (of the whole
                # table, also when FSDP or ZeRO-3 left this process a piece of it).
                mean, std = embedding_statistics(base.weight)
                noise = torch.randn(table.shape, generator=generator, device="cpu").to(table.device)
                table.copy_(mean + noise * std)
            else:
                table.copy_(torch.randn(table.shape, generator=generator, device="cpu").to(table.device) * 0.02)
        self.thinking = nn.Parameter(table)

    @property
    def num_thinking(self) -> int:
        return self.thinking.shape[0]

    @property
    def weight(self) -> torch.Tensor:
        """The base table (code that reads ``get_input_embeddings().weight`` keeps working)."""
        return self.base.weight

    @property
    def num_embeddings(self) -> int:
        return self.base.num_embeddings

    @property
    def embedding_dim(self) -> int:
        return self.base.embedding_dim

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(...,) ids -> (..., hidden). No host sync: both lookups run and ``where`` picks per position."""
        if self.num_thinking == 0:
            return self.base(input_ids)
        is_think = input_ids >= self.offset
        out = self.base(input_ids.masked_fill(is_think, 0))
        think_idx = (input_ids - self.offset).clamp(0, self.num_thinking - 1)
        think = nn.functional.embedding(think_idx, self.thinking).to(out.dtype)
        return torch.where(is_think.unsqueeze(-1), think, out)


@dataclass
class ThinkingBatch:
    """Inputs with thinking positions inserted (all (batch, new_seq)), and where they went."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None
    num_spans: torch.Tensor  # (batch,) audio spans (so thinking blocks) per row
    max_spans: int  # num_spans.max(), read once
    # Where the thinking positions went, span by span in row-major order (n_spans * K,) each: their row, their
    # column in the new sequence, and their slot in (batch, max_spans * K) thinking_states.
    think_rows: torch.Tensor | None = None
    think_cols: torch.Tensor | None = None
    think_slots: torch.Tensor | None = None


def audio_span_ends(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, audio_token_id: int, audio_end_token_id: int | None
) -> torch.Tensor:
    """(batch, seq) bool: True at the position after which a thinking block goes.

    That is the last placeholder of every contiguous run of ``audio_token_id``, or the token right after it
    when that token is ``audio_end_token_id``. Padding positions never count.
    """
    is_audio = (input_ids == audio_token_id) & attention_mask.bool()
    next_ids = torch.nn.functional.pad(input_ids[:, 1:], (0, 1), value=-1)
    run_end = is_audio & (next_ids != audio_token_id)
    if audio_end_token_id is None:
        return run_end
    closed = run_end & (next_ids == audio_end_token_id)
    moved = torch.nn.functional.pad(closed[:, :-1], (1, 0), value=False)  # the end token's own position
    return (run_end & ~closed) | moved


def padding_side_of(attention_mask: torch.Tensor) -> str:
    """'left' or 'right' from the mask itself; a batch without padding reports 'right'."""
    mask = attention_mask.bool()
    if bool(mask.all()):
        return "right"
    right_ok = bool(mask[:, 0].all()) and bool((mask[:, 1:] <= mask[:, :-1]).all())
    left_ok = bool(mask[:, -1].all()) and bool((mask[:, 1:] >= mask[:, :-1]).all())
    if left_ok and not right_ok:
        return "left"
    if right_ok:
        return "right"
    raise ValueError(
        "attention_mask is neither left- nor right-padded (zeros in the middle of a row, or padding on both "
        "sides); CoAT re-pads after inserting thinking positions and needs one padding side per batch"
    )


def insert_thinking(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    labels: torch.Tensor | None,
    thinking_ids: torch.Tensor,
    span_ends: torch.Tensor,
    pad_token_id: int,
) -> ThinkingBatch:
    """Insert ``thinking_ids`` (K,) after every True of ``span_ends`` (batch, seq).

    Rows grow by K per span; the batch is re-padded to the longest row on its own padding side (left:
    every row ends at the last column, as ``generate()`` needs). Vectorised: one scatter, no Python loop.
    """
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if labels is not None and labels.shape != input_ids.shape:
        raise ValueError(f"labels shape {tuple(labels.shape)} does not match input_ids {tuple(input_ids.shape)}")
    side = padding_side_of(attention_mask)
    batch, seq = input_ids.shape
    k = int(thinking_ids.numel())
    ends = span_ends.long()
    num_spans = ends.sum(1)
    max_spans = int(num_spans.max()) if batch else 0
    if k == 0 or max_spans == 0:
        return ThinkingBatch(input_ids, attention_mask, labels, num_spans, max_spans)

    new_seq = seq + k * max_spans
    # Blocks inserted before token t (strictly): token t moves right by k per block.
    before = ends.cumsum(1) - ends
    shift = k * (max_spans - num_spans) if side == "left" else torch.zeros_like(num_spans)
    new_pos = torch.arange(seq, device=input_ids.device) + k * before + shift[:, None]

    out_ids = input_ids.new_full((batch, new_seq), pad_token_id)
    out_mask = attention_mask.new_zeros((batch, new_seq))
    out_ids.scatter_(1, new_pos, input_ids)
    out_mask.scatter_(1, new_pos, attention_mask)
    out_labels = None
    if labels is not None:
        out_labels = labels.new_full((batch, new_seq), IGNORE_INDEX)
        out_labels.scatter_(1, new_pos, labels)

    # The thinking block after span end t occupies new_pos[t] + 1 .. new_pos[t] + k.
    rows, cols = span_ends.nonzero(as_tuple=True)  # row-major: spans in prompt order within each row
    offsets = torch.arange(1, k + 1, device=input_ids.device)
    block_pos = (new_pos[rows, cols][:, None] + offsets).reshape(-1)
    block_rows = rows[:, None].expand(-1, k).reshape(-1)
    span_rank = before[rows, cols]  # index of the span within its row
    block_slots = (span_rank[:, None] * k + offsets - 1).reshape(-1)
    out_ids[block_rows, block_pos] = thinking_ids.to(input_ids.device).repeat(rows.numel())
    out_mask[block_rows, block_pos] = 1
    return ThinkingBatch(out_ids, out_mask, out_labels, num_spans, max_spans, block_rows, block_pos,
                         block_slots)
