"""Expert targets at corpus scale: per built-in expert, what its cache costs on disk, how fast it is extracted, and
how faithful the stored targets are to the float32 ones.

``coat bench targets [config.yaml] [key=value ...]`` (fields of :class:`BenchTargetsConfig`). On real speech (clips
of espeak-ng speech from :mod:`coat.data.speech`, plus CPython's recording ``Lib/test/audiotest.au`` when this
Python ships it), for every expert, side by side in one process:

- **MB per audio hour**: the ``data/`` folder of the expert's cache as ``coat targets`` writes it (cache format 2,
  coat/experts/storage.py, for heads of ``heads_num_frames`` frames) and of a float32 cache of every expert frame
  (format 1's content: for ``pitch``, CREPE's full 360-bin posterior); targets made during training (log-mel in
  the data loader, the LALM encoder in the forward) cost nothing on disk.
- **audio seconds per second**, batched by length (the cache's own batching) and one clip at a time, timed in
  alternation ``repeats`` times (the best of each counts: a machine shared with other work slows both alike).
- **fidelity**: what the heads receive (after resampling onto their frames, a peak target's distribution rebuilt)
  from the stored cache against the float32 one: max abs difference and, for distributions, mean KL per frame.
  For ``pitch``: the median cents between the pitch decoded (CREPE's weighted average) from the two, and of each
  against librosa's pYIN on the frames both call voiced.
- **the set of a config** (``configs/qwen2_audio.yaml``): the MB per audio hour of its cached experts, summed.
- **peak memory** (``rss_clips``): ``coat targets`` in a subprocess over a memory-mapped ``datasets`` dataset of
  N short clips, for each N; its peak RSS should not grow with N.

The experts that need checkpoints (``emotion``, ``sound_event``, ``phonetic``) run on tiny random checkpoints of
their real classes, with the output widths of the checkpoints the configs name (4 emotions, 527 AudioSet tags, a
392-symbol CTC vocabulary; built offline here) and output layers shaped like trained ones (see
:func:`standin_checkpoints`): their MB per hour are the real ones, their speeds those of a tiny model.
Writes ``targets.json`` and ``targets.md`` to ``out`` and prints the tables.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import main_of  # noqa: E402
from coat.files import write_atomic  # noqa: E402
from coat.progress import quiet_hub_bars  # noqa: E402
from coat.reports import markdown_table  # noqa: E402

BUILTIN = ["pitch", "emotion", "sound_event", "phonetic", "reconstruction", "speech_activity", "speaker", "egemaps",
           "formants"]
SPEECH = [("The quick brown fox jumps over the lazy dog.", "en-us", "m3"),
          ("Where did you put the keys?", "en", "f2"),
          ("Seven silver spoons.", "en-us", "f4"),
          ("I would rather walk home tonight, thank you.", "en-us", "m1"),
          ("No.", "en-us", "m7"),
          ("Bring the blue bowl back to the kitchen.", "en-GB-scotland", "f1"),
          ("How many beeps did you hear?", "en-us", "m2"),
          ("Morning light.", "en-us", "f5")]


@dataclass
class BenchTargetsConfig:
    experts: list[str] = field(default_factory=lambda: list(BUILTIN), metadata={
        "help": "experts to measure (the speech experts need the speech extra; missing ones are skipped, saying so)"})
    expert_params: dict[str, dict[str, Any]] = field(default_factory=lambda: {"pitch": {"model": "tiny"}}, metadata={
        "help": "expert name -> its parameters (emotion, sound_event, phonetic: default the stand-in checkpoints)"})
    num_clips: int = field(default=8, metadata={"help": "espeak-ng clips (the recording comes on top)"})
    heads_num_frames: int = field(default=64, metadata={
        "help": "the heads the caches are for (heads.num_frames; 64 in the shipped configs)"})
    batch_seconds: float = field(default=30.0, metadata={"help": "padded audio seconds per batch"})
    max_batch_size: int = field(default=64, metadata={"help": "most clips per batch"})
    repeats: int = field(default=3, metadata={"help": "timings per way, alternating; the best counts"})
    threads: int | None = field(default=None, metadata={
        "help": "torch CPU threads (null: 1 on cpu, where ratios of side-by-side timings are steadiest)"})
    device: str = field(default="cuda" if torch.cuda.is_available() else "cpu", metadata={"help": "where to run"})
    config_set: str | None = field(default="configs/qwen2_audio.yaml", metadata={
        "help": "a training config whose cached experts' MB per audio hour are summed (null: none)"})
    rss_clips: list[int] = field(default_factory=list, metadata={
        "help": "peak memory of coat targets over a memory-mapped dataset of this many 0.5 s clips, each (e.g. "
                "[1000, 10000]); empty: not measured"})
    rss_expert: str = field(default="speech_activity", metadata={"help": "the expert of the peak-memory runs"})
    out: str = field(default="runs/bench/targets", metadata={"help": "folder for targets.json / .md"})

    def __post_init__(self):
        if self.num_clips < 1 or self.repeats < 1 or self.heads_num_frames < 1:
            raise ValueError("num_clips, repeats and heads_num_frames must be >= 1")
        if any(n < 1 for n in self.rss_clips):
            raise ValueError("rss_clips must be positive counts")


# ------------------------------------------------------------------------------------------------ inputs
def speech_clips(n: int, sample_rate: int = 16000) -> tuple[list[np.ndarray], str]:
    """``n`` clips of espeak-ng speech (voices, lengths and intonation differ) and CPython's ``audiotest.au`` when
    present, at ``sample_rate``; and a line saying what they are."""
    from coat.data.sources import resample
    from coat.data.speech import synthesize

    clips = []
    for i in range(n):
        text, voice, variant = SPEECH[i % len(SPEECH)]
        clips.append(synthesize(text, voice=voice, variant=variant, rate=150 + 15 * (i % 4),
                                pitch=35 + 10 * (i % 4), seed=i, sample_rate=sample_rate).audio)
    what = f"{n} espeak-ng clips"
    recording = cpython_recording()
    if recording is not None:
        import soundfile as sf

        audio, rate = sf.read(recording, dtype="float32")
        clips.append(resample(audio if audio.ndim == 1 else audio.mean(1), rate, sample_rate))
        what += f" + CPython's {recording} ({len(audio) / rate:.1f} s)"
    return clips, what


def cpython_recording() -> str | None:
    """CPython's test recording ``Lib/test/audiotest.au`` (a real recording) when this Python ships its tests."""
    spec = importlib.util.find_spec("test")
    path = os.path.join(os.path.dirname(spec.origin), "audiotest.au") if spec and spec.origin else ""
    return path if os.path.isfile(path) else None


