"""CoAT under sharded training: FSDP2 (``torch.distributed.fsdp.fully_shard``) and DeepSpeed ZeRO-3.

DDP keeps a full copy of every weight on every process, so CoAT needs nothing there. Sharding leaves each
process a piece of each weight, and the places where CoAT reads or writes whole weights must gather or scatter:

- **Initialising the thinking table** from the base embedding's statistics (:func:`embedding_statistics`): under
  FSDP2 the embedding weight is a ``DTensor`` holding this process's rows, under ZeRO-3 (``deepspeed.zero.Init``)
  an empty local tensor. Both are gathered first, so every process computes the statistics of the whole table,
  bit for bit what one process computes. ``coat train`` wraps the model before the Trainer shards it, so there the
  weight is still whole; the gather is for models that arrive sharded (ZeRO-3 loading, your own loop).
- **Saving**: :func:`full_tensor` and :func:`gathered` give the whole thinking table, heads and LoRA weights;
  every process must take part (they are collectives) and one writes (``save_pretrained(is_main_process=...)``).
- **Loading and resuming**: :func:`copy_full_` scatters a whole saved tensor into a sharded parameter.
- **Consistent replicas**: :func:`broadcast_coat_parameters` makes every process start from rank 0's thinking
  table, heads and LoRA before the Trainer shards them (FSDP2 keeps each process's own piece of its own copy).
- **What FSDP wraps**: :func:`fsdp_wrap_classes`, the decoder, audio-encoder (and vision) layer classes, so
  accelerate's ``TRANSFORMER_BASED_WRAP`` shards layer by layer without a class list per family.
- **FSDP and DeepSpeed on a CPU-only host** (:func:`enable_sharding_on_cpu`): accelerate 1.x turns them on only
  for accelerator devices, and on CPU silently trains with DDP instead; this sets accelerate's state to the config's
  plugin, so the same ``configs/accelerate/*.yaml`` run (and are tested) on CPU processes over gloo.
- **Checkpoints of the Trainer** (:class:`AdapterCheckpoints`): a checkpoint holds the CoAT adapter, gathered and
  written once; resuming scatters it back into the sharded model.

What stays frozen: the base model (its audio tower included) unless a stage trains LoRA in it; Qwen2.5-Omni's
talker is not part of the wrapped module at all (CoAT wraps the Thinker), so it is never trained nor saved.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator

import torch
from torch import nn


# ----------------------------------------------------------------------------------------------------- what is sharded
def is_dtensor(tensor) -> bool:
    """An FSDP2 (or tensor-parallel) parameter: a ``DTensor`` holding this process's piece."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch built without distributed support
        return False
    return isinstance(tensor, DTensor)


def is_zero3(param) -> bool:
    """A DeepSpeed ZeRO-3 parameter (``deepspeed.zero.Init`` or the ZeRO-3 engine): its local data is a partition
    (or empty), the whole tensor exists only inside ``GatheredParameters`` or its module's forward."""
    return hasattr(param, "ds_id")


def is_sharded(tensor) -> bool:
    return is_dtensor(tensor) or is_zero3(tensor)


@contextlib.contextmanager
def gathered(params: Iterable[torch.Tensor], modifier_rank: int | None = None) -> Iterator[None]:
    """Inside: every ZeRO-3 parameter of ``params`` is whole on every process (``deepspeed.zero.GatheredParameters``;
    with ``modifier_rank`` r, what rank r writes into them is kept and partitioned again on exit). Other parameters
    (plain, DTensor) are left as they are: nothing happens when there is no ZeRO-3 parameter. A collective: every
    process must enter it with the same parameters."""
    zero3 = [p for p in params if is_zero3(p)]
    if not zero3:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(zero3, modifier_rank=modifier_rank):
        yield


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor, detached: a DTensor's pieces all-gathered (a collective: every process must call it), a
    plain tensor as it is. A ZeRO-3 parameter must be read inside :func:`gathered`."""
    tensor = tensor.detach()
    if is_dtensor(tensor):
        return tensor.full_tensor()
    if is_zero3(tensor) and tensor.numel() != _zero3_numel(tensor):
        raise RuntimeError("a ZeRO-3 partitioned parameter is read outside coat.distributed.gathered(); gather it "
                           "first (its local data is only this process's partition)")
    return tensor


def cpu_copy(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor (see :func:`full_tensor`) as a CPU tensor of its own. A copy, because FSDP2 registers the
    unsharded parameters of a module between its forward and its reshard, and frees their storage when it reshards:
    a view kept from then would point at freed memory."""
    return full_tensor(tensor).to("cpu", copy=True).contiguous()


