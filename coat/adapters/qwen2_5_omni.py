"""Qwen2.5-Omni: the Thinker (``Qwen2_5OmniThinkerForConditionalGeneration``) answers in text; the full
``Qwen2_5OmniForConditionalGeneration`` is wrapped through its Thinker (text output, no talker).

Audio spans are ``<|audio_bos|> <|AUDIO|> x N <|audio_eos|>`` with both ids in the Thinker config. Thinking
positions after ``<|audio_eos|>`` are plain text positions for the model's 3D (mRoPE) position ids.
"""

from coat.adapters.base import Adapter


def _check_audio_tokens(thinker, input_ids, attention_mask, kwargs):
    """The Thinker's forward scatters audio features into the placeholders without counting them, so a
    prompt with too few placeholders would silently drop audio frames. Count them as the other families do."""
    lengths = kwargs.get("audio_feature_lengths")
    if lengths is None and kwargs.get("feature_attention_mask") is not None:
        lengths = kwargs["feature_attention_mask"].sum(-1)
    if kwargs.get("input_features") is None or lengths is None:
        return
    _, per_audio = thinker.model.audio_tower._get_feat_extract_output_lengths(lengths)
    placeholders = input_ids == thinker.config.audio_token_index
    if attention_mask is not None:
        placeholders &= attention_mask.bool()
    n_tokens, n_features = int(placeholders.sum()), int(per_audio.sum())
    if n_tokens != n_features:
        raise ValueError(f"Audio features and audio tokens do not match, tokens: {n_tokens}, features: {n_features}")


THINKER = Adapter(
    model_type="qwen2_5_omni_thinker",
    audio_token_id=lambda config: config.audio_token_index,
    audio_end_token_id=lambda config: config.audio_end_token_id,
    check_inputs=_check_audio_tokens,
)

FULL = Adapter(
    model_type="qwen2_5_omni",
    audio_token_id=lambda config: config.thinker_config.audio_token_index,
    audio_end_token_id=lambda config: config.thinker_config.audio_end_token_id,
    text_model=lambda model: model.thinker,
    check_inputs=_check_audio_tokens,
)

ADAPTERS = (THINKER, FULL)
