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
