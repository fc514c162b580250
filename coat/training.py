"""The distillation training recipe behind ``coat train`` (docs/design.md, decisions 5 and 6).

One readable file: ``setup`` (data, expert targets, model with thinking table, heads and LoRA), ``train``
(a schedule of stages, each a ``transformers.Trainer`` run over the parameters it names) and checkpoints
(the CoAT adapter only: thinking table, heads, LoRA). The text loss and each expert loss are logged.

    coat train configs/tiny.yaml training.output_dir=runs/tiny
    accelerate launch -m coat train configs/qwen2_audio.yaml

Output layout (``data.synth`` data lives next to the target caches, see :func:`training_source`):
``<output_dir>/stage-<i>-<name>/checkpoint-*/`` (Trainer checkpoints holding the CoAT
adapter, optimizer, scheduler and RNG states), ``<output_dir>/stage-<i>-<name>/adapter/`` (the adapter at the
end of that stage; a stage whose adapter exists is not run again), ``<output_dir>/adapter/`` (the final
adapter, for ``coat.CoATModel.from_pretrained``), ``<output_dir>/log_history.json`` and the resolved
``<output_dir>/config.yaml``. Running the same command again resumes where it stopped.
"""

from __future__ import annotations

import json
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import yaml

from coat.config import CoATConfig
from coat.data.collate import CoATCollator, QAColumns, QADataset
from coat.data.sources import SourceConfig, open_source
from coat.data.synth import SynthConfig
from coat.errors import SourceNotFoundError
from coat.experts.base import ExpertConfig
from coat.experts.cache import AudioChecks
from coat.files import write_atomic
from coat.heads import HeadConfig
from coat.loading import ModelConfig

TRAINABLE_PARTS = ("thinking", "heads", "lora")
_FOLDER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # a stage's folder stays inside output_dir


@dataclass
class TargetCacheConfig:
    """Where training finds the expert targets, and whether it computes missing ones first."""

    cache_dir: str = field(default="runs/targets", metadata={"help": "root of the expert target caches"})
    compute: bool = field(default=False, metadata={"help": "compute missing caches before training (resumable)"})
    device: str | None = field(default=None, metadata={"help": "where experts run (default: accelerate's)"})
    batch_seconds: float = field(default=60.0, metadata={"help": "padded audio seconds per extraction batch"})


@dataclass
class DataConfig:
    """The training examples: a source or the synthetic benchmark, and which fields hold what."""

    train: SourceConfig | None = field(default=None, metadata={"help": "training examples (audio + QA fields)"})
    synth: SynthConfig | None = field(
        default=None, metadata={"help": "generate the synthetic benchmark's train split as the training data"})
    checks: AudioChecks = field(default_factory=AudioChecks, metadata={
        "help": "what counts as bad audio (as in `coat targets`): reported in <output_dir>/bad_audio.jsonl and left "
                "out of training"})
    question_column: str = field(default="question", metadata={"help": "field of each example holding the question"})
    choices_column: str | None = field(
        default="choices", metadata={"help": "field holding the list of choices (null: open questions)"})
    answer_column: str = field(default="answer", metadata={"help": "field holding the reference answer"})
    answer_format: str = field(default="text", metadata={"help": "text | letter | letter_text"})

    def __post_init__(self):
        if (self.train is None) == (self.synth is None):
            raise ValueError("data needs exactly one of data.train (a source) or data.synth")


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
    targets: TargetCacheConfig = field(default_factory=TargetCacheConfig, metadata={"help": "the target caches"})
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
            raise ValueError("data is required (data.train: a source, or data.synth)")
        if not self.stages:
            raise ValueError("stages must list at least one stage")
        if any("lora" in s.train for s in self.stages) and self.lora.r <= 0:
            raise ValueError("a stage trains lora but lora.r is not positive")


