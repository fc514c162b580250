"""Random-weight models of every supported family, built from a config, and inputs in their processors'
format. Tests use the ``tiny`` sizes (the sizes transformers' own tests use), benchmarks the ``mid`` sizes and
the released configurations (:func:`released_config`: every width, vocabulary size, mel-bin count, audio window and
special id of the released checkpoints), the demo a small Qwen2-Audio it pre-trains; ``create_tiny_model`` writes
the tiny Qwen2-Audio with the synthetic benchmark's words that smoke-run configs use. Nothing here downloads
anything.

    model = build_model("qwen2_audio", "tiny")
    inputs = make_inputs(model, audios_per_prompt=[2, 1], padding_side="left")
    model = build_released("qwen2_audio", decoder_layers=2, audio_layers=2)   # real widths, 2 + 2 layers
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import transformers as tf

from coat.files import atomic_dir
from coat.progress import quiet_hub_bars

FAMILIES = ("qwen2_audio", "qwen2_5_omni_thinker", "audioflamingo3", "voxtral", "musicflamingo")

# Special ids shared by the tiny and mid configs (vocab 110): text ids are drawn from [3, 100), which are ordinary
# text tokens in the released vocabularies too. make_inputs reads the special ids of a released config from RELEASED.
PAD, BOS, EOS = 0, 1, 2
AUDIO, AUDIO_BOS, AUDIO_EOS = 100, 101, 102
TEXT_ID_RANGE = (3, 100)
TOY_IDS = dict(pad=PAD, bos=BOS, audio=AUDIO, audio_bos=AUDIO_BOS, audio_eos=AUDIO_EOS)
MEL_FRAMES_PER_SECOND = 100  # every supported processor: hop 160 at 16 kHz

_SIZES = {
    # text: hidden, intermediate, layers, heads, kv heads, vocab ; audio: d_model, layers, heads, ffn, source positions
    # (positions = mel frames / 2 = audio tokens x 2: mid has the released families' 30 s window, 750 audio tokens,
    # so the benchmarks' prompt lengths are a real LALM's)
    "tiny": dict(text=(32, 64, 2, 4, 2, 110), audio=(16, 2, 4, 32, 16)),
    "mid": dict(text=(512, 1408, 8, 8, 4, 4096), audio=(256, 4, 4, 1024, 1500)),
}


def _text(size: str, family: str) -> dict:
    hidden, inter, layers, heads, kv, vocab = _SIZES[size]["text"]
    cfg = dict(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers, num_attention_heads=heads,
               num_key_value_heads=kv, vocab_size=vocab, max_position_embeddings=2048, pad_token_id=PAD,
               bos_token_id=BOS, eos_token_id=EOS, tie_word_embeddings=False)
    if family == "voxtral":
        cfg.update(model_type="llama", head_dim=hidden // heads)
    elif family == "qwen2_5_omni_thinker":
        half = hidden // heads // 2
        cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0,
                                  "mrope_section": [half // 4, half // 4, half - 2 * (half // 4)]}
    else:
        cfg["model_type"] = "qwen2"
    return cfg


def _audio(size: str) -> dict:
    d_model, layers, heads, ffn, positions = _SIZES[size]["audio"]
    return dict(d_model=d_model, encoder_layers=layers, encoder_attention_heads=heads, encoder_ffn_dim=ffn,
                num_mel_bins=80, max_source_positions=positions)


def tiny_config(family: str, size: str = "tiny", text: dict | None = None, audio: dict | None = None, **ids):
    """A config of ``family`` ('tiny': hidden 32, 2 layers, vocab 110; 'mid': hidden 512, 8 layers, 30 s audio).

    For ``qwen2_audio``, ``text`` / ``audio`` override fields of the text and audio-encoder configs (other sizes,
    another vocabulary) and ``ids`` the special ids (``audio_token_index``, ``audio_eos_token_id``), all before the
    config is built, so the fields it derives from them follow."""
    if family == "qwen2_audio":
        ids = {"audio_token_index": AUDIO, "audio_eos_token_id": AUDIO_EOS, **ids}
        audio = {"model_type": "qwen2_audio_encoder", **_audio(size), **(audio or {})}
        return tf.Qwen2AudioConfig(audio_config=audio, text_config={**_text(size, family), **(text or {})}, **ids)
    if family == "audioflamingo3":
        return tf.AudioFlamingo3Config(audio_config=dict(model_type="audioflamingo3_encoder", **_audio(size)),
                                       text_config=_text(size, family), audio_token_id=AUDIO)
    if family == "musicflamingo":
        return tf.MusicFlamingoConfig(audio_config=dict(model_type="audioflamingo3_encoder", **_audio(size)),
                                      text_config=_text(size, family), audio_token_id=AUDIO,
                                      audio_bos_token_id=AUDIO_BOS, audio_eos_token_id=AUDIO_EOS)
    if family == "voxtral":
        a = _audio(size)
        audio = dict(model_type="voxtral_encoder", hidden_size=a["d_model"], num_hidden_layers=a["encoder_layers"],
                     num_attention_heads=a["encoder_attention_heads"], intermediate_size=4 * a["d_model"],
                     num_mel_bins=80, max_source_positions=a["max_source_positions"])
        return tf.VoxtralConfig(audio_config=audio, text_config=_text(size, family), audio_token_id=AUDIO)
    if family == "qwen2_5_omni_thinker":
        hidden = _SIZES[size]["text"][0]
        audio = dict(_audio(size), n_window=4, output_dim=hidden)
        vision = dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=hidden)
        return tf.Qwen2_5OmniThinkerConfig(
            audio_config=audio, vision_config=vision, text_config=_text(size, family), audio_token_index=AUDIO,
            audio_start_token_id=AUDIO_BOS, audio_end_token_id=AUDIO_EOS, image_token_index=103,
            video_token_index=104, vision_start_token_id=105, vision_end_token_id=106, pad_token_id=PAD)
    raise ValueError(f"unknown family {family!r}; one of {FAMILIES}")


MODEL_CLASSES = {
    "qwen2_audio": "Qwen2AudioForConditionalGeneration",
    "audioflamingo3": "AudioFlamingo3ForConditionalGeneration",
    "voxtral": "VoxtralForConditionalGeneration",
    "qwen2_5_omni_thinker": "Qwen2_5OmniThinkerForConditionalGeneration",
    "musicflamingo": "MusicFlamingoForConditionalGeneration",
}


def build_model(family: str, size: str = "tiny", seed: int = 0, dtype: torch.dtype = torch.float32):
    """A randomly initialised model of ``family`` in eval mode."""
    torch.manual_seed(seed)
    model = getattr(tf, MODEL_CLASSES[family])(tiny_config(family, size)).to(dtype).eval()
    model.generation_config.pad_token_id = PAD
    model.generation_config.eos_token_id = None  # random weights: never stop early, so lengths are fixed
    return model


# ----------------------------------------------------------------------------------------------------- released
# The released checkpoints' configurations, read from public sources (this machine has no hub). A key a released
# config.json leaves out takes its transformers class default, so those defaults are the released values. Sources:
# [Q2A]  huggingface.co/Qwen/Qwen2-Audio-7B-Instruct: config.json (blame 9fffe918: audio d_model 1280, 32 layers,
#        20 heads, ffn 5120, 128 mels, 1500 positions; audio_token_index 151646; text intermediate 11008, 8192
#        positions, rms_norm_eps 1e-5, rope_theta 10000, vocab 156032, bos 151643, eos 151645; hidden 4096, 32
#        layers, 32 heads, 32 kv heads are the Qwen2Config defaults it leaves out), preprocessor_config.json (16 kHz,
#        n_fft 400, hop 160, chunk_length 30, feature_size 128), generation_config.json (pad 151643, eos 151645)
#        and its tokenizer's added tokens (<|AUDIO|> 151646, <|audio_bos|> 151647, <|audio_eos|> 151648,
#        <|im_start|> 151644).
# [OMNI] Qwen/Qwen2.5-Omni-7B's thinker: transformers' Qwen2_5OmniThinkerConfig and Qwen2_5OmniAudioEncoderConfig
#        defaults, documented as that checkpoint's (audio 151646, audio_start 151647, audio_end 151648, image 151655,
#        video 151656, 25 position ids per second, 2 s chunks; audio encoder 1280 x 32 layers, 20 heads, ffn 5120, 128
#        mels, 1500 positions, n_window 100, output 3584); the text model as the released thinker config.json has it
#        (and fine-tunes copy it, e.g. huggingface.co/gijs/aud2seq-model): Qwen2.5-7B's hidden 3584, intermediate
#        18944, 28 layers, 28 heads, 4 kv heads, vocab 152064, rope_theta 1e6, mrope_section [16, 24, 24], 32768
#        positions, untied lm_head, pad 151643; NVIDIA NeMo's Qwen2.5-Omni provider lists the same vocabulary, mRoPE
#        sections and special ids. The vision tower is Qwen2.5-VL's (hidden 1280, intermediate 3420, 16 heads, 32
#        blocks, full attention in blocks 7/15/23/31, 112-pixel windows, out 3584), unused for audio but built.
# [AF3]  nvidia/audio-flamingo-3-hf: transformers' convert_audioflamingo3_to_hf.py (text Qwen2Config: hidden 3584,
#        intermediate 18944, 28 layers, 28 heads, 4 kv heads, rope_theta 1e6, vocab 151672, bos 151643, eos 151645;
#        generation pad 151643; processor WhisperFeatureExtractor(feature_size=128): 30 s windows at 16 kHz) and the
#        AudioFlamingo3Config / encoder defaults documented as that checkpoint's (<sound> 151669; encoder 1280 x 32
#        layers, 20 heads, ffn 5120, 128 mels, 1500 positions). huggingface.co/hf-internal-testing/
#        tiny-processor-audioflamingo3's config.json has the same widths and <sound> id.
_WHISPER_LARGE_V3 = dict(d_model=1280, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120,
                         num_mel_bins=128, max_source_positions=1500)
_QWEN25_7B = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                  num_key_value_heads=4, max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=False)
RELEASED = {
    "qwen2_audio": dict(
        checkpoint="Qwen/Qwen2-Audio-7B-Instruct", sampling_rate=16000, mel_bins=128, window_s=30, eos=151645,
        ids=dict(pad=151643, bos=151644, audio=151646, audio_bos=151647, audio_eos=151648)),
    "qwen2_5_omni_thinker": dict(
        checkpoint="Qwen/Qwen2.5-Omni-7B (its thinker)", sampling_rate=16000, mel_bins=128, window_s=30, eos=151645,
        ids=dict(pad=151643, bos=151644, audio=151646, audio_bos=151647, audio_eos=151648)),
    "audioflamingo3": dict(
        checkpoint="nvidia/audio-flamingo-3-hf", sampling_rate=16000, mel_bins=128, window_s=30, eos=151645,
        ids=dict(pad=151643, bos=151644, audio=151669, audio_bos=None, audio_eos=None)),
}


def released_config(family: str, decoder_layers: int | None = None, audio_layers: int | None = None,
                    vision_layers: int | None = None):
    """The released configuration of ``family`` (sources above), optionally with fewer decoder, audio-encoder or
    (Qwen2.5-Omni) vision layers: every width, vocabulary size, mel-bin count, audio window and special id stays."""
    if family not in RELEASED:
        raise ValueError(f"no released configuration for {family!r}; one of {sorted(RELEASED)}")
    audio = dict(_WHISPER_LARGE_V3, encoder_layers=audio_layers or _WHISPER_LARGE_V3["encoder_layers"])
    if family == "qwen2_audio":
        text = dict(model_type="qwen2", hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                    num_attention_heads=32, num_key_value_heads=32, vocab_size=156032, max_position_embeddings=8192,
                    rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=151643,
                    eos_token_id=151645)
        text["num_hidden_layers"] = decoder_layers or text["num_hidden_layers"]
        return tf.Qwen2AudioConfig(audio_config=dict(model_type="qwen2_audio_encoder", **audio), text_config=text,
                                   audio_token_index=151646, pad_token_id=151643)
    if family == "audioflamingo3":
        text = dict(model_type="qwen2", **_QWEN25_7B, vocab_size=151672, rope_theta=1000000.0, bos_token_id=151643,
                    eos_token_id=151645)
        text["num_hidden_layers"] = decoder_layers or text["num_hidden_layers"]
        return tf.AudioFlamingo3Config(audio_config=dict(model_type="audioflamingo3_encoder", **audio),
                                       text_config=text, audio_token_id=151669)
    text = dict(_QWEN25_7B, vocab_size=152064, num_hidden_layers=decoder_layers or _QWEN25_7B["num_hidden_layers"],
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]})
    vision = dict(depth=vision_layers or 32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                  out_hidden_size=3584, fullatt_block_indexes=[7, 15, 23, 31], patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2, window_size=112, in_channels=3)
    return tf.Qwen2_5OmniThinkerConfig(
        audio_config=dict(audio, n_window=100, output_dim=3584), vision_config=vision, text_config=text,
        audio_token_index=151646, image_token_index=151655, video_token_index=151656, audio_start_token_id=151647,
        audio_end_token_id=151648, vision_start_token_id=151652, vision_end_token_id=151653,
        position_id_per_seconds=25, seconds_per_chunk=2, pad_token_id=151643)


def build_released(family: str, decoder_layers: int | None = None, audio_layers: int | None = None,
                   vision_layers: int | None = None, dtype: torch.dtype = torch.float32, device="cpu", seed: int = 0):
    """A random-weight model of the released configuration (see :func:`released_config`), in eval mode, initialised
    directly on ``device`` (``"meta"`` builds it without memory, for counting parameters)."""
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = getattr(tf, MODEL_CLASSES[family])(released_config(family, decoder_layers, audio_layers,
                                                                        vision_layers))
    finally:
        torch.set_default_dtype(default)
    model = model.to(dtype).eval()
    model.generation_config.pad_token_id = RELEASED[family]["ids"]["pad"]
    model.generation_config.eos_token_id = None  # random weights: never stop early, so lengths are fixed
    return model


def special_ids(model, family: str | None = None) -> dict:
    """The ids :func:`make_inputs` writes prompts with: the toy ids of the tiny and mid configs, or the released ones
    (pad, first prompt token, audio placeholder, and the audio start / end markers where the family has them)."""
    family = family or _family_of(model)
    released = RELEASED.get(family)
    if released is not None and _audio_token_id(model.config) == released["ids"]["audio"]:
        return released["ids"]
    return TOY_IDS


def _audio_token_id(config) -> int:
    return getattr(config, "audio_token_index", None) or getattr(config, "audio_token_id", None)


def _audio_tokens(family: str, config, frames: int) -> int:
    if family == "voxtral":
        positions = config.audio_config.max_source_positions
        return positions * config.audio_config.hidden_size // config.audio_config.intermediate_size
    conv = (frames - 1) // 2 + 1
    return (conv - 2) // 2 + 1


def _audio_frames(family: str, config) -> int:
    """Mel frames the processor pads every audio to (Whisper-style fixed window)."""
    return 2 * config.audio_config.max_source_positions


def make_inputs(model, audios_per_prompt=(1,), padding_side: str = "left", text_len: tuple[int, int] = (3, 9),
                answer_len: int = 0, seed: int = 0, family: str | None = None,
                audio_seconds: float | None = None) -> dict:
    """Processor-format inputs for ``model``: several prompts, each with ``audios_per_prompt[i]`` audios of
    random length (``audio_seconds``: all that long, at most the audio window) and random text around them, padded on
    ``padding_side``, written with the model's special ids (:func:`special_ids`) and mel-bin count.

    With ``answer_len > 0`` the prompts end in an answer and ``labels`` (prompt masked with -100) are added.
    """
    family = family or _family_of(model)
    config = model.config
    ids_ = special_ids(model, family)
    mels = config.audio_config.num_mel_bins
    g = torch.Generator().manual_seed(seed)
    frames = _audio_frames(family, config)

    def text(n):
        return torch.randint(*TEXT_ID_RANGE, (n,), generator=g).tolist()

    rows, label_rows, features, feat_masks = [], [], [], []
    for n_audio in audios_per_prompt:
        ids = [ids_["bos"]] + text(int(torch.randint(*text_len, (1,), generator=g)))
        for _ in range(n_audio):
            if audio_seconds is not None:
                length = min(frames, int(round(audio_seconds * MEL_FRAMES_PER_SECOND)))
            elif family == "voxtral":
                length = frames
            else:
                length = int(torch.randint(frames // 2, frames + 1, (1,), generator=g))
            features.append(torch.randn(mels, frames, generator=g) * torch.arange(frames).lt(length))
            feat_masks.append(torch.arange(frames).lt(length).long())
            n_tok = _audio_tokens(family, config, length)
            if family in ("qwen2_audio", "qwen2_5_omni_thinker", "musicflamingo"):
                ids += [ids_["audio_bos"]] + [ids_["audio"]] * n_tok + [ids_["audio_eos"]]
            else:
                ids += [ids_["audio"]] * n_tok
            ids += text(int(torch.randint(*text_len, (1,), generator=g)))
        answer = text(answer_len)
        label_rows.append([-100] * len(ids) + answer)
        rows.append(ids + answer)

    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), ids_["pad"])
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100)
    for i, (ids, lab) in enumerate(zip(rows, label_rows)):
        sl = slice(width - len(ids), width) if padding_side == "left" else slice(0, len(ids))
        input_ids[i, sl] = torch.tensor(ids)
        attention_mask[i, sl] = 1
        labels[i, sl] = torch.tensor(lab)
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if features:
        inputs["input_features"] = torch.stack(features)
        mask_name = {"qwen2_audio": "feature_attention_mask", "qwen2_5_omni_thinker": "feature_attention_mask",
                     "audioflamingo3": "input_features_mask", "musicflamingo": "input_features_mask"}.get(family)
        if mask_name:
            inputs[mask_name] = torch.stack(feat_masks)
    if answer_len:
        inputs["labels"] = labels
    return inputs


def _family_of(model) -> str:
    model_type = model.config.model_type
    if model_type not in FAMILIES:
        raise ValueError(f"make_inputs knows {FAMILIES}, not {model_type!r}")
    return model_type


def build_full_omni(seed: int = 0, talker: bool = False):
    """A tiny ``Qwen2_5OmniForConditionalGeneration``: the Thinker only (text output), or with ``talker`` also a tiny
    talker and token2wav, as the released checkpoint has them."""
    torch.manual_seed(seed)
    thinker = tiny_config("qwen2_5_omni_thinker").to_dict()
    if talker:
        config = tf.Qwen2_5OmniConfig(
            thinker_config=thinker,
            talker_config=dict(hidden_size=32, num_hidden_layers=1, intermediate_size=64, num_attention_heads=4,
                               num_key_value_heads=2, head_dim=8, vocab_size=64, embedding_size=32,
                               rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                "mrope_section": [1, 1, 2]}),
            token2wav_config=dict(
                dit_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, head_dim=16, ff_mult=1,
                                emb_dim=16, enc_emb_dim=16, enc_dim=16, enc_attention_channels=8, enc_se_channels=8,
                                num_embeds=64, enc_channels=[16, 16, 16, 16, 48], enc_kernel_sizes=[5, 3, 3, 3, 1],
                                enc_dilations=[1, 2, 3, 4, 1]),
                bigvgan_config=dict(upsample_initial_channel=16, resblock_kernel_sizes=[3], upsample_rates=[2],
                                    resblock_dilation_sizes=[[1, 3, 5]], upsample_kernel_sizes=[4])))
    else:
        config = tf.Qwen2_5OmniConfig(thinker_config=thinker, enable_audio_output=False)
    model = tf.Qwen2_5OmniForConditionalGeneration(config).eval()
    model.thinker.generation_config.pad_token_id = PAD
    model.thinker.generation_config.eos_token_id = None
    return model


# A chat template in the Qwen2-Audio format, for the small tokenizer below.
QWEN2_AUDIO_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'audio' %}<|audio_bos|><|AUDIO|><|audio_eos|>{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN2_AUDIO_SPECIAL = ("<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>", "<|im_start|>", "<|im_end|>")


def build_qwen2_audio_processor(words: list[str], chunk_seconds: int = 1):
    """A real ``Qwen2AudioProcessor`` built offline: a word-level tokenizer over ``words`` with Qwen2-Audio's
    special tokens, and a Whisper feature extractor padding audio to ``chunk_seconds`` (80 mels, 100 frames/s).

    Pair it with :func:`model_for_processor`, whose audio encoder takes exactly that many frames.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {}
    for word in ["<pad>", "<unk>", "<|endoftext|>", *words]:
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = tf.PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>",
                                      eos_token="<|endoftext|>", padding_side="left")
    fast.add_special_tokens({"additional_special_tokens": list(QWEN2_AUDIO_SPECIAL)})
    extractor = tf.WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, chunk_length=chunk_seconds,
                                           hop_length=160, n_fft=400)
    return tf.Qwen2AudioProcessor(feature_extractor=extractor, tokenizer=fast,
                                  chat_template=QWEN2_AUDIO_CHAT_TEMPLATE)


