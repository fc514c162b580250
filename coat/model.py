"""Continuous Audio Thinking for large audio language models ("Continuous Audio Thinking for Large Audio Language
Models", arXiv 2606.18273, 2026): K learnable thinking positions after every audio span of a Hugging Face audio LM,
supervised by expert heads, read by the answer.

    model = coat.wrap(base_model, coat.CoATConfig(num_thinking=16))
    out = model(**processor_outputs, labels=labels)        # base output + .thinking_states
    ids = model.generate(**processor_outputs, max_new_tokens=64)

The thinking block is part of the prompt, so it is processed in the one prefill and decoding costs what
it cost before. ``generate()`` returns sequences in the caller's coordinates: the caller's prompt ids
followed by the new tokens, no thinking ids. With heads (:meth:`CoATModel.add_heads`) and ``expert_targets``, the
forward adds the expert losses: ``loss = text_loss + sum(weight * expert_loss)``. LoRA, saving, loading and
unwrapping come from :class:`coat.model_io.ModelIOMixin`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

from coat import distributed
from coat.adapters import Adapter, get_adapter
from coat.config import CoATConfig
from coat.heads import ExpertHeads, HeadConfig
from coat.losses import distillation_losses
from coat.model_io import ModelIOMixin
from coat.targets import PreparedTargets, TargetSpec, prepare_active_targets
from coat.thinking import ThinkingBatch, ThinkingEmbedding, audio_span_ends, insert_thinking

# Arguments that would bypass or contradict the insertion: the base model must see our input_ids.
_REFUSED = {
    "inputs_embeds": "CoAT inserts thinking ids into input_ids; pass input_ids (Qwen2-Audio, for one, skips "
    "its audio merge when inputs_embeds is given)",
    "position_ids": "positions change when thinking ids are inserted; the base model computes them from "
    "attention_mask, so leave position_ids out",
}


class CoATModel(ModelIOMixin, nn.Module):
    """A base LALM with a thinking table. Build it with :func:`coat.wrap`.

    Attributes: ``base_model`` (the wrapped module; for Qwen2.5-Omni its Thinker), ``adapter``, ``config``,
    ``thinking_embedding`` (the :class:`ThinkingEmbedding` installed as the base input embedding; its table
    is the parameter ``base_model...embed_tokens.thinking``).
    """

    def __init__(self, base_model: nn.Module, config: CoATConfig, adapter: Adapter | None = None):
        super().__init__()
        if not isinstance(config, CoATConfig):
            raise TypeError(f"config must be a coat.CoATConfig, got {type(config).__name__}")
        adapter = adapter or get_adapter(base_model)
        outer_config = base_model.config  # the adapter's ids are read from the config it is registered for
        base_model = adapter.text_model(base_model)
        # Everything that can fail is checked before the base model is touched: a failed wrap leaves it as it was.
        if isinstance(base_model.get_input_embeddings(), ThinkingEmbedding):
            raise ValueError("this model is already wrapped by CoAT; call .unwrap() on the CoATModel first")
        layers = adapter.decoder_layers(base_model)
        if not -len(layers) <= config.thinking_layer < len(layers):
            raise ValueError(
                f"thinking_layer={config.thinking_layer} is out of range for a model with {len(layers)} decoder layers"
            )
        self.config = config
        self.adapter = adapter
        self.base_model = base_model
        self.audio_token_id = (config.audio_token_id if config.audio_token_id is not None
                               else adapter.audio_token_id(outer_config))
        self.audio_end_token_id = (config.audio_end_token_id if config.audio_end_token_id is not None
                                   else adapter.audio_end_token_id(outer_config))
        self._hooked_layer = layers[config.thinking_layer]
        self._captured: torch.Tensor | None = None
        self._capturing = False
        self.heads: ExpertHeads | None = None
        self.expert_weights: dict[str, float] = {}
        self.lora_config = None
        # the base's own requires_grad flags, put back by unwrap()
        self._base_flags = {name: p.requires_grad for name, p in base_model.named_parameters()}
        embedding = ThinkingEmbedding(base_model.get_input_embeddings(), config.num_thinking,
                                      init=config.thinking_init)
        if config.freeze_base:
            for param in base_model.parameters():
                param.requires_grad_(False)
        base_model.set_input_embeddings(embedding)
        self._hook = self._hooked_layer.register_forward_hook(self._capture_hook)

    def add_heads(self, specs: list[TargetSpec], head_config: HeadConfig | None = None,
                  weights: dict[str, float] | None = None) -> ExpertHeads:
        """Attach one trainable head per expert target (float32, on the thinking table's device).

        ``weights``: target name -> loss weight (missing: 1.0); 0 turns a target off (its head gets no gradient).
        """
        heads = ExpertHeads(list(specs), self.hidden_size, head_config)
        unknown = sorted(set(weights or {}) - set(heads.specs))
        if unknown:
            raise ValueError(f"loss weights for unknown target(s) {unknown}; targets: {sorted(heads.specs)}")
        self.heads = heads.to(self.thinking_embedding.thinking.device)
        self.expert_weights = {name: float((weights or {}).get(name, 1.0)) for name in heads.specs}
        return self.heads

    def coat_parameters(self, parts=("thinking", "heads", "lora")) -> list[nn.Parameter]:
        """The parameters CoAT adds, by part: the thinking table, the expert heads, the LoRA weights."""
        params = []
        if "thinking" in parts:
            params.append(self.thinking_embedding.thinking)
        if "heads" in parts and self.heads is not None:
            params += list(self.heads.parameters())
        if "lora" in parts:
            params += [p for n, p in self.base_model.named_parameters() if "lora_" in n]
        return params

    def set_trainable(self, parts) -> None:
        """Train exactly ``parts`` (of thinking, heads, lora); freeze everything else, the base included."""
        unknown = sorted(set(parts) - {"thinking", "heads", "lora"})
        if unknown:
            raise ValueError(f"unknown trainable part(s) {unknown}; choose from thinking, heads, lora")
        if "lora" in parts and self.lora_config is None:
            raise ValueError("'lora' is trainable but the model has no LoRA; call add_lora() first")
        for param in self.parameters():
            param.requires_grad_(False)
        for param in self.coat_parameters(parts):
            param.requires_grad_(True)

    # ------------------------------------------------------------------ ids and insertion
    @property
    def thinking_embedding(self) -> ThinkingEmbedding:
        """The installed embedding; it lives inside the base model only (one parameter, one name)."""
        return self.base_model.get_input_embeddings()

    @property
    def num_thinking(self) -> int:
        return self.config.num_thinking

    @property
    def thinking_token_ids(self) -> torch.Tensor:
        """(K,) the reserved ids ``V .. V+K-1`` (V = base input-embedding size)."""
        emb = self.thinking_embedding
        return torch.arange(emb.offset, emb.offset + emb.num_thinking, device=emb.thinking.device)

    @property
    def hidden_size(self) -> int:
        return self.thinking_embedding.embedding_dim

    @property
    def _no_split_modules(self) -> list[str]:
        """The layer classes FSDP shards as units (accelerate's TRANSFORMER_BASED_WRAP reads this name)."""
        return distributed.fsdp_wrap_classes(self)

    def _pad_token_id(self) -> int:
        for source in (getattr(self.base_model, "generation_config", None), self.base_model.config,
                       getattr(self.base_model.config, "text_config", None)):
            pad = getattr(source, "pad_token_id", None) if source is not None else None
            if isinstance(pad, int) and pad != self.audio_token_id:
                return pad
        return 0 if self.audio_token_id != 0 else 1

    def insert_thinking(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                        labels: torch.Tensor | None = None) -> ThinkingBatch:
        """Insert the thinking ids after every audio span. Prompts without audio are left unchanged."""
        if input_ids is None:
            raise ValueError("CoATModel needs input_ids (the processor's output); inputs_embeds is not supported")
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, seq), got shape {tuple(input_ids.shape)}")
        if input_ids.numel() == 0:
            raise ValueError(f"input_ids is empty (shape {tuple(input_ids.shape)}): an empty batch has nothing to run")
        if attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask shape {tuple(attention_mask.shape)} does not match input_ids "
                             f"{tuple(input_ids.shape)}")
        if int(input_ids.max()) >= self.thinking_embedding.offset:
            raise ValueError("input_ids already contain thinking ids (>= the base vocabulary size); pass the "
                             "processor's ids, CoAT inserts the thinking block itself")
        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        ends = audio_span_ends(input_ids, mask, self.audio_token_id, self.audio_end_token_id)
        return insert_thinking(input_ids, mask, labels, self.thinking_token_ids.to(input_ids.device), ends,
                               self._pad_token_id())

    # ------------------------------------------------------------------ forward
    def _capture_hook(self, module, args, output):
        if self._capturing:
            self._captured = output[0] if isinstance(output, tuple) else output

    def _check_inputs(self, input_ids, attention_mask, kwargs):
        for name, why in _REFUSED.items():
            if kwargs.get(name) is not None:
                raise ValueError(f"CoATModel does not take {name}: {why}")
        if self.adapter.check_inputs is not None and input_ids is not None:
            self.adapter.check_inputs(self.base_model, input_ids, attention_mask, kwargs)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, expert_targets: dict | None = None, **kwargs):
        """Run the base model on the inputs with thinking positions inserted.

        Takes what the base forward takes (``input_features``, ``feature_attention_mask``, ...). Returns the
        base model's output (logits over the expanded sequence, loss if ``labels``) plus:
        ``thinking_states`` (batch, max_spans * K, hidden): layer ``thinking_layer``'s output at the
        thinking positions, in order, zero-padded for rows with fewer audio spans;
        ``thinking_mask`` (batch, max_spans * K) bool; ``coat_attention_mask`` (batch, new_seq).

        ``expert_targets`` (needs :meth:`add_heads`): target name -> one array ``(frames, dim)`` per audio span
        of the batch, row by row and in prompt order (``None`` for a span without that target), or the same
        already resampled as a :class:`~coat.heads.PreparedTargets` (what the training collator passes). Then
        ``loss = text_loss + sum(weight * expert_loss)``, with ``text_loss`` and ``expert_losses`` (a dict)
        also returned, and ``expert_predictions`` (target name -> (n_spans, F, dim) raw head scores).
        """
        self._check_inputs(input_ids, attention_mask, kwargs)
        batch = self.insert_thinking(input_ids, attention_mask, labels)
        self._captured, self._capturing = None, True
        try:
            out = self.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                  labels=batch.labels, **kwargs)
        finally:
            self._capturing = False
        hidden, self._captured = self._captured, None
        if hidden is None:
            raise RuntimeError("the thinking layer hook did not fire; is thinking_layer inside the model?")
        states, states_mask = self._gather_thinking(hidden, batch)
        out = coat_output_class(type(out))(**out, thinking_states=states, thinking_mask=states_mask,
                                           coat_attention_mask=batch.attention_mask)
        if expert_targets is not None:
            self._add_expert_losses(out, expert_targets, hidden, batch)
        return out

    def _add_expert_losses(self, out, expert_targets: dict, hidden: torch.Tensor, batch: ThinkingBatch) -> None:
        if self.heads is None:
            raise ValueError("expert_targets given but the model has no heads; call model.add_heads(specs) first")
        if self.num_thinking == 0:
            raise ValueError("expert_targets need thinking positions to read from; num_thinking is 0")
        # (n_spans, K, hidden): one thinking block per audio span, row-major, read straight from the layer output
        if batch.think_rows is None:
            blocks = hidden.new_zeros((0, self.num_thinking, hidden.shape[-1]))
        else:
            index = (batch.think_rows.to(hidden.device), batch.think_cols.to(hidden.device))
            blocks = hidden[index].reshape(-1, self.num_thinking, hidden.shape[-1])
        if not isinstance(expert_targets, PreparedTargets):  # the collator resamples in the data loader; else here
            expert_targets = prepare_active_targets(expert_targets, self.heads.specs, self.heads.config,
                                                    self.expert_weights)
        values, masks = expert_targets.values, expert_targets.masks
        for name, value in values.items():
            if value.shape[0] != blocks.shape[0]:
                raise ValueError(f"expert_targets[{name!r}] has {value.shape[0]} entries but the batch has "
                                 f"{blocks.shape[0]} audio spans (one target per audio span, row by row)")
        predictions = self.heads(blocks.float(), names=list(values)) if values else {}
        aux, per_target = distillation_losses(predictions, values, masks, self.heads.specs, self.expert_weights)
        text_loss = out.get("loss")
        out["text_loss"] = text_loss
        out["expert_losses"] = per_target
        out["expert_predictions"] = predictions
        out["loss"] = aux if text_loss is None else text_loss + aux.to(text_loss.dtype)

    def _gather_thinking(self, hidden: torch.Tensor, batch: ThinkingBatch):
        """(batch, max_spans * K, hidden) states at the thinking positions and their (batch, max_spans * K) mask,
        from the positions :func:`insert_thinking` recorded (no search, no extra host sync)."""
        rows, width = batch.input_ids.shape[0], self.num_thinking * batch.max_spans
        states = hidden.new_zeros((rows, width, hidden.shape[-1]))
        mask = torch.zeros((rows, width), dtype=torch.bool, device=hidden.device)
        if batch.think_rows is None or width == 0:
            return states, mask
        r, slots = batch.think_rows.to(hidden.device), batch.think_slots.to(hidden.device)
        states = states.index_put((r, slots), hidden[r, batch.think_cols.to(hidden.device)])
        mask[r, slots] = True
        return states, mask

    # ------------------------------------------------------------------ generate
    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                 **kwargs):
        """The base model's ``generate()`` on the inputs with thinking inserted: one prefill, K longer per span.

        Returns what the base returns, with ``sequences`` in the caller's coordinates: the caller's
        ``input_ids`` followed by the new tokens, so ``out[:, input_ids.shape[1]:]`` is the answer.
        """
        self._check_inputs(input_ids, attention_mask, kwargs)
        batch = self.insert_thinking(input_ids, attention_mask)
        kwargs = self._thinking_safe_penalty(kwargs)
        out = self.base_model.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask, **kwargs)
        sequences = out if isinstance(out, torch.Tensor) else out.sequences
        restored = torch.cat([input_ids.to(sequences.device), sequences[:, batch.input_ids.shape[1]:]], dim=1)
        if isinstance(out, torch.Tensor):
            return restored
        out.sequences = restored
        return out

    def _thinking_safe_penalty(self, kwargs: dict) -> dict:
        """transformers' repetition penalty gathers logits at every prompt id, and thinking ids lie beyond the
        vocabulary: replace it by one that skips them (same penalty on every real token)."""
        gen_config = kwargs.get("generation_config") or getattr(self.base_model, "generation_config", None)
        penalty = kwargs.get("repetition_penalty", getattr(gen_config, "repetition_penalty", None))
        if penalty is None or penalty == 1.0 or self.num_thinking == 0:
            return kwargs
        kwargs = dict(kwargs, repetition_penalty=1.0)
        processors = LogitsProcessorList(kwargs.get("logits_processor") or [])
        processors.append(_RepetitionPenaltyWithoutThinking(float(penalty), self.thinking_embedding.offset))
        kwargs["logits_processor"] = processors
        return kwargs

