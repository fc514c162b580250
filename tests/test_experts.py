"""The built-in experts on real code paths: CREPE with its shipped weights, and tiny random checkpoints of the real
transformers classes saved with ``save_pretrained`` and loaded back through each expert's own loading path."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from coat.experts import (
    EmotionExpert,
    ModelSourceError,
    PhoneticExpert,
    PitchExpert,
    ReconstructionExpert,
    SoundEventExpert,
    available_experts,
    build_expert,
    distribution_to_hz,
    load_pretrained,
)
from coat.experts.emotion import resolve_backend
from coat.experts.pitch import hz_to_cents

SR = 16000


def batch(clips: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-zero-padded (batch, samples) waveforms and their lengths."""
    lengths = torch.tensor([len(c) for c in clips])
    waveforms = torch.zeros(len(clips), int(lengths.max()))
    for i, c in enumerate(clips):
        waveforms[i, : len(c)] = torch.as_tensor(c)
    return waveforms, lengths


def noise_clips(seconds: list[float], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(int(s * SR))).astype(np.float32) for s in seconds]


def check_targets(expert, clips, out):
    """Every target the cache keeps is present, float32, (spec.num_frames(length), width: dim, or 1 for peak
    positions) and valid for its kind."""
    assert len(out) == len(clips)
    for clip, targets in zip(clips, out):
        assert {s.name for s in expert.cached_specs()} <= set(targets)
        for spec in expert.cached_specs():
            t = targets[spec.name]
            assert t.dtype == np.float32 and t.shape == (spec.num_frames(len(clip)), spec.width), spec.name
            assert np.isfinite(t).all()
            if spec.peak_std is not None:
                assert ((t >= 0) & (t <= spec.dim - 1)).all()
            elif spec.kind == "distribution":
                np.testing.assert_allclose(t.sum(-1), 1.0, atol=1e-4)
                assert (t >= 0).all()
            if spec.kind == "multilabel":
                assert ((t >= 0) & (t <= 1)).all()


def check_batched_equals_single(expert, clips, out, atol=1e-4):
    for clip, targets in zip(clips, out):
        alone = expert(*batch([clip]))[0]
        for name, value in targets.items():
            np.testing.assert_allclose(value, alone[name], atol=atol, err_msg=name)


# --- tiny checkpoints of the real classes ----------------------------------------------------------------------
def tiny_wav2vec2_config(**kwargs):
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20, conv_dim=(8,) * 7,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, feat_extract_norm="layer",
        do_stable_layer_norm=True, classifier_proj_size=8, **kwargs,
    )


def wav2vec2_feature_extractor():
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, padding_value=0.0, do_normalize=True,
                                    return_attention_mask=True)


@pytest.fixture(scope="module")
def tiny_emotion_dir(tmp_path_factory):
    from transformers import Wav2Vec2ForSequenceClassification

    torch.manual_seed(0)
    labels = ["neutral", "happy", "sad", "angry"]
    config = tiny_wav2vec2_config(num_labels=4, id2label=dict(enumerate(labels)),
                                  label2id={n: i for i, n in enumerate(labels)})
    path = tmp_path_factory.mktemp("tiny_emotion")
    Wav2Vec2ForSequenceClassification(config).save_pretrained(path)
    wav2vec2_feature_extractor().save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_phonetic_dir(tmp_path_factory):
    from transformers import Wav2Vec2ForCTC

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_phonetic")
    Wav2Vec2ForCTC(tiny_wav2vec2_config(vocab_size=12)).save_pretrained(path)
    wav2vec2_feature_extractor().save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_sound_event_dir(tmp_path_factory):
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    torch.manual_seed(0)
    config = ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                       patch_size=2, max_length=24, num_mel_bins=16, frequency_stride=2, time_stride=2,
                       num_labels=5, problem_type="multi_label_classification")
    path = tmp_path_factory.mktemp("tiny_sound_event")
    ASTForAudioClassification(config).save_pretrained(path)
    ASTFeatureExtractor(num_mel_bins=16, max_length=24).save_pretrained(path)
    return str(path)