def model_for_processor(processor, size: str = "tiny", seed: int = 0, text: dict | None = None,
                        audio: dict | None = None, answer_end: str | None = None):
    """A random Qwen2-Audio whose vocabulary, special ids and audio window match ``processor``.

    ``text`` / ``audio``: other sizes than ``size``'s (:func:`tiny_config`; the demo's small model). ``answer_end``:
    the token that ends an answer (the chat template's turn end), where ``generate()`` stops; None: it never stops
    early, so a random model's answers have a fixed length.
    """
    tok = processor.tokenizer
    end = tok.convert_tokens_to_ids(answer_end) if answer_end else None
    text = {"vocab_size": len(tok), "pad_token_id": tok.pad_token_id, "bos_token_id": None,
            "eos_token_id": end if answer_end else tok.eos_token_id, **(text or {})}
    audio = {"max_source_positions": processor.feature_extractor.nb_max_frames // 2, **(audio or {})}
    config = tiny_config("qwen2_audio", size, text, audio, audio_token_index=tok.convert_tokens_to_ids("<|AUDIO|>"),
                         audio_eos_token_id=tok.convert_tokens_to_ids("<|audio_eos|>"))
    torch.manual_seed(seed)
    model = tf.Qwen2AudioForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = end
    return model


def create_tiny_model(path: str | os.PathLike, seed: int = 0) -> Path:
    """Write a tiny random Qwen2-Audio and its processor, whose words are the synthetic benchmark's, to ``path``
    (atomically: a half-written folder never appears under that name); an existing one is kept. What a config's
    ``model.create_tiny`` builds: offline tests and smoke runs load it through ``from_pretrained``."""
    from coat.data.synth import synth_words

    path = Path(path)
    if (path / "config.json").is_file():
        return path
    with atomic_dir(path) as tmp, quiet_hub_bars():  # a few hundred kB: no "Writing model shards" bar
        processor = build_qwen2_audio_processor(synth_words(), chunk_seconds=2)
        processor.save_pretrained(tmp)
        model_for_processor(processor, seed=seed).save_pretrained(tmp)
    return path
