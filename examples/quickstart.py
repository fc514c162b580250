"""Wrap a tiny Qwen2-Audio with CoAT and generate: the two lines of coat, offline, in a few seconds.

    python examples/quickstart.py

A real model is the same code with ``from_pretrained("Qwen/Qwen2-Audio-7B-Instruct")`` and its processor's
outputs in place of ``zoo.make_inputs``.
"""

import tempfile

import torch
from transformers import Qwen2AudioForConditionalGeneration

import coat
from coat import zoo


def main():
    with tempfile.TemporaryDirectory() as folder:
        zoo.build_model("qwen2_audio").save_pretrained(folder)  # stands in for a hub checkpoint
        base = Qwen2AudioForConditionalGeneration.from_pretrained(folder).eval()
    base.generation_config.eos_token_id = None  # random weights: always generate the full length

    model = coat.wrap(base, coat.CoATConfig(num_thinking=8))  # <- the two lines

    # Two prompts in the processor's format (left padded): one with two audios, one with one.
    inputs = zoo.make_inputs(base, audios_per_prompt=[2, 1], padding_side="left")
    calls = []
    hook = model.base_model.register_forward_pre_hook(lambda *args: calls.append(1))
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    hook.remove()

    prompt_len = inputs["input_ids"].shape[1]
    answers = out[:, prompt_len:]
    with torch.no_grad():
        states = model(**inputs).thinking_states
    print(f"prompt tokens: {prompt_len}, thinking positions inserted per audio: {model.num_thinking}")
    print(f"generated {answers.shape[1]} tokens per prompt with {len(calls)} forward calls (one prefill)")
    print(f"answer ids: {answers.tolist()}")
    print(f"thinking_states: {tuple(states.shape)} (batch, audio spans x K, hidden)")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"trainable parameters: {trainable} (the thinking table); base frozen")


if __name__ == "__main__":
    main()