TINY_TEXT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=37, vocab_size=99)


def tiny_lalm(family: str):
    """A tiny random LALM of a supported family (audio encoder width 16, or 32 after Omni's projection)."""
    import transformers

    if family == "qwen2_audio":
        audio = dict(d_model=16, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=32, num_mel_bins=80)
        return transformers.Qwen2AudioForConditionalGeneration(
            transformers.Qwen2AudioConfig(audio_config=audio, text_config=TINY_TEXT))
    if family == "audioflamingo3":
        audio = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32,
                     num_mel_bins=80)
        return transformers.AudioFlamingo3ForConditionalGeneration(
            transformers.AudioFlamingo3Config(audio_config=audio, text_config=TINY_TEXT))
    thinker = dict(
        audio_config=dict(d_model=16, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=32,
                          num_mel_bins=80, output_dim=32, n_window=50),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=32,
                           fullatt_block_indexes=[0]),
        text_config=dict(TINY_TEXT, rope_parameters=dict(rope_type="default", mrope_section=[1, 1, 2],
                                                         rope_theta=10000.0)),
    )
    return transformers.Qwen2_5OmniForConditionalGeneration(
        transformers.Qwen2_5OmniConfig(thinker_config=thinker, enable_audio_output=False))


@pytest.fixture(scope="module", params=["qwen2_audio", "audioflamingo3", "qwen2_5_omni"])
def tiny_lalm_dir(request, tmp_path_factory):
    from transformers import WhisperFeatureExtractor

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp(f"tiny_{request.param}")
    tiny_lalm(request.param).save_pretrained(path)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(path)
    return request.param, str(path)


