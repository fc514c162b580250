"""What a :class:`~coat.model.CoATModel` does besides thinking: PEFT LoRA, the adapter folder, unwrapping.

The adapter folder holds only what CoAT adds (docs/design.md, decision 7): ``coat_config.json`` (the
:class:`~coat.config.CoATConfig`, the base model's type, hidden and vocabulary sizes, the heads' config and
whether LoRA belongs to it), ``coat_model.safetensors`` (the thinking table and the expert heads) and, with LoRA,
a PEFT folder ``lora/``. It is written whole under a temporary name (:func:`coat.files.atomic_dir`), checked
before anything is loaded, and never holds NaN/inf weights. ``CoATModel`` gets these methods from
:class:`ModelIOMixin`; the functions below also serve code that checks a folder without a model (training's
resume).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from coat import distributed
from coat.adapters import get_adapter
from coat.config import CoATConfig
from coat.files import atomic_dir
from coat.heads import ExpertHeads
from coat.thinking import ThinkingEmbedding

CONFIG_NAME = "coat_config.json"
WEIGHTS_NAME = "coat_model.safetensors"
LORA_DIR = "lora"  # a PEFT adapter folder (adapter_config.json + adapter_model.safetensors)
LORA_NAME = "adapter_model.safetensors"
LORA_CONFIG_NAME = "adapter_config.json"
ADAPTER_ENTRIES = (CONFIG_NAME, WEIGHTS_NAME, LORA_DIR)


def lora_target_pattern(root: nn.Module, layers: nn.ModuleList, names) -> str:
    """A PEFT ``target_modules`` regex, relative to ``root``, for the Linear layers called one of ``names`` inside
    ``layers`` (a model's decoder or audio encoder layers). A name the layers lack is an error."""
    path = next(n for n, m in root.named_modules() if m is layers)
    found = {n.rsplit(".", 1)[-1] for n, m in layers.named_modules() if isinstance(m, nn.Linear)}
    missing = sorted(set(names) - found)
    if missing:
        raise ValueError(f"no LoRA target(s) {missing} in {path}; its Linear layers are {sorted(found)}")
    return rf"{re.escape(path)}\.\d+\..*\b({'|'.join(map(re.escape, names))})"


def read_adapter_config(path: str | os.PathLike) -> dict[str, Any]:
    """The ``coat_config.json`` of the adapter folder ``path``; a missing or unreadable one is an error naming it."""
    path = Path(path)
    file = path / CONFIG_NAME
    if not file.is_file():
        raise FileNotFoundError(f"{path} holds no {CONFIG_NAME}; is it a folder written by "
                                "CoATModel.save_pretrained?")
    try:
        meta = json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{file} is not valid JSON ({err}); the adapter is damaged: save or train it again") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{file} does not hold an adapter config (a JSON object)")
    return meta


def adapter_has_lora(path: str | os.PathLike, meta: dict[str, Any]) -> bool:
    """Whether LoRA is part of the adapter: its config says so (adapters saved before that key existed: whether a
    ``lora/`` folder with its config is there)."""
    if "lora" in meta:
        return bool(meta["lora"])
    return (Path(path) / LORA_DIR / LORA_CONFIG_NAME).is_file()


def adapter_missing_parts(path: str | os.PathLike, meta: dict[str, Any] | None = None) -> list[str]:
    """What the adapter folder ``path`` lacks of what its config names (empty: complete). A part is missing when its
    file is absent or empty."""
    path = Path(path)
    if meta is None:
        try:
            meta = read_adapter_config(path)
        except (OSError, ValueError) as err:
            return [str(err)]
    files = [WEIGHTS_NAME]
    if adapter_has_lora(path, meta):
        files += [f"{LORA_DIR}/{LORA_CONFIG_NAME}", f"{LORA_DIR}/{LORA_NAME}"]
    missing = []
    for name in files:
        file = path / name
        if not file.is_file():
            missing.append(f"{name} is missing")
        elif file.stat().st_size == 0:
            missing.append(f"{name} is empty")
    return missing


