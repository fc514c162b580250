"""How the target cache keeps each kind of target (coat/experts/storage.py, cache format 2), the targets made during
training instead (log-mel in the data loader, the LALM encoder in the forward), and old caches refused."""

import json

import numpy as np
import pytest
import torch

from coat.data.sources import ExampleListSource
from coat.experts import build_expert
from coat.experts.cache import CACHE_FORMAT, OldCacheFormatError, TargetCache
from coat.experts.compute import compute_targets, pad_batch
from coat.experts.storage import StorageConfig, TargetCodec, stored_frames, to_stored_frames
from coat.heads import HeadConfig
from coat.targets import TargetSpec, peak_distribution, prepare_targets

SR = 16000


def _peaky(rng, frames, dim, sharpness=8.0):
    """Rows like a trained classifier's: softmax of logits with a few strong classes."""
    logits = rng.standard_normal((frames, dim)) * sharpness
    return torch.softmax(torch.from_numpy(logits), -1).numpy().astype(np.float32)


def test_dense_targets_are_float16_and_refuse_what_float16_cannot_hold():
    spec = TargetSpec("mfcc", SR, 100.0, 13, "regression")
    x = np.random.default_rng(0).normal(0, 30, (50, 13)).astype(np.float32)
    codec = TargetCodec(spec, StorageConfig())
    cols, stats = codec.encode(x)
    assert codec.form == "dense" and cols["mfcc"].dtype == np.float16 and cols["mfcc"].size == 50 * 13
    np.testing.assert_allclose(codec.decode(cols), x, rtol=2 ** -11)
    assert 0 < stats["max_abs_error"] <= np.abs(x).max() * 2 ** -11
    exact = TargetCodec(spec, StorageConfig(dtype="float32"))
    np.testing.assert_array_equal(exact.decode(exact.encode(x)[0]), x)
    with pytest.raises(ValueError, match=r"beyond float16's range .*storage.dtype: float32"):
        codec.encode(np.full((2, 13), 1e5, np.float32))
    assert TargetCodec(spec, StorageConfig(dtype="float32")).encode(np.full((2, 13), 1e5, np.float32))


def test_wide_distributions_keep_their_top_k_renormalised_and_multilabels_read_zero_outside():
    rng = np.random.default_rng(1)
    ctc = TargetSpec("phonetic", SR, 50.0, 392, "distribution")
    x = _peaky(rng, 40, 392)
    codec = TargetCodec(ctc, StorageConfig(top_k=16))
    cols, stats = codec.encode(x)
    assert codec.form == "top-k" and cols["phonetic.index"].dtype == np.uint16 and cols["phonetic.value"].size == 640
    back = codec.decode(cols)
    np.testing.assert_allclose(back.sum(-1), 1.0, atol=1e-6)
    top = np.argsort(-x, -1)[:, :16]
    np.testing.assert_allclose(np.take_along_axis(back, top, -1), np.take_along_axis(x, top, -1),
                               rtol=2e-3 + stats["max_tail"], atol=1e-7)  # float16 (subnormal below 6e-5), tail
    tail = 1 - np.take_along_axis(x, top, -1).sum(-1)
    assert stats["max_tail"] == pytest.approx(tail.max(), abs=1e-6)
    # a short distribution (4 emotions) stays dense: top-k would save nothing
    assert TargetCodec(TargetSpec("emotion", SR, None, 4, "distribution"), StorageConfig()).form == "dense"

    tags = TargetSpec("sound_event", SR, 2.0, 527, "multilabel")
    y = (rng.uniform(0, 1, (6, 527)) ** 30).astype(np.float32)  # a few confident tags, the rest near 0
    codec = TargetCodec(tags, StorageConfig(top_k=8))
    cols, stats = codec.encode(y)
    back = codec.decode(cols)
    kept = back > 0
    assert (kept.sum(-1) <= 8).all()
    np.testing.assert_allclose(back[kept], y[kept], rtol=2 ** -11)  # not renormalised: independent labels
    assert stats["max_tail"] == pytest.approx(np.where(kept, 0, y).max(), rel=1e-3)
    assert TargetCodec(tags, StorageConfig(top_k=None)).form == "dense"