# ----------------------------------------------------------------------------------------------------- setup
def training_source(config: TrainConfig):
    """The training examples. ``data.synth`` is written once as wavs + a JSONL manifest next to the target caches
    (``<cache_dir>/synth-<hash of its config>/train``), so runs with the same data share the data and its targets."""
    if config.data.synth is None:
        try:
            return open_source(config.data.train)
        except SourceNotFoundError as err:
            raise SourceNotFoundError(f"data.train: {err}") from None

    from coat.data.synth import generate_split, write_manifest

    folder = Path(config.targets.cache_dir) / f"synth-{config.data.synth.digest()}" / "train"
    manifest = folder / "manifest.jsonl"
    if not manifest.is_file():
        write_manifest(generate_split(config.data.synth, "train"), folder)
    return open_source(SourceConfig(path=str(manifest)))


def build_experts(config: TrainConfig):
    from coat.experts import build_experts as build

    return build(config.experts)


def target_caches(config: TrainConfig, source, experts):
    """Open (after computing them, when ``targets.compute``) the target cache of every expert."""
    from coat.experts.cache import TargetCache, audio_fingerprint, compute_targets

    if config.targets.compute and experts:
        compute_targets(source, experts, config.targets.cache_dir, device=config.targets.device,
                        batch_seconds=config.targets.batch_seconds, checks=config.data.checks)
    caches = []
    audio_fp = audio_fingerprint(source) if experts else None  # once, not once per expert
    # just computed or checked byte for byte when targets.compute is set; else checked in full here, once per run
    verify = "size" if config.targets.compute else "full"
    for expert in experts:
        try:
            caches.append(TargetCache.open(config.targets.cache_dir, expert=expert, source=source,
                                           audio_fp=audio_fp, verify=verify))
        except (FileNotFoundError, KeyError, ValueError) as err:
            advice = "" if config.targets.compute else ". Run `coat targets` first or set targets.compute=true"
            raise SourceNotFoundError(
                f"no target cache of expert {expert.name!r} for this data under {config.targets.cache_dir!r} "
                f"({err}){advice}") from err
    return caches


def bad_audio(config: TrainConfig, source, caches, state) -> list[dict[str, str]]:
    """The examples whose audio fails ``data.checks`` (the checks of ``coat targets``): ``[{id, reason, detail}]``.

    With experts, the target caches already checked every example and report the bad ones. Without (the pause and
    no-thinking baselines), each example is decoded and checked once, before training; the result is kept in
    ``<output_dir>/audio_checks.json`` for this audio and these checks, so a resumed run does not decode again."""
    from coat.experts.cache import audio_fingerprint, decode_and_check

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
    key = {"audio_fingerprint": audio_fingerprint(source), "checks": asdict(config.data.checks)}
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
            checked = pool.map(lambda i: decode_and_check(source, i, config.data.checks)[2], range(len(ids)))
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


def build_model(config: TrainConfig, experts):
    """(CoATModel with heads and LoRA, processor)."""
    import coat
    from coat.loading import load_model_and_processor

    base, processor = load_model_and_processor(config.model)
    model = coat.wrap(base, config.coat)
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
    from coat.model import adapter_missing_parts

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
    from coat.model import adapter_missing_parts

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