# --- pitch ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tones():
    """0.25 s silence, a tone, 0.25 s silence; clips of different lengths so the batch really pads."""
    clips = []
    for f, tone_s in zip((110.0, 220.0, 440.0, 880.0), (0.5, 0.4, 0.3, 0.5)):
        t = np.arange(int(tone_s * SR)) / SR
        tone = 0.5 * np.sin(2 * np.pi * f * t)
        silence = np.zeros(SR // 4)
        clips.append((f, np.concatenate([silence, tone, silence]).astype(np.float32)))
    return clips


@pytest.fixture(scope="module")
def pitch_expert():
    return PitchExpert(model="tiny")


def test_pitch_finds_tones_and_marks_silence_unvoiced(pitch_expert, tones):
    clips = [c for _, c in tones]
    out = pitch_expert(*batch(clips))
    check_targets(pitch_expert, clips, out)
    for (f, clip), targets in zip(tones, out):
        voicing = targets["voicing"][:, 0]
        onset, offset = SR // 4 // 160, (len(clip) - SR // 4) // 160  # frames where the tone starts / ends
        inside = slice(onset + 4, offset - 4)  # frames whose 64 ms window lies inside the tone
        assert (voicing[inside] > 0.5).all(), f
        hz = distribution_to_hz(targets["pitch"][inside])
        assert np.abs(hz_to_cents(hz) - hz_to_cents(f)).max() < 25.0, f
        assert (voicing[: onset - 4] < 0.1).all() and (voicing[offset + 4 :] < 0.1).all(), f


def test_pitch_raw_crepe_periodicity_is_low_in_silence(tones):
    # without the loudness gate it is CREPE's own periodicity that says "unvoiced"
    expert = PitchExpert(model="tiny", silence_db=None)
    clip = tones[1][1]
    voicing = expert(*batch([clip]))[0]["voicing"][:, 0]
    assert voicing[:15].max() < 0.3 and voicing[-15:].max() < 0.3
    assert voicing[35:55].min() > 0.5


def test_pitch_batched_equals_one_at_a_time(pitch_expert, tones):
    clips = [c for _, c in tones[:3]]
    check_batched_equals_single(pitch_expert, clips, pitch_expert(*batch(clips)), atol=1e-4)


def test_pitch_peak_is_crepes_own_decoding_of_its_posterior(pitch_expert, tones):
    """The default target keeps CREPE's pitch (the local weighted average around its peak bin) where the "crepe"
    target keeps the whole posterior; the two give the same Hz, and the rebuilt Gaussian peaks there too."""
    from coat.targets import TargetSpec, peak_distribution

    crepe = PitchExpert(model="tiny", target="crepe")
    (peak_spec, _), (full_spec, _) = pitch_expert.specs(), crepe.specs()
    assert (peak_spec.peak_std, peak_spec.width, full_spec.peak_std, full_spec.width) == (1.25, 1, None, 360)
    assert isinstance(peak_spec, TargetSpec) and peak_spec.dim == full_spec.dim == 360
    clip = tones[1][1]
    peaks = pitch_expert(*batch([clip]))[0]["pitch"]
    full = crepe(*batch([clip]))[0]["pitch"]
    np.testing.assert_allclose(distribution_to_hz(peaks), distribution_to_hz(full), rtol=1e-5)
    rebuilt = peak_distribution(torch.from_numpy(peaks[:, 0]), 360, peak_spec.peak_std).numpy()
    np.testing.assert_allclose(rebuilt.sum(-1), 1.0, atol=1e-6)
    inside = slice(35, 55)  # the tone (silence around it: CREPE's peak there may sit at the edge of its bins)
    cents = np.abs(hz_to_cents(distribution_to_hz(rebuilt[inside])) - hz_to_cents(distribution_to_hz(peaks[inside])))
    assert cents.max() < 0.1  # CREPE's decoding of the rebuilt Gaussian gives back its centre


def test_distribution_to_hz_inverts_the_bin_layout():
    from coat.experts.pitch import bin_cents, cents_to_hz

    dist = np.zeros((3, 360))
    dist[np.arange(3), [0, 100, 359]] = 1.0
    np.testing.assert_allclose(distribution_to_hz(dist), cents_to_hz(bin_cents()[[0, 100, 359]]))
    assert abs(float(distribution_to_hz(dist[1])) - 10 * 2 ** ((1997.3794084376191 + 2000) / 1200)) < 1e-6
    # the cached form of the default pitch target, (frames, 1) bin positions, reads the same way
    np.testing.assert_allclose(distribution_to_hz(np.array([[0.0], [100.0], [359.0]])),
                               cents_to_hz(bin_cents()[[0, 100, 359]]))


# --- transformers classifiers -----------------------------------------------------------------------------------
def test_emotion_transformers_backend(tiny_emotion_dir):
    expert = build_expert("emotion", source=tiny_emotion_dir, window_s=0.5, hop_s=0.25)
    assert expert.backend == "transformers"
    assert {s.name: (s.frame_rate, s.dim, s.kind) for s in expert.specs()} == {
        "emotion": (None, 4, "distribution"), "emotion_frames": (4.0, 4, "distribution")}
    clips = noise_clips([1.2, 0.7, 0.3, 0.01])
    out = expert(*batch(clips))
    check_targets(expert, clips, out)
    check_batched_equals_single(expert, clips, out)
    assert expert.labels == ["neutral", "happy", "sad", "angry"]


def test_sound_event_multilabel(tiny_sound_event_dir):
    expert = SoundEventExpert(source=tiny_sound_event_dir)
    assert {s.name: (s.frame_rate, s.dim, s.kind) for s in expert.specs()} == {
        "sound_event_frames": (2.0, 5, "multilabel"), "sound_event": (None, 5, "multilabel")}
    clips = noise_clips([2.1, 0.4, 0.01])
    out = expert(*batch(clips))
    check_targets(expert, clips, out)
    assert out[0]["sound_event_frames"].shape == (5, 5)  # ceil(2.1 s * 2 frames/s)
    check_batched_equals_single(expert, clips, out)


def test_phonetic_ctc_posteriors(tiny_phonetic_dir):
    expert = PhoneticExpert(source=tiny_phonetic_dir)
    (spec,) = expert.specs()
    assert (spec.name, spec.frame_rate, spec.dim, spec.kind) == ("phonetic", 50.0, 12, "distribution")
    clips = noise_clips([1.0, 0.51, 0.2, 0.01])
    out = expert(*batch(clips))
    check_targets(expert, clips, out)
    assert out[0]["phonetic"].shape == (50, 12) and out[1]["phonetic"].shape == (26, 12)
    check_batched_equals_single(expert, clips, out)


# --- reconstruction ---------------------------------------------------------------------------------------------
def test_reconstruction_logmel_shapes_and_batching():
    expert = ReconstructionExpert(logmel_from="extraction")
    (spec,) = expert.specs()
    assert (spec.name, spec.frame_rate, spec.dim, spec.kind) == ("logmel", 100.0, 80, "regression")
    clips = noise_clips([1.0, 0.505, 0.01])
    out = expert(*batch(clips))
    check_targets(expert, clips, out)
    assert [o["logmel"].shape[0] for o in out] == [100, 51, 1]
    check_batched_equals_single(expert, clips, out, atol=1e-5)
    silent = expert(torch.zeros(1, 1600), torch.tensor([1600]))[0]["logmel"]
    np.testing.assert_allclose(silent, np.log(1e-5), rtol=1e-6)


def test_logmel_is_made_in_the_data_loader_with_the_values_extraction_gives():
    loader, cached = ReconstructionExpert(), ReconstructionExpert(logmel_from="extraction")
    assert [s.computed_in for s in loader.specs()] == ["loader"] and loader.cached_specs() == ()
    assert cached.cached_specs() == cached.specs()
    clips = noise_clips([1.0, 0.505])
    for clip, expected in zip(clips, cached(*batch(clips))):
        got = loader.loader_targets(clip, SR)
        np.testing.assert_allclose(got["logmel"], expected["logmel"], atol=1e-5)
        # audio at another rate is brought to the expert's first (the data loader holds the processor's rate)
        from coat.data.sources import resample

        at_8k = loader.loader_targets(resample(clip, SR, 8000), 8000)["logmel"]
        assert at_8k.shape == expected["logmel"].shape
    assert PitchExpert().loader_targets(clips[0], SR) == {}


def test_reconstruction_lalm_encoder(tiny_lalm_dir):
    family, path = tiny_lalm_dir
    expert = ReconstructionExpert(encoder_source=path, logmel_from="extraction", encoder_from="extraction")
    width = 32 if family == "qwen2_5_omni" else 16
    specs = {s.name: (s.frame_rate, s.dim, s.kind) for s in expert.specs()}
    assert specs == {"logmel": (100.0, 80, "regression"), "encoder": (25.0, width, "embedding")}
    assert [s.computed_in for s in ReconstructionExpert(encoder_source=path).specs()] == ["loader", "forward"]
    clips = noise_clips([2.0, 0.77])
    out = expert(*batch(clips))
    check_targets(expert, clips, out)
    assert out[0]["encoder"].shape == (50, width) and out[1]["encoder"].shape == (20, width)
    check_batched_equals_single(expert, clips, out)
    assert expert.params()["encoder_source"] == path


def test_reconstruction_encoder_concatenates_30s_windows(tiny_lalm_dir):
    family, path = tiny_lalm_dir
    clips = noise_clips([31.0])
    out = ReconstructionExpert(encoder_source=path, encoder_from="extraction")(*batch(clips))[0]
    width = 32 if family == "qwen2_5_omni" else 16
    assert out["encoder"].shape == (775, width) and out["logmel"].shape == (3100, 80)


SPEECHBRAIN_TINY_CLASSIFIER = """\
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: 16
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.Xvector.Xvector
    in_channels: 16
    tdnn_channels: [8, 8, 8, 8, 16]
    lin_neurons: 8
classifier: !new:speechbrain.lobes.models.Xvector.Classifier
    input_shape: [null, null, 8]
    lin_blocks: 1
    lin_neurons: 8
    out_neurons: 3
label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder
modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    classifier: !ref <classifier>
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        label_encoder: !ref <label_encoder>
    paths:
        label_encoder: {folder}/label_encoder.txt
"""


def test_emotion_speechbrain_backend_on_a_local_folder(tmp_path):
    # a tiny random speechbrain EncoderClassifier (x-vector) in the layout of speechbrain's hub models
    from speechbrain.dataio.encoder import CategoricalEncoder

    torch.manual_seed(0)
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(["neu", "hap", "sad"])
    encoder.save(tmp_path / "label_encoder.txt")
    (tmp_path / "hyperparams.yaml").write_text(SPEECHBRAIN_TINY_CLASSIFIER.format(folder=tmp_path))
    expert = EmotionExpert(str(tmp_path), speechbrain_interface=None)
    assert expert.backend == "speechbrain"
    assert [s.dim for s in expert.specs()] == [3, 3] and expert.labels == ["neu", "hap", "sad"]
    clips = noise_clips([1.0, 0.6])
    out = expert(*batch(clips))
    check_targets(expert, clips, out)
    # speechbrain masks padding through relative lengths, which round: close, not bit-equal
    check_batched_equals_single(expert, clips, out, atol=5e-3)


def test_speechbrain_never_runs_code_planted_in_a_shared_temp_folder(tmp_path, monkeypatch):
    # another user of the machine plants a hyperparams.yaml (HyperPyYAML runs `!apply:` tags) where the loader
    # used to look first: $TMPDIR/coat_speechbrain/<model>/
    import tempfile

    from speechbrain.dataio.encoder import CategoricalEncoder

    model = tmp_path / "model"
    model.mkdir()
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(["neu", "hap", "sad"])
    encoder.save(model / "label_encoder.txt")
    (model / "hyperparams.yaml").write_text(SPEECHBRAIN_TINY_CLASSIFIER.format(folder=model))
    shared = tmp_path / "shared_tmp"
    planted = shared / "coat_speechbrain" / str(model).strip("/").replace("/", "--")
    planted.mkdir(parents=True)
    marker = tmp_path / "planted_code_ran"
    (planted / "hyperparams.yaml").write_text(f"planted: !apply:os.mkdir [{marker}]\n")
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home_cache"))
    expert = EmotionExpert(str(model), speechbrain_interface=None)
    clips = noise_clips([0.6])
    check_targets(expert, clips, expert(*batch(clips)))
    assert not marker.exists()
    private = tmp_path / "home_cache" / "coat" / "speechbrain"
    assert [p.name for p in private.iterdir()] == [str(model.resolve()).strip("/").replace("/", "--")]
    assert all((p.stat().st_mode & 0o777) == 0o700 for p in (private.parent, private, *private.iterdir()))


# --- sources, registry, fingerprints ----------------------------------------------------------------------------
def test_missing_folder_is_a_clear_error(tmp_path):
    missing = str(tmp_path / "no_such_model")
    with pytest.raises(ModelSourceError, match="treated as a local folder.*does not exist"):
        PhoneticExpert(source=missing).specs()
    with pytest.raises(ModelSourceError, match="local folder.*does not exist"):
        build_expert("emotion", source=missing, backend="transformers")(*batch(noise_clips([0.5])))


def test_folder_without_a_model_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelSourceError, match="local folder, but it has no config.json"):
        SoundEventExpert(source=str(tmp_path)).specs()
    with pytest.raises(ModelSourceError, match="local folder, but it has no config.json"):
        ReconstructionExpert(encoder_source=str(tmp_path)).specs()
    with pytest.raises(ModelSourceError, match="local folder, but it has no hyperparams.yaml"):
        EmotionExpert(source=str(tmp_path), backend="speechbrain").load()