def test_pitch_keeps_its_peak_and_the_heads_get_crepes_gaussian_around_it():
    """The peak position round-trips to 0.06 cents (uint16 over 359 bins); resampling positions onto the heads'
    frames and then building the Gaussian is what the collator does."""
    spec = TargetSpec("pitch", SR, 100.0, 360, "distribution", peak_std=1.25)
    positions = np.linspace(20.0, 250.0, 300, dtype=np.float32)[:, None]
    codec = TargetCodec(spec, StorageConfig())
    cols, stats = codec.encode(positions)
    assert codec.form == "peak" and cols["pitch"].dtype == np.uint16 and cols["pitch"].size == 300
    assert stats["max_abs_error"] * 20 < 0.1  # cents
    values, _ = prepare_targets({"pitch": [codec.decode(cols)]}, {"pitch": spec}, HeadConfig(num_frames=16))
    assert values["pitch"].shape == (1, 16, 360)
    np.testing.assert_allclose(values["pitch"][0].sum(-1), 1.0, atol=1e-6)
    # the heads' frame f samples position (f + 0.5) * 300 / 16 - 0.5 of the clip: the same Gaussian
    at = (np.arange(16) + 0.5) * 300 / 16 - 0.5
    expected = peak_distribution(torch.from_numpy(np.interp(at, np.arange(300), positions[:, 0])), 360, 1.25)
    np.testing.assert_allclose(values["pitch"][0], expected.numpy(), atol=2e-3)


def test_frames_kept_on_the_heads_grid_give_the_heads_the_same_values():
    spec = TargetSpec("loudness", SR, 100.0, 3, "regression")
    grid = HeadConfig(num_frames=16)
    x = np.random.default_rng(2).standard_normal((230, 3)).astype(np.float32)
    frames = stored_frames(spec, StorageConfig(), grid, 230 * 160)
    assert frames == 16 and stored_frames(spec, StorageConfig(), HeadConfig(num_frames=512), 230 * 160) is None
    assert stored_frames(spec, StorageConfig(), HeadConfig(num_frames=16, max_duration=4.0), 230 * 160) is None
    assert stored_frames(spec, StorageConfig(frame_rate=25.0), grid, 230 * 160) == 58
    kept = to_stored_frames(x, frames)
    full, _ = prepare_targets({"loudness": [x]}, {"loudness": spec}, grid)
    coarse, _ = prepare_targets({"loudness": [kept]}, {"loudness": spec}, grid)
    np.testing.assert_allclose(coarse["loudness"], full["loudness"], atol=1e-6)


def _rms_expert():
    """A small real frame-level expert: the RMS of each 10 ms frame, and the clip's peak."""
    from coat.experts import Expert

    class RMS(Expert):
        name = "rms_storage"
        sample_rate = SR

        def specs(self):
            return (TargetSpec("rms", SR, 100.0, 1, "regression"), TargetSpec("peak", SR, None, 1, "regression"))

        def params(self):
            return {}

        def load(self):
            pass

        def compute(self, waveforms, lengths):
            out = []
            for wave, n in zip(waveforms, lengths.tolist()):
                frames = self.specs()[0].num_frames(n)
                padded = torch.nn.functional.pad(wave[:n], (0, frames * 160 - n)).reshape(frames, 160)
                out.append({"rms": padded.pow(2).mean(-1, keepdim=True).sqrt().numpy(),
                            "peak": wave[:n].abs().max().reshape(1, 1).numpy()})
            return out

    return RMS()


def _examples(n=3):
    rng = np.random.default_rng(3)
    return [{"id": f"c{i}", "audio": (0.1 * rng.standard_normal(int(SR * (0.6 + 0.4 * i)))).astype(np.float32),
             "sampling_rate": SR} for i in range(n)]