def standin_checkpoints(root: Path) -> dict[str, dict[str, Any]]:
    """Tiny random checkpoints of the real classes of the experts that need one, with the output widths of the
    configs' checkpoints, saved under ``root``: expert name -> its params. The output layers are shaped like trained
    ones, so that what top-k storage leaves out is what it would leave out of a trained model, not of a uniform
    guess: the CTC head is winner-take-all (its logits spread 12 nats over a layer-normed state) with the blank
    ahead in most frames, as a trained CTC model emits the blank in most frames and is sure of its symbols; the
    AudioSet head's biases sit at a rare label's prior (sigmoid about 1%) but for label 0 ("Speech", these clips'
    label), its weights spread that by about 0.6 nats. Trained models' tails differ; each cache records its own
    (``cache.json``, ``storage``) and ``coat targets`` warns when it is not negligible."""
    import transformers as tf

    torch.manual_seed(0)
    fe = tf.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                     return_attention_mask=True)

    def w2v(**kwargs):
        return tf.Wav2Vec2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20,
                                 conv_dim=(8,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                                 feat_extract_norm="layer", do_stable_layer_norm=True, classifier_proj_size=8,
                                 **kwargs)

    params = {}
    path = root / "emotion"
    if not (path / "config.json").is_file():
        labels = ["neu", "ang", "hap", "sad"]  # speechbrain/emotion-recognition-wav2vec2-IEMOCAP's four
        tf.Wav2Vec2ForSequenceClassification(w2v(num_labels=4, id2label=dict(enumerate(labels)),
                                                 label2id={n: i for i, n in enumerate(labels)})).save_pretrained(path)
        fe.save_pretrained(path)
    params["emotion"] = {"source": str(path)}
    path = root / "phonetic"
    if not (path / "config.json").is_file():
        model = tf.Wav2Vec2ForCTC(w2v(vocab_size=392, pad_token_id=0))  # lv-60-espeak-cv-ft's vocabulary size
        with torch.no_grad():
            model.lm_head.weight.normal_(0.0, 3.0)
            model.lm_head.bias.zero_()
            model.lm_head.bias[0] = 36.0  # the blank: ahead of the best symbol (about 35 nats) in most frames
        model.save_pretrained(path)
        fe.save_pretrained(path)
    params["phonetic"] = {"source": str(path)}
    path = root / "sound_event"
    if not (path / "config.json").is_file():
        config = tf.ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                              patch_size=2, max_length=100, num_mel_bins=16, frequency_stride=4, time_stride=4,
                              num_labels=527, problem_type="multi_label_classification")
        model = tf.ASTForAudioClassification(config)
        with torch.no_grad():
            model.classifier.dense.weight.normal_(0.0, 0.15)
            model.classifier.dense.bias.fill_(-4.6)  # sigmoid(-4.6) = 1%: most AudioSet labels are absent
            model.classifier.dense.bias[0] = 2.0  # AudioSet's label 0, "Speech"
        model.save_pretrained(path)
        tf.ASTFeatureExtractor(num_mel_bins=16, max_length=100).save_pretrained(path)
    params["sound_event"] = {"source": str(path)}
    return params


