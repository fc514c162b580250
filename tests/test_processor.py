"""The real Qwen2AudioProcessor (built offline) feeding a wrapped model: processor outputs go in as they are."""

import numpy as np
import torch
import transformers as tf

import coat
from coat import zoo

WORDS = "what is the note played which vowel is sung how many beeps answer a b c d".split()


def test_processor_outputs_through_save_load_wrap_and_generate(tmp_path):
    processor = zoo.build_qwen2_audio_processor(WORDS)
    processor.save_pretrained(tmp_path / "model")
    zoo.model_for_processor(processor).save_pretrained(tmp_path / "model")
    processor = tf.AutoProcessor.from_pretrained(tmp_path / "model")
    base = tf.Qwen2AudioForConditionalGeneration.from_pretrained(tmp_path / "model").eval()
    base.generation_config.eos_token_id = None

    rng = np.random.default_rng(0)
    conversations = [
        [{"role": "user", "content": [{"type": "audio"}, {"type": "audio"}, {"type": "text", "text": "which vowel"}]}],
        [{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": "how many beeps"}]}],
    ]
    text = [processor.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
    audio = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (8000, 16000, 12000)]
    inputs = processor(text=text, audio=audio, sampling_rate=16000, return_tensors="pt", padding=True)

    model = coat.wrap(base, num_thinking=4)
    assert model.audio_end_token_id == processor.tokenizer.convert_tokens_to_ids("<|audio_eos|>")
    with torch.no_grad():
        out = model(**inputs)
    assert out.thinking_mask.sum(1).tolist() == [8, 4]
    ids = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    answer = ids[:, inputs["input_ids"].shape[1]:]
    assert answer.shape == (2, 3)
    assert all(isinstance(s, str) for s in processor.batch_decode(answer))


def test_a_clip_longer_than_the_audio_window_is_supervised_on_what_the_model_receives():
    """The processor gives the model the first 2 s (this processor's window; 30 s for the released families): the
    collator cuts the clip and its targets to the same 2 s, and leaves out the clip-level target of the cut clip."""
    import pytest

    from coat.data.collate import CoATCollator, audio_window
    from coat.heads import ExpertHeads, HeadConfig
    from coat.targets import TargetSpec

    processor = zoo.build_qwen2_audio_processor(WORDS, chunk_seconds=2)
    assert audio_window(processor) == 32000
    specs = [TargetSpec("seconds", 16000, 100.0, 1, "regression"), TargetSpec("mood", 16000, None, 3, "distribution")]
    heads = ExpertHeads(specs, 32, HeadConfig(num_frames=8))
    collate = CoATCollator(processor, heads=heads)

    def example(id_, seconds):  # a target whose value is the time of its frame: what the heads are taught
        frames = int(seconds * 100)
        return {"id": id_, "audio": np.full(int(seconds * 16000), 0.1, np.float32), "prompt": "which vowel",
                "answer": "a", "targets": {"seconds": (np.arange(frames, dtype=np.float32) / 100)[:, None],
                                           "mood": np.array([[0.2, 0.3, 0.5]], np.float32)}}

    with pytest.warns(UserWarning, match=r"'long' is 600.0 s long; the model receives its first 2.0 s"):
        batch = collate([example("long", 600.0), example("short", 1.0)])
    assert batch["feature_attention_mask"].sum(1).tolist() == [200, 100]  # mel frames the model receives
    taught = batch["expert_targets"]
    assert taught.values["seconds"][0].max() < 2.0  # the first 2 s, not the whole clip's 600 s
    assert taught.values["seconds"][1].max() < 1.0
    assert taught.masks["mood"].tolist() == [[0.0], [1.0]]  # describes all 600 s: left out, not taught
    with pytest.raises(ValueError, match="empty batch"):
        collate([])
