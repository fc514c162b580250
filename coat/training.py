"""The distillation training recipe behind ``coat train`` (docs/design.md, decisions 5 and 6).

One readable file, in the order it runs: the config dataclasses; :class:`TrainingRecipe` with its three steps,
``setup`` (data, expert targets, model with thinking table, heads and LoRA), ``train`` (a schedule of stages, each
a :class:`CoATTrainer` run over the parameters it names) and ``save`` (the CoAT adapter only: thinking table,
heads, LoRA); :func:`run_training` runs them and returns a :class:`TrainResult`. The text loss and each expert loss
are logged. The demo's pre-training runs on the same :class:`CoATTrainer`.

    coat train configs/tiny.yaml training.output_dir=runs/tiny
    accelerate launch -m coat train configs/qwen2_audio.yaml

Output layout (``data.synth`` data lives next to the target caches, see :func:`coat.data.config.open_data`):
``<output_dir>/stage-<i>-<name>/checkpoint-*/`` (Trainer checkpoints holding the CoAT
adapter, optimizer, scheduler and RNG states), ``<output_dir>/stage-<i>-<name>/adapter/`` (the adapter at the
end of that stage; a stage whose adapter exists is not run again), ``<output_dir>/adapter/`` (the final
adapter, for ``coat.CoATModel.from_pretrained``), ``<output_dir>/log_history.json`` and the resolved
``<output_dir>/config.yaml``. Running the same command again resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import yaml
from accelerate import PartialState
from transformers import PrinterCallback, Trainer, TrainingArguments, set_seed

from coat.config import CoATConfig
from coat.data.collate import CoATCollator, QADataset
from coat.data.config import DataConfig, open_data
from coat.distributed import AdapterCheckpoints, broadcast_coat_parameters, free_memory, is_sharded_model
from coat.experts.base import ExpertConfig
from coat.experts.config import TargetsConfig, load_experts, target_caches
from coat.files import write_atomic
from coat.heads import HeadConfig
from coat.loading import ModelConfig, load_model_and_processor
from coat.model import wrap
from coat.model_io import adapter_missing_parts
from coat.progress import trainer_progress_callback
from coat.zoo import create_tiny_model

TRAINABLE_PARTS = ("thinking", "heads", "lora")
_FOLDER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # a stage's folder stays inside output_dir


@dataclass
class LoraSettings:
    """PEFT LoRA on the language model (and optionally the audio encoder)."""

    r: int = field(default=16, metadata={"help": "LoRA rank (0: no LoRA; a stage that trains lora needs r > 0)"})
    alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (the update is scaled by alpha / r)"})
    dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA input"})
    target_modules: list[str] | None = field(
        default=None, metadata={"help": "module names in the decoder layers (default: the adapter's q/k/v/o)"})
    audio_target_modules: list[str] | None = field(
        default=None, metadata={"help": "module names in the audio encoder's layers, e.g. [q_proj, k_proj, v_proj, "
                                        "out_proj, fc1, fc2] (default: none, the audio encoder stays frozen)"})


@dataclass
class StageConfig:
    """One stage of the schedule: what trains, for how long, at which learning rate."""

    name: str = field(default="stage", metadata={"help": "stage name: its folder is <output_dir>/stage-<i>-<name>"})
    train: list[str] = field(default_factory=lambda: ["thinking", "heads"],
                             metadata={"help": f"what trains in this stage, of {TRAINABLE_PARTS}"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the training data (unless max_steps > 0)"})
    max_steps: int = field(default=-1, metadata={"help": "overrides epochs when > 0"})
    learning_rate: float = field(default=1e-4, metadata={"help": "peak learning rate of this stage (AdamW)"})
    warmup: float = field(default=0.0, metadata={"help": "warmup steps (int) or a ratio of the stage in [0, 1)"})
    lr_scheduler: str = field(default="linear", metadata={"help": "transformers scheduler name: linear, cosine, "
                                                                   "constant, constant_with_warmup, ..."})

    def __post_init__(self):
        if not isinstance(self.name, str) or not _FOLDER_NAME.match(self.name) or ".." in self.name:
            raise ValueError(f"stage name {self.name!r} must be a folder name of letters, digits and _ . + - (it "
                             "names the stage's folder inside training.output_dir)")
        unknown = sorted(set(self.train) - set(TRAINABLE_PARTS))
        if unknown or not self.train:
            raise ValueError(f"stage {self.name!r}: train must list some of {TRAINABLE_PARTS}, got {self.train}")


def _default_stages() -> list[StageConfig]:
    return [StageConfig("thinking_and_heads", ["thinking", "heads"], learning_rate=1e-3),
            StageConfig("joint", ["thinking", "heads", "lora"], learning_rate=2e-4)]


@dataclass
class TrainingSettings:
    """The Trainer's settings shared by every stage."""

    output_dir: str = field(default="runs/train", metadata={"help": "stages, checkpoints and the final adapter/"})
    seed: int = field(default=0, metadata={"help": "seed of weights, data order and dropout (stage i: seed + i)"})
    per_device_batch_size: int = field(default=8, metadata={"help": "examples per batch on each process"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "batches per optimizer step"})
    bf16: bool = field(default=False, metadata={"help": "bfloat16 mixed precision"})
    fp16: bool = field(default=False, metadata={"help": "float16 mixed precision"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute activations: less memory"})
    logging_steps: int = field(default=10, metadata={"help": "optimizer steps between log lines"})
    save_steps: int = field(default=200, metadata={"help": "optimizer steps between checkpoints (resume points)"})
    save_total_limit: int = field(default=2, metadata={"help": "checkpoints kept per stage (older ones deleted)"})
    dataloader_num_workers: int = field(default=0, metadata={"help": "data loading processes (0: in the main one)"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm"})
    report_to: list[str] = field(default_factory=list, metadata={"help": "e.g. [tensorboard], [wandb]"})
    progress: bool = field(default=True, metadata={
        "help": "a progress bar per stage (a terminal bar, or a plain line every 30 s in a log file); off: only the "
                "log lines"})


@dataclass
class TrainConfig:
    """``coat train``'s config; every YAML key maps onto a field here (a typo is an error naming it)."""

    model: ModelConfig | None = field(default=None, metadata={"help": "the base LALM (required)"})
    coat: CoATConfig = field(default_factory=CoATConfig, metadata={"help": "the thinking block"})
    heads: HeadConfig = field(default_factory=HeadConfig, metadata={"help": "the expert heads (one per target)"})
    experts: list[ExpertConfig] = field(default_factory=list, metadata={"help": "names or {name, params, weight}"})
    targets: TargetsConfig = field(default_factory=TargetsConfig, metadata={
        "help": "the target caches (the same section as coat targets: the two compute and open the same caches)"})
    data: DataConfig | None = field(default=None, metadata={"help": "the training examples (required)"})
    lora: LoraSettings = field(default_factory=LoraSettings, metadata={"help": "LoRA settings"})
    stages: list[StageConfig] = field(default_factory=_default_stages, metadata={
        "help": "the schedule, run in order; default: thinking and heads at 1e-3, then jointly with LoRA at 2e-4"})
    training: TrainingSettings = field(default_factory=TrainingSettings, metadata={"help": "Trainer settings"})

    def __post_init__(self):
        self.experts = [ExpertConfig(name=e) if isinstance(e, str) else e for e in self.experts]
        if self.model is None:
            raise ValueError("model is required (model.name_or_path: a hub id or a local folder)")
        if self.data is None:
            raise ValueError("data is required (data.source: where the examples are, or data.synth)")
        if not self.stages:
            raise ValueError("stages must list at least one stage")
        if any("lora" in s.train for s in self.stages) and self.lora.r <= 0:
            raise ValueError("a stage trains lora but lora.r is not positive")


# ----------------------------------------------------------------------------------------------------- setup
def training_source(config: TrainConfig):
    """The training examples (:func:`coat.data.config.open_data`; synthetic data is written next to the target
    caches, so runs with the same data share the data and its targets)."""
    return open_data(config.data, config.targets.cache_dir)


def bad_audio(config: TrainConfig, source, caches, state) -> list[dict[str, str]]:
    """The examples whose audio fails ``targets.checks`` (the checks of ``coat targets``): ``[{id, reason, detail}]``.

    With experts, the target caches already checked every example and report the bad ones. Without (the pause and
    no-thinking baselines), each example is decoded and checked once, before training; the result is kept in
    ``<output_dir>/audio_checks.json`` for this audio and these checks, so a resumed run does not decode again."""
    from coat.data.checks import decode_and_check
    from coat.experts.cache import audio_fingerprint

    ids = source.ids()
    if caches:
        known = set(ids)
        found: dict[str, dict[str, str]] = {}
        for cache in caches:
            for id_, record in cache.bad().items():
                if id_ in known:
                    found.setdefault(id_, record)
        return [found[i] for i in ids if i in found]
    record_file = Path(config.training.output_dir) / "audio_checks.json"
    key = {"audio_fingerprint": audio_fingerprint(source), "checks": asdict(config.targets.checks)}
    with state.main_process_first():
        try:
            saved = json.loads(record_file.read_text())
        except (OSError, ValueError):
            saved = {}
        if {k: saved.get(k) for k in key} == key:
            return saved["bad"]
        if state.is_main_process:
            print(f"[coat train] checking the audio of {len(ids)} training examples (once; kept in {record_file})",
                  flush=True)
        with ThreadPoolExecutor(2) as pool:
            checked = pool.map(lambda i: decode_and_check(source, i, config.targets.checks)[2], range(len(ids)))
            bad = [{"id": ids[i], "reason": p[0], "detail": p[1]} for i, p in enumerate(checked) if p is not None]
        if state.is_main_process:
            write_atomic(record_file, json.dumps({**key, "bad": bad}, indent=2) + "\n")
    return bad


def leave_out_bad_audio(config: TrainConfig, source, bad: list[dict[str, str]], state):
    """``source`` without the ``bad`` examples; says which were left out and writes them to ``bad_audio.jsonl``."""
    from coat.data.sources import SubsetSource

    report = Path(config.training.output_dir) / "bad_audio.jsonl"
    if not bad:
        return source
    if state.is_main_process:
        write_atomic(report, "".join(json.dumps(r) + "\n" for r in bad))
        shown = ", ".join(f"{r['id']!r} ({r['reason']}: {r['detail']})" for r in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        print(f"[coat train] left out {len(bad)} of {len(source)} training example(s) with bad audio: {shown}{more};"
              f" see {report}", flush=True)
    if len(bad) == len(source):
        raise TrainingDataError(f"no training examples left: all {len(source)} have bad audio (see {report})")
    left_out = {r["id"] for r in bad}
    return SubsetSource(source, [i for i, id_ in enumerate(source.ids()) if id_ not in left_out])


def loss_weights(config: TrainConfig, experts) -> dict[str, float]:
    weights = {}
    for entry, expert in zip(config.experts, experts):
        names = [s.name for s in expert.specs()]
        unknown = sorted(set(entry.target_weights) - set(names))
        if unknown:
            raise ValueError(f"experts[{entry.name}].target_weights names unknown target(s) {unknown}; "
                             f"its targets: {names}")
        for name in names:
            weights[name] = float(entry.target_weights.get(name, entry.weight))
    return weights


def check_targets_made_in_training(config: TrainConfig, experts) -> None:
    """A target taken from the model's own audio tower in the forward (``computed_in="forward"``) is the target of
    the cached path only when the tower is the expert's (``encoder_source`` names the trained model) and frozen (no
    LoRA in it): say which setting to change otherwise."""
    for expert in experts:
        names = [s.name for s in expert.specs() if s.computed_in == "forward"]
        if not names:
            continue
        if config.lora.audio_target_modules and any("lora" in s.train for s in config.stages):
            raise ValueError(f"expert {expert.name!r}: target(s) {names} are read from the model's audio tower during "
                             "the forward, but lora.audio_target_modules trains that tower, so they would move with "
                             f"training; cache them instead: experts[{expert.name}].params.encoder_from: extraction")
        source = getattr(expert, "encoder_source", None)
        if source is not None and not same_model(source, config.model.name_or_path):
            raise ValueError(f"expert {expert.name!r}: target(s) {names} are read from the trained model's audio "
                             f"tower during the forward, but encoder_source is {source!r}, not model.name_or_path "
                             f"{config.model.name_or_path!r}; to distil another model's encoder, cache it: "
                             f"experts[{expert.name}].params.encoder_from: extraction")


def same_model(a: str, b: str) -> bool:
    """Whether two model sources (local folders or hub ids) name the same model."""
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.exists() or pb.exists():
        return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()
    return a.strip("/") == b.strip("/")


def build_model(config: TrainConfig, experts):
    """(CoATModel with heads and LoRA, processor)."""
    base, processor = load_model_and_processor(config.model)
    model = wrap(base, config.coat)
    specs = [spec for expert in experts for spec in expert.specs()]
    if specs:
        model.add_heads(specs, config.heads, loss_weights(config, experts))
    if any("lora" in stage.train for stage in config.stages):
        model.add_lora(config.lora.r, config.lora.alpha, config.lora.dropout, config.lora.target_modules,
                       config.lora.audio_target_modules)
    if config.training.gradient_checkpointing:
        model.base_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model, processor


# ----------------------------------------------------------------------------------------------------- resume
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_problem(path: Path) -> str | None:
    """Why the Trainer checkpoint at ``path`` cannot be resumed from (a kill while it was written), or None.

    Complete means: ``trainer_state.json`` is there and parses (the Trainer writes it last, after the adapter, the
    optimizer, scheduler and RNG states, whatever their layout: DDP, FSDP or DeepSpeed), no file is empty, and the
    adapter has every part its config names."""
    if not (path / "trainer_state.json").is_file():
        return "trainer_state.json missing"
    empty = sorted(f.relative_to(path).as_posix() for f in path.rglob("*") if f.is_file() and f.stat().st_size == 0)
    if empty:
        return f"{', '.join(empty[:3])} empty"
    try:
        json.loads((path / "trainer_state.json").read_text())
    except (ValueError, UnicodeDecodeError):
        return "trainer_state.json does not parse"
    parts = adapter_missing_parts(path)
    return "; ".join(parts) if parts else None


def last_complete_checkpoint(stage_dir: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest complete ``checkpoint-N`` of a stage, and the incomplete ones with why (newest first)."""
    found = []
    if stage_dir.is_dir():
        found = sorted(((int(m.group(1)), p) for p in stage_dir.iterdir()
                        if p.is_dir() and (m := _CHECKPOINT.match(p.name))), reverse=True)
    incomplete = []
    for _, path in found:
        problem = checkpoint_problem(path)
        if problem is None:
            return path, incomplete
        incomplete.append((path, problem))
    return None, incomplete


def _resume_point(stage_dir: Path, state) -> str | None:
    """The checkpoint to resume a stage from. Incomplete checkpoints (a kill while the Trainer wrote them) are
    skipped and removed, saying so: the Trainer writes them again when it gets there."""
    with state.main_process_first():
        last, incomplete = last_complete_checkpoint(stage_dir)
        if state.is_main_process:
            for path, problem in incomplete:
                print(f"[coat train] {stage_dir.name}: skipping incomplete {path.name} ({problem}); removed it",
                      flush=True)
                shutil.rmtree(path, ignore_errors=True)
            if last is not None:
                print(f"[coat train] {stage_dir.name}: resuming from {last.name}", flush=True)
    return str(last) if last is not None else None


def stage_done(stage_dir: Path) -> bool:
    """A stage is done when its adapter is complete (every part its config names) and its log is readable."""
    adapter = stage_dir / "adapter"
    if not adapter.is_dir() or adapter_missing_parts(adapter):
        return False
    try:
        json.loads((stage_dir / "log_history.json").read_text())
    except (OSError, ValueError):
        return False
    return True


# ----------------------------------------------------------------------------------------------------- trainer
class NonFiniteLossError(FloatingPointError):
    """A training step whose loss is NaN or inf: the run stops there, naming the batch's examples."""


class TrainingDataError(ValueError):
    """Training data that cannot train anything (no examples, or none with usable audio)."""


class _WithIds:
    """The collator, plus each batch's example ids (the Trainer pops them; a non-finite loss names them)."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, examples: list[dict]) -> dict:
        return {**self.collator(examples), "example_ids": [ex.get("id") for ex in examples]}


class CoATTrainer(AdapterCheckpoints, Trainer):
    """The Trainer of every CoAT run: logs the text loss and each expert loss, stops at a non-finite loss naming the
    batch's examples, and checkpoints only the CoAT adapter, gathered once when the model is sharded (FSDP2,
    ZeRO-3; :class:`coat.distributed.AdapterCheckpoints`).

    A batch may come in ``parts`` (``{"parts": [batch, ...]}``, :class:`coat.data.collate.PartsCollator`): examples
    that cannot share one processor call (text-only next to audio); its loss is the example-weighted mean of the
    parts' losses. ``losses`` keeps the loss of every training batch (the demo's pre-training stores its curve)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False  # losses are batch means; the Trainer scales for accumulation
        self._sums: dict[str, list] = {}
        self.losses: list[float] = []

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        ids = inputs.pop("example_ids", None)
        if "parts" in inputs:
            parts = inputs["parts"]
            loss = sum(model(**part)["loss"] * len(part["input_ids"]) for part in parts) / sum(
                len(part["input_ids"]) for part in parts)
            outputs = {"loss": loss}
        else:
            outputs = model(**inputs)
            loss = outputs["loss"]
        if model.training:
            named = {"text_loss": outputs.get("text_loss", loss)}
            named.update({f"loss_{k}": v for k, v in (outputs.get("expert_losses") or {}).items()})
            loss_value = float(loss.detach().mean())  # one host sync for the finiteness check and the loss curve
            if not math.isfinite(loss_value):
                raise NonFiniteLossError(self._non_finite_message(loss, named, ids))
            for key, value in named.items():
                if value is not None:
                    total = self._sums.setdefault(key, [0.0, 0])
                    total[0] += float(value.detach())
                    total[1] += 1
            self.losses.append(loss_value)
        return (loss, outputs) if return_outputs else loss

    def _non_finite_message(self, loss, parts, ids) -> str:
        which = [k for k, v in parts.items() if v is not None and not bool(torch.isfinite(v.detach()).all())]
        stage = Path(self.args.output_dir).name
        return (f"{stage}: the loss is {float(loss.detach())} at step {self.state.global_step + 1} (non-finite: "
                f"{', '.join(which) or 'loss'}) on the batch of examples {list(ids or [])}. Training stopped "
                "before this step changed any weight; nothing was saved from it. Check these examples' audio and "
                "targets for NaN/inf, or lower the learning rate if the loss diverged")

    def log(self, logs, start_time=None):
        if "loss" in logs and self._sums:
            keys = sorted(self._sums)
            means = torch.tensor([self._sums[k][0] / max(self._sums[k][1], 1) for k in keys],
                                 device=self.args.device)
            means = self.accelerator.reduce(means, reduction="mean")
            logs.update({k: round(float(v), 6) for k, v in zip(keys, means)})
            self._sums = {}
        super().log(logs, start_time)


def stage_trainer(model, args, dataset, collator, name: str, progress: bool = True, callbacks=None,
                  optimizers=(None, None)) -> CoATTrainer:
    """A :class:`CoATTrainer` for one stage, its progress named after it (coat/progress.py), not the Trainer's."""
    trainer = CoATTrainer(model=model, args=args, train_dataset=dataset, data_collator=_WithIds(collator),
                          callbacks=callbacks, optimizers=optimizers)
    trainer.remove_callback(PrinterCallback)  # prints log dicts with numbers as quoted strings
    trainer.add_callback(trainer_progress_callback(name, enabled=progress))
    return trainer


def _training_args(config: TrainConfig, stage: StageConfig, output_dir: Path) -> TrainingArguments:
    t = config.training
    return TrainingArguments(
        output_dir=str(output_dir), seed=t.seed, data_seed=t.seed, per_device_train_batch_size=t.per_device_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps, learning_rate=stage.learning_rate,
        num_train_epochs=stage.epochs, max_steps=stage.max_steps, warmup_steps=stage.warmup,
        lr_scheduler_type=stage.lr_scheduler, weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm,
        bf16=t.bf16, fp16=t.fp16, logging_steps=t.logging_steps, save_steps=t.save_steps,
        save_total_limit=t.save_total_limit, dataloader_num_workers=t.dataloader_num_workers,
        report_to=t.report_to, remove_unused_columns=False, label_names=["labels"], prediction_loss_only=True,
        ddp_find_unused_parameters=True, use_cpu=not torch.cuda.is_available(), save_only_model=False,
        disable_tqdm=True,  # stage_trainer's own callback shows progress, named after the stage (coat/progress.py)
    )


# ----------------------------------------------------------------------------------------------------- recipe
@dataclass
class TrainResult:
    """What a training run leaves behind: its folder, the final adapter, the stages it trained, its log."""

    output_dir: str
    adapter: str
    trained_stages: list[str]
    log_history: list[dict]


class TrainingRecipe:
    """``coat train`` in three plain steps: :meth:`setup` (data, expert targets, bad audio left out, the model with
    its heads and LoRA), :meth:`train` (every stage of the schedule, resuming where a stopped run left off) and
    :meth:`save` (the final adapter and log). After :meth:`setup` the run's parts are attributes: ``source``,
    ``experts``, ``caches``, ``model``, ``processor``, ``dataset``, ``collator``."""

    def __init__(self, config: TrainConfig, callbacks=None):
        self.config, self.callbacks = config, callbacks
        self.output_dir = Path(config.training.output_dir)
        self.history: list[dict] = []
        self.trained: list[str] = []

    def setup(self) -> None:
        config = self.config
        self.output_dir.mkdir(parents=True, exist_ok=True)
        set_seed(config.training.seed)
        # One process (per node) writes shared files first: the synthetic data and a created tiny model. A CPU-only
        # host needs cpu=True for accelerate to form a multi-process (gloo) group.
        self.state = PartialState(cpu=not torch.cuda.is_available())
        with self.state.main_process_first():
            source = training_source(config)
            if config.model.create_tiny:
                create_tiny_model(config.model.name_or_path, config.model.seed)
        if len(source) == 0:
            raise TrainingDataError(f"the training data ({source.description}) has no examples")
        self.experts = load_experts(config.targets, config.experts)
        check_targets_made_in_training(config, self.experts)
        self.caches = target_caches(config.targets, source, self.experts, config.heads)
        self.source = leave_out_bad_audio(config, source, bad_audio(config, source, self.caches, self.state),
                                          self.state)
        set_seed(config.training.seed)  # the same initial weights whether or not targets were computed just now
        self.model, self.processor = build_model(config, self.experts)
        broadcast_coat_parameters(self.model.coat_parameters())  # every process starts from rank 0's CoAT weights
        sampling_rate = self.processor.feature_extractor.sampling_rate
        self.dataset = QADataset(self.source, config.data, sampling_rate, self.caches,
                                 loader_experts=[e for e in self.experts if e.specs() != e.cached_specs()])
        self.collator = CoATCollator(self.processor, sampling_rate, heads=self.model.heads,
                                     weights=self.model.expert_weights)
        write_atomic(self.output_dir / "config.yaml", yaml.safe_dump(asdict(config), sort_keys=False))

    def train(self) -> None:
        for index, stage in enumerate(self.config.stages):
            self.train_stage(index, stage)

    def train_stage(self, index: int, stage: StageConfig) -> None:
        """One stage: a Trainer run over the parts it names, from its last complete checkpoint if it has one; a stage
        whose adapter is complete was finished before, and only its weights are taken."""
        stage_dir = self.stage_dir(index)
        if stage_done(stage_dir):
            self.model.load_adapter_weights(stage_dir / "adapter")
            self.history += json.loads((stage_dir / "log_history.json").read_text())
            if self.state.is_main_process:
                print(f"stage {stage.name}: finished in an earlier run ({stage_dir / 'adapter'}), not trained again")
            return
        self.trained.append(stage.name)
        if index and is_sharded_model(self.model):
            self.rebuild_model(self.stage_dir(index - 1) / "adapter")
        self.model.set_trainable(stage.train)
        set_seed(self.config.training.seed + index)
        trainer = stage_trainer(self.model, _training_args(self.config, stage, stage_dir), self.dataset,
                                self.collator, stage.name, self.config.training.progress, self.callbacks)
        trainer.train(resume_from_checkpoint=_resume_point(stage_dir, self.state))
        logs = [dict(entry, stage=stage.name) for entry in trainer.state.log_history]
        if trainer.is_world_process_zero():
            write_atomic(stage_dir / "log_history.json", json.dumps(logs, indent=2))
        # every process: a sharded model is gathered, and the main one writes
        self.model.save_pretrained(stage_dir / "adapter", is_main_process=trainer.is_world_process_zero())
        trainer.accelerator.wait_for_everyone()
        self.history += logs

    def stage_dir(self, index: int) -> Path:
        return self.output_dir / f"stage-{index}-{self.config.stages[index].name}"

    def rebuild_model(self, adapter: Path) -> None:
        """A fresh model with the adapter of the stage before: a Trainer cannot prepare a model that an earlier
        stage's Trainer sharded (FSDP2, ZeRO-3)."""
        self.model = None  # the sharded one goes before the new one is built
        free_memory()
        self.model = build_model(self.config, self.experts)[0]
        self.model.load_adapter_weights(adapter)

    def save(self) -> TrainResult:
        adapter = self.output_dir / "adapter"
        self.model.save_pretrained(adapter, is_main_process=self.state.is_main_process)  # every process: gathers
        if self.state.is_main_process:
            write_atomic(self.output_dir / "log_history.json", json.dumps(self.history, indent=2))
        return TrainResult(str(self.output_dir), str(adapter), self.trained, self.history)


def run_training(config: TrainConfig, callbacks=None) -> TrainResult:
    """Set up, train every stage (resuming a stopped run) and save the final adapter."""
    recipe = TrainingRecipe(config, callbacks)
    recipe.setup()
    recipe.train()
    return recipe.save()