def test_wrong_model_class_is_a_clear_error(tiny_sound_event_dir, tiny_emotion_dir, tiny_phonetic_dir):
    # an AST tagger is no CTC model at all: AutoModelForCTC refuses its config
    with pytest.raises(ModelSourceError, match="local folder.*wrong model class"):
        PhoneticExpert(source=tiny_sound_event_dir).load()
    # a wav2vec2 classifier *would* load as a CTC model, with a random head: refused by its saved architecture
    with pytest.raises(ModelSourceError, match="local folder.*Wav2Vec2ForSequenceClassification.*wrong model class"):
        PhoneticExpert(source=tiny_emotion_dir).specs()
    with pytest.raises(ModelSourceError, match="Wav2Vec2ForCTC checkpoint: wrong model class"):
        SoundEventExpert(source=tiny_phonetic_dir).load()
    # the shared loader itself, on a config its Auto class does not know
    from transformers import AutoModelForCTC

    with pytest.raises(ModelSourceError, match="AutoModelForCTC failed: .*wrong model class"):
        load_pretrained(AutoModelForCTC.from_pretrained, tiny_sound_event_dir, "phonetic model")
    with pytest.raises(ModelSourceError, match="model_type 'audio-spectrogram-transformer'"):
        ReconstructionExpert(encoder_source=tiny_sound_event_dir).specs()


