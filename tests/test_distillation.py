"""CoATModel with expert heads: forward with expert_targets gives loss = text + weighted expert losses."""

import numpy as np
import pytest
import torch

import coat
from coat import zoo
from coat.heads import HeadConfig
from coat.targets import TargetSpec

SPECS = [
    TargetSpec("pitch", 16000, 100.0, 12, "distribution", weight_by="voicing"),
    TargetSpec("voicing", 16000, 100.0, 1, "regression"),
    TargetSpec("events", 16000, None, 5, "multilabel"),
]


def _targets(n_spans, seed=0):
    rng = np.random.default_rng(seed)
    frames = [int(rng.integers(40, 120)) for _ in range(n_spans)]
    pitch = [rng.dirichlet(np.ones(12), size=f).astype(np.float32) for f in frames]
    voicing = [rng.uniform(0, 1, (f, 1)).astype(np.float32) for f in frames]
    events = [rng.uniform(0, 1, (1, 5)).astype(np.float32) for _ in frames]
    return {"pitch": pitch, "voicing": voicing, "events": events}


def _model(load_tiny, family="qwen2_audio", weights=None):
    base = load_tiny(family)
    model = coat.wrap(base, num_thinking=4)
    model.add_heads(SPECS, HeadConfig(num_frames=8, d_model=32, heads=4), weights)
    return base, model


@pytest.mark.parametrize("family", ["qwen2_audio", "qwen2_5_omni_thinker"])
def test_loss_is_text_plus_weighted_expert_losses(family, load_tiny):
    base, model = _model(load_tiny, family, weights={"pitch": 0.5, "voicing": 2.0, "events": 1.0})
    inputs = zoo.make_inputs(base, audios_per_prompt=[2, 1], answer_len=3, seed=1)
    model.train()
    out = model(**inputs, expert_targets=_targets(3))
    assert set(out.expert_losses) == {"pitch", "voicing", "events"}
    expected = out.text_loss + 0.5 * out.expert_losses["pitch"] + 2.0 * out.expert_losses["voicing"] + \
        out.expert_losses["events"]
    assert torch.allclose(out.loss, expected)
    assert out.expert_predictions["pitch"].shape == (3, 8, 12)
    out.loss.backward()
    assert model.thinking_embedding.thinking.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.heads.parameters() if p.requires_grad)


def test_zero_weights_give_plain_fine_tuning_and_no_head_gradient(load_tiny):
    base, model = _model(load_tiny, weights={"pitch": 0.0, "voicing": 0.0, "events": 0.0})
    inputs = zoo.make_inputs(base, audios_per_prompt=[1, 1], answer_len=3, seed=2)
    model.train()
    out = model(**inputs, expert_targets=_targets(2))
    assert out.expert_losses == {} and torch.equal(out.loss, out.text_loss)
    out.loss.backward()
    assert all(p.grad is None for p in model.heads.parameters())
    assert model.thinking_embedding.thinking.grad.abs().sum() > 0


def test_targets_must_match_the_audio_spans(load_tiny):
    base, model = _model(load_tiny)
    inputs = zoo.make_inputs(base, audios_per_prompt=[2, 1], seed=3)
    with pytest.raises(ValueError, match=r"has 2 entries but the batch has 3 audio spans"):
        model(**inputs, expert_targets=_targets(2))
    with pytest.raises(ValueError, match="without a head"):
        model(**inputs, expert_targets={"emotion": [None] * 3})
    bare = coat.wrap(load_tiny("qwen2_audio"), num_thinking=4)
    with pytest.raises(ValueError, match="add_heads"):
        bare(**inputs, expert_targets=_targets(3))


def test_heads_save_and_reload_with_the_adapter(load_tiny, tmp_path):
    base, model = _model(load_tiny, weights={"events": 0.25})
    inputs = zoo.make_inputs(base, audios_per_prompt=[1, 2], answer_len=2, seed=4)
    targets = _targets(3)
    model.eval()
    with torch.no_grad():
        expected = model(**inputs, expert_targets=targets)
    model.save_pretrained(tmp_path)
    reloaded = coat.CoATModel.from_pretrained(load_tiny("qwen2_audio"), tmp_path).eval()
    assert reloaded.expert_weights == {"pitch": 1.0, "voicing": 1.0, "events": 0.25}
    with torch.no_grad():
        got = reloaded(**inputs, expert_targets=targets)
    assert torch.equal(got.loss, expected.loss)
    for name in expected.expert_predictions:
        assert torch.equal(got.expert_predictions[name], expected.expert_predictions[name])