def _trainer_class():
    from transformers import Trainer

    from coat.distributed import AdapterCheckpoints

    class CoATTrainer(AdapterCheckpoints, Trainer):
        """Trainer that logs the text loss and each expert loss, and checkpoints only the CoAT adapter (gathered
        once under FSDP / ZeRO-3: coat.distributed.AdapterCheckpoints)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.model_accepts_loss_kwargs = False  # losses are batch means; the Trainer scales for accumulation
            self._sums: dict[str, list] = {}

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            ids = inputs.pop("example_ids", None)
            outputs = model(**inputs)
            loss = outputs["loss"]
            if model.training:
                parts = {"text_loss": outputs.get("text_loss", loss)}
                parts.update({f"loss_{k}": v for k, v in (outputs.get("expert_losses") or {}).items()})
                if not bool(torch.isfinite(loss.detach()).all()):
                    raise NonFiniteLossError(self._non_finite_message(loss, parts, ids))
                for key, value in parts.items():
                    if value is not None:
                        total = self._sums.setdefault(key, [0.0, 0])
                        total[0] += float(value.detach())
                        total[1] += 1
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

    return CoATTrainer


def _training_args(config: TrainConfig, stage: StageConfig, output_dir: Path):
    from transformers import TrainingArguments

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
        disable_tqdm=True,  # run_training's own callback shows progress, named after the stage (coat/progress.py)
    )


def run_training(config: TrainConfig, callbacks=None) -> dict:
    """Run every stage (resuming a stopped run) and save the final adapter. Returns a summary dict."""
    from accelerate import PartialState
    from transformers import PrinterCallback, set_seed

    from coat.distributed import broadcast_coat_parameters, free_memory, is_sharded_model
    from coat.progress import trainer_progress_callback

    out = Path(config.training.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    set_seed(config.training.seed)
    # One process (per node) writes shared files first: the synthetic data and a created tiny model. A CPU-only
    # host needs cpu=True for accelerate to form a multi-process (gloo) group.
    state = PartialState(cpu=not torch.cuda.is_available())
    with state.main_process_first():
        source = training_source(config)
        if config.model.create_tiny:
            from coat.loading import create_tiny_model

            create_tiny_model(config.model.name_or_path, config.model.seed)
    if len(source) == 0:
        raise TrainingDataError(f"the training data ({source.description}) has no examples")
    experts = build_experts(config)
    caches = target_caches(config, source, experts)
    source = leave_out_bad_audio(config, source, bad_audio(config, source, caches, state), state)
    set_seed(config.training.seed)  # the same initial weights whether or not targets were computed just now
    model, processor = build_model(config, experts)
    broadcast_coat_parameters(model.coat_parameters())  # every process starts from rank 0's CoAT weights
    sampling_rate = processor.feature_extractor.sampling_rate
    columns = QAColumns(config.data.question_column, config.data.choices_column, config.data.answer_column,
                        config.data.answer_format)
    dataset = QADataset(source, sampling_rate, columns, caches)
    collator = CoATCollator(processor, sampling_rate, heads=model.heads, weights=model.expert_weights)
    write_atomic(out / "config.yaml", yaml.safe_dump(asdict(config), sort_keys=False))

    trainer_cls = _trainer_class()
    history, trained = [], []
    for index, stage in enumerate(config.stages):
        stage_dir = out / f"stage-{index}-{stage.name}"
        if stage_done(stage_dir):  # finished before: take its weights and go on
            model.load_adapter_weights(stage_dir / "adapter")
            history += json.loads((stage_dir / "log_history.json").read_text())
            if state.is_main_process:
                print(f"stage {stage.name}: finished in an earlier run ({stage_dir / 'adapter'}), not trained again")
            continue
        trained.append(stage.name)
        if is_sharded_model(model):  # the last stage's Trainer sharded it (FSDP2, ZeRO-3) and a new Trainer cannot
            model = trainer = None  # prepare it again: start from a fresh base model and the last stage's adapter
            free_memory()
            model = build_model(config, experts)[0]
            model.load_adapter_weights(out / f"stage-{index - 1}-{config.stages[index - 1].name}" / "adapter")
        model.set_trainable(stage.train)
        set_seed(config.training.seed + index)
        trainer = trainer_cls(model=model, args=_training_args(config, stage, stage_dir), train_dataset=dataset,
                              data_collator=_WithIds(collator), callbacks=callbacks)
        trainer.remove_callback(PrinterCallback)  # prints log dicts with numbers as quoted strings
        trainer.add_callback(trainer_progress_callback(stage.name, enabled=config.training.progress))
        trainer.train(resume_from_checkpoint=_resume_point(stage_dir, state))
        logs = [dict(entry, stage=stage.name) for entry in trainer.state.log_history]
        if trainer.is_world_process_zero():
            write_atomic(stage_dir / "log_history.json", json.dumps(logs, indent=2))
        model.save_pretrained(stage_dir / "adapter", is_main_process=trainer.is_world_process_zero())  # gathers
        trainer.accelerator.wait_for_everyone()
        history += logs
    model.save_pretrained(out / "adapter", is_main_process=state.is_main_process)  # every process: gathers
    if state.is_main_process:
        write_atomic(out / "log_history.json", json.dumps(history, indent=2))
    return {"output_dir": str(out), "adapter": str(out / "adapter"), "log_history": history, "model": model,
            "processor": processor, "dataset": dataset, "collator": collator, "trained_stages": trained}