def test_offline_hub_id_is_a_clear_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelSourceError, match="treated as a hub id.*offline"):
        PhoneticExpert(source="coat-tests/no-such-phoneme-model").specs()


def test_emotion_backend_auto(tmp_path, tiny_emotion_dir):
    (tmp_path / "hyperparams.yaml").write_text("{}\n")
    assert resolve_backend(str(tmp_path)) == "speechbrain"
    assert resolve_backend(tiny_emotion_dir) == "transformers"
    assert resolve_backend("speechbrain/emotion-recognition-wav2vec2-IEMOCAP") == "speechbrain"
    assert resolve_backend("superb/wav2vec2-base-superb-er") == "transformers"
    with pytest.raises(ValueError, match="backend"):
        resolve_backend(tiny_emotion_dir, "onnx")


def test_registry_and_params(tiny_phonetic_dir):
    assert {"pitch", "emotion", "sound_event", "phonetic", "reconstruction"} <= set(available_experts())
    assert isinstance(build_expert("pitch", model="tiny"), PitchExpert)
    with pytest.raises(ValueError, match="bad parameters"):
        build_expert("pitch", size="tiny")
    a, b = ReconstructionExpert(), ReconstructionExpert(n_mels=64)
    assert a.fingerprint_params() != b.fingerprint_params()
    assert PitchExpert("tiny").fingerprint_params() != PitchExpert("full").fingerprint_params()
    for expert in (a, PitchExpert(), PhoneticExpert(source=tiny_phonetic_dir)):
        json.dumps(expert.fingerprint_params())  # goes into the cache fingerprint


def test_importing_experts_stays_light():
    code = "import sys, coat.experts; print([m for m in ('torchcrepe', 'speechbrain', 'librosa') if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# --- real checkpoints (hub) -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_pitch_full_model(tones):
    f, clip = tones[2]
    targets = PitchExpert(model="full")(*batch([clip]))[0]
    hz = distribution_to_hz(targets["pitch"][35:50])
    assert np.abs(hz_to_cents(hz) - hz_to_cents(f)).max() < 25.0


@pytest.mark.slow
def test_speechbrain_iemocap_emotion():
    expert = EmotionExpert("speechbrain/emotion-recognition-wav2vec2-IEMOCAP")
    clips = noise_clips([2.0, 1.0])
    out = expert(*batch(clips))
    check_targets(expert, clips, out)
    assert out[0]["emotion"].shape == (1, 4)


@pytest.mark.slow
def test_real_ast_audioset_and_phoneme_models():
    clips = noise_clips([1.5])
    for expert in (SoundEventExpert(), PhoneticExpert()):
        check_targets(expert, clips, expert(*batch(clips)))
    assert SoundEventExpert().specs()[0].dim == 527