def full_shape(param: torch.Tensor) -> torch.Size:
    """The shape of the whole tensor (a DTensor's ``shape`` already is; a ZeRO-3 partition's is its ``ds_shape``)."""
    return param.ds_shape if is_zero3(param) else param.shape


def _zero3_numel(param) -> int:
    return int(param.ds_numel) if hasattr(param, "ds_numel") else param.numel()


def copy_full_(param: torch.Tensor, value: torch.Tensor) -> None:
    """Copy the whole tensor ``value`` into ``param``, whatever its layout: a DTensor gets its own piece of
    ``value`` (``distribute_tensor`` over the parameter's mesh and placements: a collective), a plain tensor (or a
    ZeRO-3 parameter inside ``gathered(..., modifier_rank=0)``) the whole of it. Shapes must match."""
    shape = tuple(param.shape)
    if tuple(value.shape) != shape:
        raise ValueError(f"a saved tensor of shape {tuple(value.shape)} does not fit a parameter of shape {shape}")
    with torch.no_grad():
        if is_dtensor(param):
            from torch.distributed.tensor import distribute_tensor

            local = value.to(device=param.to_local().device, dtype=param.dtype)
            param.copy_(distribute_tensor(local, param.device_mesh, param.placements))
        else:
            param.copy_(value.to(device=param.device, dtype=param.dtype))


def load_full_state_(params: dict[str, torch.Tensor], state: dict[str, torch.Tensor], what: str) -> None:
    """Strict ``load_state_dict`` for parameters that may be sharded (FSDP2 DTensors, ZeRO-3 partitions): each whole
    saved tensor of ``state`` is scattered into the parameter of the same name in ``params``. ``what`` names them in
    errors. Every process must call it (collectives)."""
    missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
    if missing or unexpected:
        raise ValueError(f"the saved {what} do not match this model: missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]}")
    with gathered(params.values(), modifier_rank=0):
        for name, param in params.items():
            copy_full_(param, state[name])


def lora_parameters(module: nn.Module, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    """The LoRA parameters of ``module`` under the names PEFT saves them by (``get_peft_model_state_dict`` drops
    the adapter's name: ``...lora_A.default.weight`` is saved as ``...lora_A.weight``)."""
    return {name.replace(f".{adapter_name}.", "."): param for name, param in module.named_parameters()
            if "lora_" in name}


# ----------------------------------------------------------------------------------------------------- init
def embedding_statistics(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden,) float32 mean and standard deviation over the rows of an embedding table ``(vocab, hidden)``.

    A DTensor shard (FSDP2) or a ZeRO-3 partition is gathered first: the statistics are those of the whole table,
    the same bits as one process gets, at the price of one whole table per process for the moment it takes (a
    collective: every process must call it, as every process wraps its model)."""
    with gathered([weight]):
        ref = full_tensor(weight).float()
        return ref.mean(0), ref.std(0)


def broadcast_coat_parameters(params: Iterable[torch.Tensor]) -> None:
    """Make every process hold rank 0's values of ``params`` (CoAT's thinking table, heads, LoRA) before sharding.

    DDP broadcasts a model when it wraps it and ZeRO-3 when it partitions it, but FSDP2 keeps each process's own
    piece of each process's own copy: a random initialisation that differs between processes (another seed, RNG
    drawn in a different order) would train a table stitched from different tables. Nothing happens outside a
    process group of two or more; parameters already sharded are left alone, and so are parameters on the meta device
    (FSDP's ``cpu_ram_efficient_loading`` gives every process but the first a meta model and broadcasts rank 0's
    whole state into it when it shards it)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    with torch.no_grad():
        for param in params:
            if not is_sharded(param) and not param.is_meta:  # meta: FSDP's cpu_ram_efficient_loading fills it
                dist.broadcast(param.data, src=0)


def is_sharded_model(model: nn.Module) -> bool:
    """Whether any parameter of ``model`` is sharded (a Trainer under FSDP2 or ZeRO-3 prepared it)."""
    return any(is_sharded(param) for param in model.parameters())