def _load_weights(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types for damaged files
        raise ValueError(f"{file} cannot be read ({type(err).__name__}: {err}); the adapter is damaged: save or "
                         "train it again") from None


Model = TypeVar("Model", bound="ModelIOMixin")


class ModelIOMixin:
    """LoRA, save / load and unwrap of a :class:`~coat.model.CoATModel` (which sets ``base_model``, ``adapter``,
    ``config``, ``heads``, ``expert_weights``, ``lora_config``, ``thinking_embedding`` and the base's own
    ``requires_grad`` flags ``_base_flags``)."""

    def add_lora(self, r: int = 16, alpha: int = 32, dropout: float = 0.05,
                 target_modules: list[str] | None = None, audio_target_modules: list[str] | None = None):
        """Inject PEFT LoRA into the language model's decoder layers and, if asked, the audio encoder's layers.

        ``target_modules``: module names inside the decoder layers (default: the adapter's, q/k/v/o
        projections). ``audio_target_modules``: module names inside the audio encoder's layers (the adapter's
        ``audio_layers``), e.g. q/k/v/out_proj, fc1, fc2; default none: the audio encoder stays as it is. A name
        the layers lack is an error. Returns the ``peft.LoraConfig``. LoRA weights start trainable; the rest keeps
        its flags.
        """
        import peft

        if self.lora_config is not None:
            raise ValueError("this CoATModel already has LoRA")
        groups = [(self.adapter.decoder_layers(self.base_model), list(target_modules or
                                                                       self.adapter.lora_target_modules))]
        if audio_target_modules:
            try:
                audio_layers = self.adapter.audio_layers(self.base_model)
            except AttributeError:
                raise ValueError(f"the {self.adapter.model_type} adapter finds no audio encoder layers in "
                                 f"{type(self.base_model).__name__}; leave audio_target_modules empty") from None
            groups.append((audio_layers, list(audio_target_modules)))
        pattern = "|".join(lora_target_pattern(self.base_model, layers, names) for layers, names in groups)
        config = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=pattern)
        flags = {id(p): p.requires_grad for p in self.parameters()}
        peft.inject_adapter_in_model(config, self.base_model)
        self.base_model.train(self.base_model.training)  # new LoRA dropouts start in train mode: match the model
        for param in self.parameters():  # inject_adapter_in_model freezes everything else: put flags back
            if id(param) in flags:
                param.requires_grad_(flags[id(param)])
        self.lora_config = config
        return config

    # ------------------------------------------------------------------ save / load
    def coat_state_dict(self) -> dict[str, torch.Tensor]:
        """Only what CoAT adds (the base weights are the user's and stay where they are), whole also when the model
        is sharded (FSDP2, ZeRO-3: then every process must call it, see coat.distributed)."""
        with distributed.gathered(self.coat_parameters(("thinking", "heads"))):
            state = {"thinking": distributed.cpu_copy(self.thinking_embedding.thinking).float()}
            if self.heads is not None:
                state.update({f"heads.{k}": distributed.cpu_copy(v) for k, v in self.heads.state_dict().items()})
        return state

    def save_pretrained(self, path: str | os.PathLike, is_main_process: bool = True) -> None:
        """Write the adapter into ``path`` as one unit: ``coat_config.json``, ``coat_model.safetensors`` and, when the
        model has LoRA, ``lora/``. The folder is written under a temporary name and replaces ``path`` whole, so a
        kill leaves the old adapter or the new one, and nothing of an older save (a stale ``lora/``) survives.
        ``path`` must be new, empty or an adapter folder; weights that are not finite are an error, not a file.
        A sharded model (FSDP2, ZeRO-3) is gathered: call it on every process, with ``is_main_process`` true on the
        one that writes (as for transformers' ``save_pretrained``)."""
        path = Path(path)
        if path.is_dir():
            foreign = sorted(p.name for p in path.iterdir() if p.name not in ADAPTER_ENTRIES
                             and not (p.name.startswith(".") and p.name.endswith(".tmp")))
            if foreign:
                raise FileExistsError(f"{path} holds files that are not part of a CoAT adapter "
                                      f"({', '.join(foreign[:5])}); save_pretrained replaces the whole folder: give "
                                      "the adapter a folder of its own")
        elif path.exists():
            raise FileExistsError(f"{path} is a file, not a folder")
        state = self.coat_state_dict()
        lora_state = None
        if self.lora_config is not None:
            import peft

            with distributed.gathered(self.coat_parameters(("lora",))):
                lora_state = {k: distributed.cpu_copy(v)
                              for k, v in peft.get_peft_model_state_dict(self.base_model).items()}
        for name, tensor in [*state.items(), *(lora_state or {}).items()]:
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise FloatingPointError(f"not saving the adapter to {path}: weight {name!r} holds NaN/inf values "
                                         "(training diverged or its data was not finite)")
        meta = {
            **self.config.to_dict(),
            "base_model_type": self.base_model.config.model_type,
            "hidden_size": self.hidden_size,
            "vocab_offset": self.thinking_embedding.offset,
            "lora": lora_state is not None,
        }
        if self.heads is not None:
            meta["heads"] = {**self.heads.to_dict(), "weights": self.expert_weights}
        if not is_main_process:
            return
        with atomic_dir(path, replace=True) as tmp:
            save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
            if lora_state is not None:
                (tmp / LORA_DIR).mkdir()
                save_file(lora_state, str(tmp / LORA_DIR / LORA_NAME), metadata={"format": "pt"})
                (tmp / LORA_DIR / LORA_CONFIG_NAME).write_text(
                    json.dumps(self.lora_config.to_dict(), indent=2, default=list) + "\n")
            (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls: type[Model], base_model: nn.Module, path: str | os.PathLike, **overrides) -> Model:
        """Wrap ``base_model`` with the CoAT adapter saved at ``path`` (identical logits to the saved model).

        The adapter is checked before the base model is touched (its config, that every part its config names is
        there, that it belongs to this kind and size of model); if loading fails later, the base is unwrapped again.
        """
        path = Path(path)
        meta = read_adapter_config(path)
        adapter = get_adapter(base_model)
        target = adapter.text_model(base_model)
        if meta.get("base_model_type") != target.config.model_type:
            raise ValueError(f"the CoAT adapter at {path} was trained on a {meta.get('base_model_type')!r} model, "
                             f"not on this {target.config.model_type!r} model")
        hidden = target.get_input_embeddings().embedding_dim
        if meta.get("hidden_size") != hidden:
            raise ValueError(f"the CoAT adapter at {path} has hidden size {meta.get('hidden_size')}, this base model "
                             f"has {hidden}: it belongs to another model size")
        embedding = target.get_input_embeddings()
        vocab = (embedding.base if isinstance(embedding, ThinkingEmbedding) else embedding).num_embeddings
        if meta.get("vocab_offset", vocab) != vocab:
            raise ValueError(f"the CoAT adapter at {path} was trained on a base model with {meta['vocab_offset']} "
                             f"input embeddings, this one has {vocab}: its thinking ids would be read as other tokens "
                             "(another tokenizer or a resized vocabulary)")
        missing = adapter_missing_parts(path, meta)
        if missing:
            raise FileNotFoundError(f"the CoAT adapter at {path} is incomplete: {'; '.join(missing)}. Save or train "
                                    "it again")
        names = {f.name for f in fields(CoATConfig)}
        config = CoATConfig(**{**{k: v for k, v in meta.items() if k in names}, **overrides})
        model = cls(base_model, config, adapter=adapter)
        try:
            if "heads" in meta:
                heads = ExpertHeads.from_dict(meta["heads"])
                model.add_heads(list(heads.specs.values()), heads.config, meta["heads"].get("weights"))
            if adapter_has_lora(path, meta):
                import peft

                lora = peft.LoraConfig.from_pretrained(str(path / LORA_DIR))
                peft.inject_adapter_in_model(lora, model.base_model)
                model.base_model.train(model.base_model.training)
                model.lora_config = lora
                model.set_trainable(())  # a loaded adapter is for inference until the caller says otherwise
            elif (path / LORA_DIR).exists():
                warnings.warn(f"ignoring {path / LORA_DIR}: the adapter's {CONFIG_NAME} says it has no LoRA",
                              UserWarning, stacklevel=2)
            model.load_adapter_weights(path)
        except BaseException:
            model.unwrap()  # the base model as it was before this call
            raise
        return model

    def load_adapter_weights(self, path: str | os.PathLike) -> None:
        """Load the weights saved at ``path`` into this model (same structure: thinking, heads, LoRA). The saved
        adapter and this model must agree on whether LoRA is part of it."""
        path = Path(path)
        meta = read_adapter_config(path)
        has_lora = adapter_has_lora(path, meta)
        if has_lora != (self.lora_config is not None):
            raise ValueError(f"the CoAT adapter at {path} {'has' if has_lora else 'has no'} LoRA but this model "
                             f"{'has none' if has_lora else 'has LoRA'}; load it with CoATModel.from_pretrained")
        missing = adapter_missing_parts(path, meta)
        if missing:
            raise FileNotFoundError(f"the CoAT adapter at {path} is incomplete: {'; '.join(missing)}")
        self.load_coat_state_dict(_load_weights(path / WEIGHTS_NAME))
        if has_lora:
            import peft

            lora_file = path / LORA_DIR / LORA_NAME
            if any(map(distributed.is_sharded, self.coat_parameters(("lora",)))):  # FSDP2 / ZeRO-3: scatter
                distributed.load_full_state_(distributed.lora_parameters(self.base_model), _load_weights(lora_file),
                                             f"LoRA weights at {lora_file}")
                return
            result = peft.set_peft_model_state_dict(self.base_model, _load_weights(lora_file))
            missing = [k for k in result.missing_keys if "lora_" in k]
            if missing or result.unexpected_keys:
                raise ValueError(f"LoRA weights at {lora_file} do not match this model: missing {missing[:3]}, "
                                 f"unexpected {list(result.unexpected_keys)[:3]}")

    def load_coat_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        table = state["thinking"]
        expected = distributed.full_shape(self.thinking_embedding.thinking)
        if table.shape != expected:
            raise ValueError(f"saved thinking table has shape {tuple(table.shape)}, expected {tuple(expected)}")
        with distributed.gathered([self.thinking_embedding.thinking], modifier_rank=0):
            distributed.copy_full_(self.thinking_embedding.thinking, table)
        head_state = {k[len("heads."):]: v for k, v in state.items() if k.startswith("heads.")}
        if self.heads is not None and any(map(distributed.is_sharded, self.heads.parameters())):
            distributed.load_full_state_(dict(self.heads.named_parameters()), head_state, "expert heads")
        elif self.heads is not None:
            self.heads.load_state_dict(head_state)
        elif head_state:
            raise ValueError("the saved adapter has head weights but no heads in its config")

    def unwrap(self) -> nn.Module:
        """Remove CoAT from the base model (its embedding, hook and LoRA layers) and return it as it was."""
        self._hook.remove()
        self.base_model.set_input_embeddings(self.thinking_embedding.base)
        if self.lora_config is not None or any("lora_" in n for n, _ in self.base_model.named_parameters()):
            from peft.tuners.tuners_utils import BaseTunerLayer

            for name, module in list(self.base_model.named_modules()):
                if isinstance(module, BaseTunerLayer):
                    parent, _, child = name.rpartition(".")
                    setattr(self.base_model.get_submodule(parent), child, module.get_base_layer())
            if hasattr(self.base_model, "peft_config"):
                del self.base_model.peft_config
            self.lora_config = None
        for name, param in self.base_model.named_parameters():
            if name in self._base_flags:
                param.requires_grad_(self._base_flags[name])
        return self.base_model