class _RepetitionPenaltyWithoutThinking(RepetitionPenaltyLogitsProcessor):
    def __init__(self, penalty: float, vocab_offset: int):
        super().__init__(penalty=penalty)
        self.vocab_offset = vocab_offset

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # A thinking id is replaced by the row's first id, which the row penalises anyway.
        ids = torch.where(input_ids >= min(self.vocab_offset, scores.shape[-1]), input_ids[:, :1], input_ids)
        return super().__call__(ids, scores)


_COAT_FIELDS = ("thinking_states", "thinking_mask", "coat_attention_mask", "text_loss", "expert_losses",
                "expert_predictions")


@functools.cache
def coat_output_class(base_class: type) -> type:
    """The base model's output class plus CoAT's fields, as a real dataclass subclass: DDP and other code that
    rebuilds outputs from their declared fields (pytree flatten/unflatten) keeps CoAT's fields."""
    namespace = {"__annotations__": dict.fromkeys(_COAT_FIELDS, Any), **dict.fromkeys(_COAT_FIELDS),
                 "__module__": __name__, "__doc__": f"{base_class.__name__} with CoAT's fields {_COAT_FIELDS}."}
    return dataclass(type(f"CoAT{base_class.__name__}", (base_class,), namespace))


def wrap(model: nn.Module, config: CoATConfig | None = None, **kwargs) -> CoATModel:
    """Give ``model`` (any supported HF audio LM) a block of K thinking positions after its audio tokens.

    ``config`` defaults to ``CoATConfig()``; keyword arguments override its fields, e.g.
    ``coat.wrap(model, num_thinking=8)``.
    """
    if config is None:
        config = CoATConfig(**kwargs)
    elif kwargs:
        config = CoATConfig(**{**config.to_dict(), **kwargs})
    return CoATModel(model, config)