def free_memory() -> None:
    """Collect what the caller just dropped (a sharded model and its Trainer hold reference cycles) and give cached
    accelerator memory back, before the next model is built."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------------- FSDP
def fsdp_wrap_classes(model) -> list[str]:
    """Class names FSDP shards as units (accelerate's ``TRANSFORMER_BASED_WRAP`` reads a model's
    ``_no_split_modules``): the decoder layers and audio-encoder layers the adapter finds, and the base model's own
    ``_no_split_modules`` (Qwen2.5-Omni's vision blocks, for one). Takes a :class:`~coat.model.CoATModel`. None once
    the model is sharded: ``fully_shard`` renames the classes it wraps, and a later stage's Trainer must not look
    for them (accelerate then leaves the sharded model as it is)."""
    from torch.distributed.fsdp import FSDPModule

    if any(isinstance(module, FSDPModule) for module in model.modules()):
        return []
    names = [type(model.adapter.decoder_layers(model.base_model)[0]).__name__]
    with contextlib.suppress(AttributeError, IndexError, TypeError):
        names.append(type(model.adapter.audio_layers(model.base_model)[0]).__name__)
    names += list(getattr(model.base_model, "_no_split_modules", None) or [])
    return list(dict.fromkeys(names))


def enable_sharding_on_cpu(deepspeed_plugin=None) -> str | None:
    """Under ``accelerate launch`` with an FSDP or DeepSpeed config on a host without CUDA, set accelerate's state to
    FSDP or DeepSpeed. Returns which it set (``"FSDP"``, ``"DEEPSPEED"``) or None.

    accelerate (1.x) forms a gloo group of CPU processes but turns FSDP and DeepSpeed on only for accelerator devices,
    so such a config on CPU silently trains with DDP. torch's ``fully_shard`` runs on CPU over gloo, and so does
    DeepSpeed with its CPU accelerator (``DS_ACCELERATOR=cpu``); this gives accelerate's state the plugin the
    launcher's environment describes (``FSDP_*`` / ``ACCELERATE_DEEPSPEED_*`` variables) and its distributed type, so
    the Trainer prepares, checkpoints and resumes through its FSDP or DeepSpeed paths, and these are tested on CPU.
    Call it before the Trainer builds its Accelerator (with the ``DeepSpeedPlugin`` its TrainingArguments made, if
    any); it does nothing with CUDA or without such a launch."""
    use_fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    use_deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    if not (use_fsdp or use_deepspeed) or torch.cuda.is_available():
        return None
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin

    Accelerator(cpu=True)  # forms (or joins) the CPU process group
    state = AcceleratorState()
    if state.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        return state.distributed_type.value
    if state.distributed_type != DistributedType.MULTI_CPU:
        return None
    if use_fsdp:
        state.fsdp_plugin = FullyShardedDataParallelPlugin()
        kind = DistributedType.FSDP
    else:  # what AcceleratorState does for DeepSpeed on an accelerator device
        plugin = deepspeed_plugin or DeepSpeedPlugin()
        plugin.set_mixed_precision(state.mixed_precision)
        plugin.select(_from_accelerator_state=True)
        state.deepspeed_plugins = plugin
        kind = DistributedType.DEEPSPEED
    # both shared states: every later AcceleratorState() copies the PartialState's distributed type over its own
    PartialState().distributed_type = state.distributed_type = kind
    return kind.value


# ----------------------------------------------------------------------------------------------------- Trainer
class AdapterCheckpoints:
    """A ``transformers.Trainer`` mixin: checkpoints hold only the CoAT adapter, gathered on every process and
    written by the one that saves (``args.should_save``); resuming loads it back into the (sharded) model.

    Without it, the Trainer would gather every base weight for each checkpoint under FSDP ``FULL_STATE_DICT`` and
    under DeepSpeed (``stage3_gather_16bit_weights_on_model_save``), and every process would write the adapter.
    Optimizer, scheduler and RNG states stay the Trainer's own (under FSDP and DeepSpeed, sharded files). Under
    DeepSpeed the Trainer resumes the model from DeepSpeed's own checkpoint files, which hold the CoAT weights too.
    """

    def create_accelerator_and_postprocess(self):
        # TrainingArguments has just reset accelerate's state: set it before the Trainer's Accelerator reads it. That
        # Accelerator then takes the DeepSpeed plugin from the state (a second one given to it would be an error).
        plugin = self.args.deepspeed_plugin
        if enable_sharding_on_cpu(plugin) == "DEEPSPEED":
            self.args.deepspeed_plugin = None
        try:
            super().create_accelerator_and_postprocess()
        finally:
            self.args.deepspeed_plugin = plugin

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        output_dir = output_dir or self.args.output_dir
        self.accelerator.unwrap_model(self.model).save_pretrained(output_dir, is_main_process=self.args.should_save)
        # the adapter replaces the checkpoint folder whole: no process writes its RNG or optimizer state into it first
        self.accelerator.wait_for_everyone()

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        self.save_model(output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        self.accelerator.unwrap_model(model or self.model).load_adapter_weights(resume_from_checkpoint)