# ------------------------------------------------------------------------------------------------ measures
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternating_best(ways: dict[str, Any], repeats: int, device: torch.device) -> dict[str, float]:
    """Best wall time of each way, the ways timed in turn ``repeats`` times, in reversed order every other time
    (load on a shared machine, and whatever one way leaves in the caches, falls on both alike)."""
    best = dict.fromkeys(ways, float("inf"))
    for repeat in range(repeats):
        for name, fn in list(ways.items())[:: -1 if repeat % 2 else 1]:
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def mean_kl(p: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean over the frames in ``mask`` of KL(p || q), ``(N, F, dim)`` distributions. Called with p the stored
    target and q the float32 one: for a top-k row that is -log(the mass it kept), finite where KL(q || p) is not."""
    p, q = p.double(), q.double()
    kl = (p * (p.clamp_min(1e-12).log() - q.clamp_min(1e-12).log())).sum(-1)
    return float((kl * mask).sum() / mask.sum().clamp_min(1))


def pitch_cents(values: torch.Tensor) -> np.ndarray:
    """``(..., 360)`` distributions on the heads' frames -> cents, by CREPE's own weighted-average decoding."""
    from coat.experts.pitch import distribution_to_hz, hz_to_cents

    return hz_to_cents(distribution_to_hz(values.numpy()))


def pyin_on_head_frames(clip: np.ndarray, sample_rate: int, num_frames: int) -> np.ndarray:
    """librosa's pYIN f0 of ``clip`` in cents on the heads' ``num_frames`` frames (NaN where unvoiced), frames at
    10 ms like CREPE's, each head frame taking its nearest pYIN frame (relative time)."""
    import librosa

    from coat.experts.pitch import hz_to_cents
    from coat.targets import frame_positions

    f0, voiced, _ = librosa.pyin(clip, fmin=50.0, fmax=600.0, sr=sample_rate, frame_length=1024, hop_length=160,
                                 center=True)
    cents = np.where(voiced, hz_to_cents(np.nan_to_num(f0, nan=1.0)), np.nan)
    at = np.clip(np.rint(frame_positions(len(cents), num_frames).numpy()).astype(int), 0, len(cents) - 1)
    return cents[at]


def _expert(name: str, params: dict[str, Any], device: torch.device, storage=None):
    from coat.experts import build_expert

    expert = build_expert(name, **params).to(device)
    if storage is not None:
        expert.storage = storage
    return expert


def bench_expert(name: str, params: dict[str, Any], clips: list[np.ndarray], config: BenchTargetsConfig,
                 work: Path) -> dict[str, Any]:
    from coat.data.sources import ExampleListSource
    from coat.experts.cache import TargetCache
    from coat.experts.compute import compute_targets, length_batches, pad_batch
    from coat.experts.storage import StorageConfig
    from coat.heads import HeadConfig
    from coat.targets import prepare_targets

    device = torch.device(config.device)
    expert = _expert(name, params, device)
    sr = expert.sample_rate
    seconds = [len(c) / sr for c in clips]
    hours = sum(seconds) / 3600
    row: dict[str, Any] = {"expert": name, "params": params, "clips": len(clips),
                           "audio_seconds": round(sum(seconds), 3),
                           "made_in_training": [s.name for s in expert.specs() if s.computed_in != "extraction"]}

    # throughput: the expert's own compute, every target it gives
    batches = length_batches(seconds, config.batch_seconds, config.max_batch_size)
    expert(*pad_batch(clips[:1]))  # warm-up: loads the weights, first-call kernels
    best = alternating_best({
        "batched": lambda: [expert(*pad_batch([clips[i] for i in b])) for b in batches],
        "single": lambda: [expert(*pad_batch([c])) for c in clips],
    }, config.repeats, device)
    row.update(batches=len(batches), batched_audio_s_per_s=sum(seconds) / best["batched"],
               single_audio_s_per_s=sum(seconds) / best["single"], ratio=best["single"] / best["batched"])

    # the caches: as coat targets keeps them, and float32 of every frame (format 1's content)
    examples = [{"id": f"c{i:03d}", "audio": c, "sampling_rate": sr} for i, c in enumerate(clips)]
    source = ExampleListSource(examples)
    grid = HeadConfig(num_frames=config.heads_num_frames)
    ref_params = {**params, "target": "crepe"} if name == "pitch" else params
    if name == "reconstruction":
        ref_params = {**params, "logmel_from": "extraction"}
    reference = _expert(name, ref_params, device, StorageConfig(dtype="float32", top_k=None))
    stored_run = (compute_targets(source, [expert], work / "stored", grid=grid, progress=False).get(name)
                  if expert.cached_specs() else None)
    ref_run = compute_targets(source, [reference], work / "float32", progress=False)[name]
    row["mb_per_hour"] = folder_bytes(stored_run.path / "data") / 1e6 / hours if stored_run else 0.0
    row["float32_mb_per_hour"] = folder_bytes(ref_run.path / "data") / 1e6 / hours
    ref_cache = TargetCache(ref_run.path)
    stored = TargetCache(stored_run.path) if stored_run else None
    if stored is not None:
        row["stored_forms"] = {t: {k: v for k, v in s.items() if k in ("stored", "max_tail", "mean_tail")}
                               for t, s in stored.info["storage"].items()}

    # fidelity: what the heads receive from each
    specs = {s.name: s for s in expert.specs()}
    ids = source.ids()
    ref_rows = [ref_cache[i] for i in ids]
    ref_targets = {n: [r[n] for r in ref_rows] for n in ref_rows[0]}
    new_targets: dict[str, list] = {n: [] for n in specs if n in ref_targets}
    for i, clip in zip(ids, clips):
        got = stored.targets(i, peaks=True) if stored is not None else {}
        got.update(expert.loader_targets(clip, sr))
        for n in new_targets:
            new_targets[n].append(got.get(n))
    new_targets = {n: v for n, v in new_targets.items() if all(x is not None for x in v)}
    ref_specs = {s.name: s for s in reference.specs()}
    new_values, new_masks = prepare_targets(new_targets, specs, grid)
    ref_values, _ = prepare_targets({n: ref_targets[n] for n in new_targets}, ref_specs, grid)
    fidelity = {}
    for n in new_values:
        mask = new_masks[n]
        diff = (new_values[n] - ref_values[n]).abs().amax(-1) * mask
        figures = {"max_abs_diff": float(diff.max()), "where": specs[n].computed_in}
        if specs[n].kind == "distribution":
            figures["mean_kl"] = mean_kl(new_values[n], ref_values[n], mask)
        fidelity[n] = figures
    row["fidelity"] = fidelity
    if name == "pitch":
        row["pitch_cents"] = pitch_figures(new_values, ref_values, clips, sr, config.heads_num_frames)
        # the storage alone (uint16 peaks on the heads' frames) against the same peaks as float32 at 100 frames/s;
        # the table's pitch figures compare with CREPE's full posterior, a different target by design
        peaks32 = _expert(name, params, device, StorageConfig(dtype="float32", top_k=None))
        cache32 = TargetCache(compute_targets(source, [peaks32], work / "peaks32", progress=False)[name].path)
        rows32 = [cache32.targets(i, peaks=True) for i in ids]
        values32, _ = prepare_targets({n: [r[n] for r in rows32] for n in new_targets}, specs, grid)
        mask = new_masks["pitch"]
        row["pitch_storage_only"] = {
            "max_abs_diff": float(((new_values["pitch"] - values32["pitch"]).abs().amax(-1) * mask).max()),
            "mean_kl": mean_kl(new_values["pitch"], values32["pitch"], mask),
            "median_cents": float(np.median(np.abs(pitch_cents(new_values["pitch"])
                                                   - pitch_cents(values32["pitch"]))[mask.bool().numpy()]))}
    return row


def pitch_figures(new_values, ref_values, clips, sr, num_frames) -> dict[str, Any]:
    """Median absolute cents, on the frames both CREPE (voicing > 0.5) and pYIN call voiced: stored vs float32
    cache, stored vs pYIN, float32 vs pYIN; per clip and over all those frames."""
    new, ref = pitch_cents(new_values["pitch"]), pitch_cents(ref_values["pitch"])
    voiced = (ref_values["voicing"][..., 0] > 0.5).numpy()
    pyin = np.stack([pyin_on_head_frames(c, sr, num_frames) for c in clips])
    both = voiced & np.isfinite(pyin)
    out = {"frames": int(both.sum()),
           "stored_vs_float32": float(np.median(np.abs(new - ref)[both])),
           "stored_vs_pyin": float(np.median(np.abs(new - pyin)[both])),
           "float32_vs_pyin": float(np.median(np.abs(ref - pyin)[both]))}
    out["per_clip_stored_vs_pyin"] = [float(np.median(np.abs(new - pyin)[k][both[k]])) if both[k].any() else None
                                      for k in range(len(clips))]
    return out


# ------------------------------------------------------------------------------------------------ peak memory
RSS_SCRIPT = r"""
import json, resource, sys, threading, time
from coat.extraction import ExtractConfig, run_extraction
from coat.config_io import load_config

peak_anon, done = [0], threading.Event()
def sample():  # the process's own memory, without the pages of memory-mapped files it has read (RssFile)
    while not done.wait(0.05):
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                peak_anon[0] = max(peak_anon[0], int(line.split()[1]))
threading.Thread(target=sample, daemon=True).start()
config = load_config(ExtractConfig, None, sys.argv[1:])
run_extraction(config)
done.set()
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "peak_anon_mb": peak_anon[0] / 1024}))
"""


def peak_rss(counts: list[int], expert: str, work: Path) -> list[dict[str, Any]]:
    """``coat targets`` in a fresh subprocess over a memory-mapped ``datasets`` dataset (``save_to_disk``) of N
    0.5 s clips, per N: its peak RSS (``ru_maxrss``, which counts the pages of the memory-mapped Arrow files it has
    read: the OS's to drop) and its peak anonymous RSS (sampled every 50 ms: the memory the process holds)."""
    import datasets

    rows = []
    rng = np.random.default_rng(0)
    for n in counts:
        path = work / f"rss_{n}"
        if not path.is_dir():
            def gen(n=n):
                import io

                import soundfile as sf

                for i in range(n):  # WAV bytes made here: datasets would need torchcodec to encode arrays
                    t = np.arange(8000) / 16000
                    tone = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t) + 0.01 * rng.standard_normal(8000)
                    wav = io.BytesIO()
                    sf.write(wav, tone.astype(np.float32), 16000, format="WAV", subtype="PCM_16")
                    yield {"id": f"x{i:06d}", "audio": {"bytes": wav.getvalue(), "path": None}}

            # WAV bytes as a plain struct, then cast to an Audio column: an Arrow cast, no audio encoder needed
            features = datasets.Features({"id": datasets.Value("string"), "audio": {
                "bytes": datasets.Value("binary"), "path": datasets.Value("string")}})
            dataset = datasets.Dataset.from_generator(gen, features=features, cache_dir=str(work / "hf"))
            dataset.cast_column("audio", datasets.Audio(sampling_rate=16000)).save_to_disk(str(path))
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", RSS_SCRIPT, f"data.source.path={path}", f"experts=[{expert}]",
                               f"targets.cache_dir={work / f'rss_cache_{n}'}", "progress=false"],
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path.cwd())})
        if proc.returncode != 0:
            raise RuntimeError(f"coat targets over {n} clips failed: {proc.stderr[-2000:]}")
        rows.append({"clips": n, "audio_hours": n * 0.5 / 3600, "seconds": time.perf_counter() - start,
                     **json.loads(proc.stdout.strip().splitlines()[-1])})
    return rows