def test_a_cache_made_for_the_heads_keeps_their_frames_and_is_theirs_only(tmp_path):
    expert, source = _rms_expert(), ExampleListSource(_examples())
    run8 = compute_targets(source, [expert], tmp_path, grid=HeadConfig(num_frames=8), progress=False)[expert.name]
    run16 = compute_targets(source, [expert], tmp_path, grid=HeadConfig(num_frames=16), progress=False)[expert.name]
    assert run8.path != run16.path and run16.computed == 3  # the fingerprint covers the heads' frame count
    cache = TargetCache(run8.path)
    info = json.loads((run8.path / "cache.json").read_text())
    assert info["format"] == CACHE_FORMAT == 2 and info["grid"] == {"num_frames": 8}
    assert info["storage"]["rms"]["form"] == "dense" and info["storage"]["rms"]["max_abs_error"] < 1e-3
    for i, example in enumerate(_examples()):
        got = cache[f"c{i}"]
        alone = expert.compute(torch.from_numpy(example["audio"])[None], torch.tensor([len(example["audio"])]))[0]
        assert got["rms"].shape == (8, 1) and got["peak"].shape == (1, 1)
        specs = {s.name: s for s in expert.specs()}
        ours, _ = prepare_targets({k: [v] for k, v in got.items()}, specs, HeadConfig(num_frames=8))
        theirs, _ = prepare_targets({k: [v] for k, v in alone.items()}, specs, HeadConfig(num_frames=8))
        for name in ours:
            np.testing.assert_allclose(ours[name], theirs[name], rtol=2 ** -11, atol=1e-7)


def test_an_old_format_cache_is_refused_with_the_command_that_recomputes_it(tmp_path):
    from coat.errors import SourceNotFoundError
    from coat.experts.config import TargetsConfig, target_caches

    expert, source = _rms_expert(), ExampleListSource(_examples(2))
    run = compute_targets(source, [expert], tmp_path / "cache", progress=False)[expert.name]
    info = json.loads((run.path / "cache.json").read_text())
    info["format"] = 1  # what every cache written before issue 17 says (or nothing: format 1 too)
    (run.path / "cache.json").write_text(json.dumps(info))
    with pytest.raises(OldCacheFormatError, match=r"format 1 .*Recompute it: `coat targets <config.yaml>`"):
        TargetCache(run.path)
    with pytest.raises(OldCacheFormatError, match="coat targets"):
        TargetCache.open(tmp_path / "cache", expert=expert.name)
    del info["format"]
    (run.path / "cache.json").write_text(json.dumps(info))
    with pytest.raises(OldCacheFormatError, match="format 1"):
        TargetCache(run.path)
    # a training run that finds only the old cache of its audio says the same, through its usual error
    old = run.path.rename(tmp_path / "cache" / f"{expert.name}-0123456789abcdef")
    targets = TargetsConfig(cache_dir=str(tmp_path / "cache"), compute=False)
    with pytest.raises(SourceNotFoundError, match=rf"{old}.*format 1.*coat targets"):
        target_caches(targets, source, [expert], None)


def test_the_encoder_target_from_the_frozen_tower_in_the_forward_equals_the_cached_one(tmp_path):
    """The forward takes the ``encoder`` target from the wrapped model's own audio tower; the heads get the values
    (and so the loss) the cached extraction of the same encoder gave."""
    import transformers as tf

    import coat
    from coat import zoo
    from coat.data.collate import CoATCollator

    path = zoo.create_tiny_model(tmp_path / "lalm")
    forward = build_expert("reconstruction", encoder_source=str(path))
    cached = build_expert("reconstruction", encoder_source=str(path), encoder_from="extraction")
    assert [s.computed_in for s in forward.specs()] == ["loader", "forward"]
    processor = tf.AutoProcessor.from_pretrained(path)
    rng = np.random.default_rng(4)
    clips = [(0.1 * rng.standard_normal(int(SR * s))).astype(np.float32) for s in (1.3, 0.7, 1.9)]
    extracted = cached(*pad_batch(clips))
    losses = []
    for expert, with_targets in ((forward, False), (cached, True)):
        base = tf.Qwen2AudioForConditionalGeneration.from_pretrained(path).eval()
        torch.manual_seed(0)  # the same thinking table and heads in both models
        model = coat.wrap(base, num_thinking=4)
        specs = [s for s in expert.specs() if s.name == "encoder"]
        model.add_heads(specs, HeadConfig(num_frames=8, d_model=32, heads=4))
        collate = CoATCollator(processor, heads=model.heads, weights=model.expert_weights)
        examples = [{"id": str(i), "audio": clip, "prompt": "which", "answer": "a",
                     "targets": {"encoder": extracted[i]["encoder"]} if with_targets else {}}
                    for i, clip in enumerate(clips)]
        batch = collate(examples)
        with torch.no_grad():
            out = model(**batch)
        losses.append(out["expert_losses"]["encoder"])
    assert torch.isfinite(losses[0]) and losses[0] > 0
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)


def test_a_top_k_target_whose_tail_is_not_negligible_is_reported_with_the_setting_that_keeps_more(tmp_path):
    from coat.experts import Expert

    class Flat(Expert):  # a 100-class distribution spread over every class: top-16 leaves out most of it
        name = "flat"
        sample_rate = SR

        def specs(self):
            return (TargetSpec("flat", SR, 50.0, 100, "distribution"),)

        def params(self):
            return {}

        def load(self):
            pass

        def compute(self, waveforms, lengths):
            return [{"flat": np.full((self.specs()[0].num_frames(int(n)), 100), 0.01, np.float32)} for n in lengths]

    run = compute_targets(ExampleListSource(_examples(2)), [Flat()], tmp_path, progress=False)["flat"]
    assert "leaves out 0.840 per frame on average" in run.summary()
    assert "experts[flat].storage.top_k higher, or null" in run.summary()
    expert = Flat()
    expert.storage = StorageConfig(top_k=None)
    run = compute_targets(ExampleListSource(_examples(2)), [expert], tmp_path, progress=False)["flat"]
    assert not run.lossy and "warning" not in run.summary()


def test_a_memory_mapped_dataset_is_decoded_once_per_extraction_run_for_every_expert(tmp_path):
    """A saved ``datasets`` dataset is read from its memory-mapped Arrow files row by row, and each example is
    decoded once per run, however many experts there are (they share each decoded batch)."""
    import io

    import datasets
    import soundfile as sf

    from coat.data.sources import DatasetSource

    def wav(i):
        buffer = io.BytesIO()
        sf.write(buffer, (0.1 * np.sin(np.arange(4000 + 800 * i) / (3 + i))).astype(np.float32), SR, format="WAV")
        return {"bytes": buffer.getvalue(), "path": None}

    features = datasets.Features({"id": datasets.Value("string"),
                                  "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}})
    rows = datasets.Dataset.from_dict({"id": [f"r{i}" for i in range(5)], "audio": [wav(i) for i in range(5)]},
                                      features=features)
    rows.cast_column("audio", datasets.Audio(sampling_rate=SR)).save_to_disk(tmp_path / "ds")

    class CountingSource(DatasetSource):  # the real source; it counts its decodes
        def read(self, i):
            self.decoded.append(i)
            return super().read(i)

    source = CountingSource(datasets.load_from_disk(str(tmp_path / "ds")))
    source.decoded = []
    assert source._audio_rows.cache_files  # memory-mapped Arrow, not rows held in memory
    experts = [_rms_expert(), build_expert("reconstruction", n_mels=8, logmel_from="extraction")]
    runs = compute_targets(source, experts, tmp_path / "cache", batch_seconds=1.0, progress=False)
    assert sorted(source.decoded) == list(range(5))  # five examples, two experts: five decodes
    assert all(run.cached == 5 for run in runs.values())


def test_training_says_when_the_encoder_target_cannot_come_from_the_forward(tmp_path):
    """The forward's tower output is the cached target only for the trained model's own, frozen tower."""
    from pathlib import Path

    from coat import zoo
    from coat.config_io import load_config
    from coat.training import TrainConfig, check_targets_made_in_training

    path = zoo.create_tiny_model(tmp_path / "lalm")
    tiny = Path(__file__).resolve().parent.parent / "configs" / "tiny.yaml"
    config = load_config(TrainConfig, tiny, [f"model.name_or_path={path}"])
    own = build_expert("reconstruction", encoder_source=str(path))
    check_targets_made_in_training(config, [own])  # its own frozen tower: fine
    config.lora.audio_target_modules = ["q_proj"]
    with pytest.raises(ValueError, match=r"trains that tower.*encoder_from: extraction"):
        check_targets_made_in_training(config, [own])
    config.lora.audio_target_modules = None
    other = zoo.create_tiny_model(tmp_path / "other", seed=1)
    with pytest.raises(ValueError, match=r"encoder_source is .*other.*not model.name_or_path.*encoder_from: extr"):
        check_targets_made_in_training(config, [build_expert("reconstruction", encoder_source=str(other))])
    check_targets_made_in_training(config, [build_expert("reconstruction", encoder_source=str(other),
                                                         encoder_from="extraction")])