# ------------------------------------------------------------------------------------------------ report
def config_set_total(path: str, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    import yaml

    if not Path(path).is_file():
        return None
    experts = [e if isinstance(e, str) else e["name"] for e in yaml.safe_load(Path(path).read_text())["experts"]]
    by_name = {r["expert"]: r for r in rows}
    measured = [e for e in experts if e in by_name]
    return {"config": path, "experts": experts, "measured": measured,
            "mb_per_hour": sum(by_name[e]["mb_per_hour"] for e in measured),
            "float32_mb_per_hour": sum(by_name[e]["float32_mb_per_hour"] for e in measured)}


def results_tables(result: dict[str, Any]) -> str:
    env, rows = result["env"], result["results"]
    lines = [f"Expert targets on {result['clips']} ({env['device']}, {env['device_name']}, torch {env['torch']}, "
             f"{env['threads']} threads), heads of {result['config']['heads_num_frames']} frames."]
    header = ["expert", "MB / audio h", "float32 MB / audio h", "batched audio s/s", "one at a time audio s/s",
              "batched / single", "fidelity (max abs diff; mean KL stored || float32)"]
    cells = []
    for r in rows:
        fid = "; ".join(f"{n}{' (' + f['where'] + ')' if f['where'] != 'extraction' else ''}: "
                        f"{f['max_abs_diff']:.2g}" + (f", KL {f['mean_kl']:.2g}" if "mean_kl" in f else "")
                        for n, f in r["fidelity"].items())
        cells.append([r["expert"], f"{r['mb_per_hour']:.2f}", f"{r['float32_mb_per_hour']:.0f}",
                      f"{r['batched_audio_s_per_s']:.1f}", f"{r['single_audio_s_per_s']:.1f}", f"{r['ratio']:.2f}x",
                      fid])
    lines += ["", markdown_table(header, cells)]
    for r in rows:
        if "pitch_cents" in r:
            p = r["pitch_cents"]
            q = r["pitch_storage_only"]
            lines += ["", f"pitch storage alone (uint16 peaks on the heads' frames vs float32 peaks at 100 frames/s, "
                          f"the same Gaussian rebuilt): max abs diff {q['max_abs_diff']:.2g}, mean KL "
                          f"{q['mean_kl']:.2g}, median {q['median_cents']:.3f} cents. The table's pitch row compares "
                          "with CREPE's full 360-bin posterior (format 1's target), which the Gaussian replaces."]
            lines += ["", f"pitch: median |cents| over {p['frames']} frames voiced for CREPE and pYIN: stored vs "
                          f"float32 cache {p['stored_vs_float32']:.2f}, stored vs pYIN {p['stored_vs_pyin']:.1f}, "
                          f"float32 vs pYIN {p['float32_vs_pyin']:.1f}; per clip stored vs pYIN: "
                          + ", ".join("-" if c is None else f"{c:.1f}" for c in p["per_clip_stored_vs_pyin"])]
    if result.get("skipped"):
        lines += ["", "skipped: " + "; ".join(f"{k} ({v})" for k, v in result["skipped"].items())]
    total = result.get("config_set")
    if total:
        lines += ["", f"{total['config']}: cached experts {', '.join(total['measured'])}: "
                      f"{total['mb_per_hour']:.1f} MB per audio hour (float32: {total['float32_mb_per_hour']:.0f})"]
    if result.get("rss"):
        lines += ["", f"coat targets ({result['config']['rss_expert']}) over a memory-mapped dataset of N clips:",
                  "", markdown_table(["clips (0.5 s)", "audio h", "peak RSS MB", "peak anonymous RSS MB", "wall s"],
                                     [[r["clips"], f"{r['audio_hours']:.2f}", f"{r['peak_rss_mb']:.0f}",
                                       f"{r['peak_anon_mb']:.0f}", f"{r['seconds']:.0f}"] for r in result["rss"]])]
    return "\n".join(lines)


def run(config: BenchTargetsConfig) -> dict[str, Any]:
    from coat.errors import CoatError

    device = torch.device(config.device)
    torch.set_num_threads(config.threads or (1 if device.type == "cpu" else torch.get_num_threads()))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    env = {"device": str(device), "device_name": name,
           "torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version()}
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    clips, what = speech_clips(config.num_clips)
    rows, skipped = [], {}
    work = Path(tempfile.mkdtemp(prefix="coat-bench-targets-"))
    try:
        with quiet_hub_bars():  # no "Writing model shards" bars for checkpoints of a few kB
            standins = standin_checkpoints(work / "checkpoints")  # built afresh each run (tiny: under a second)
        for name in config.experts:
            params = config.expert_params.get(name, standins.get(name, {}))
            try:
                rows.append(bench_expert(name, params, clips, config, work / name))
            except (CoatError, ImportError) as err:  # an expert whose extra is not installed
                skipped[name] = str(err).splitlines()[0]
        result: dict[str, Any] = {"benchmark": "targets", "config": asdict(config), "env": env, "clips": what,
                                  "results": rows, "skipped": skipped}
        if config.config_set:
            result["config_set"] = config_set_total(config.config_set, rows)
        if config.rss_clips:
            result["rss"] = peak_rss(config.rss_clips, config.rss_expert, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_atomic(out / "targets.json", json.dumps(result, indent=2))
    table = results_tables(result)
    write_atomic(out / "targets.md", table + "\n")
    print(table)
    print(f"written to {out / 'targets.json'} and {out / 'targets.md'}")
    return result


def bench(config: BenchTargetsConfig) -> None:
    """Expert targets at corpus scale: per built-in expert, MB per audio hour of its cache (and of float32), audio
    seconds per second batched and one clip at a time, and the fidelity of what the heads receive from the stored
    cache against float32 (max abs difference, mean KL; pitch: median cents against the float32 cache and pYIN), on
    real speech; the sum for a config's expert set, and peak memory over N short clips (rss_clips).
    Writes targets.json and targets.md to out and prints the tables.

    Examples:
        coat bench targets
        coat bench targets experts=[pitch] num_clips=16 repeats=5
        coat bench targets experts=[pitch] rss_clips=[1000,10000]
    """
    run(config)


main = main_of("targets")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
