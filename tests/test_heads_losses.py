"""Expert heads, target resampling and the distillation losses (coat/heads.py, coat/losses.py)."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from coat.heads import ExpertHeads, HeadConfig, prepare_targets, resample_targets
from coat.losses import distillation_losses, target_loss
from coat.targets import LOSS_FUNCTIONS, TargetSpec

HIDDEN, K = 32, 4
PITCH = TargetSpec("pitch", 16000, 100.0, 1, "regression", weight_by="voicing")
VOICING = TargetSpec("voicing", 16000, 100.0, 1, "multilabel")
PHONES = TargetSpec("phones", 16000, 50.0, 6, "distribution")
EVENTS = TargetSpec("events", 16000, 25.0, 5, "multilabel")
EMOTION = TargetSpec("emotion", 16000, None, 4, "distribution")
RECON = TargetSpec("recon", 16000, 50.0, 8, "embedding")
SPECS = [PITCH, VOICING, PHONES, EVENTS, EMOTION, RECON]


def small_config(**kw) -> HeadConfig:
    return HeadConfig(**{"num_frames": 12, "d_model": 32, "heads": 4, "dropout": 0.0, **kw})


@pytest.mark.parametrize("head_type", ["transformer", "linear", "mlp"])
def test_head_shapes(head_type):
    torch.manual_seed(0)
    heads = ExpertHeads(SPECS, HIDDEN, small_config(type=head_type))
    thinking = torch.randn(3, K, HIDDEN)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    for out in (heads(thinking), heads(thinking, mask)):
        assert set(out) == {s.name for s in SPECS}
        for spec in SPECS:
            assert out[spec.name].shape == (3, 1 if spec.clip_level else 12, spec.dim)
            assert torch.isfinite(out[spec.name]).all()
    assert set(heads(thinking, names=["emotion"])) == {"emotion"}
    no_valid = heads(thinking, torch.zeros(3, K))  # a span without thinking positions stays finite
    assert all(torch.isfinite(v).all() for v in no_valid.values())
    # masked thinking positions do not influence the prediction
    changed = thinking.clone()
    changed[2, 1:] += 5.0
    heads.eval()
    a, b = heads(thinking, mask)["phones"], heads(changed, mask)["phones"]
    torch.testing.assert_close(a[2], b[2])


def test_head_config_and_names_are_checked():
    for bad in ({"type": "lstm"}, {"num_frames": 0}, {"d_model": 30, "heads": 4}, {"dropout": 1.0},
                {"max_duration": -1.0}):
        with pytest.raises(ValueError):
            HeadConfig(**bad)
    assert dataclasses.fields(HeadConfig)[0].metadata["help"]
    with pytest.raises(ValueError, match="declared twice"):
        ExpertHeads([PHONES, PHONES], HIDDEN, small_config())
    with pytest.raises(ValueError, match="'voicing'"):
        ExpertHeads([PITCH], HIDDEN, small_config())
    with pytest.raises(ValueError, match="thinking states"):
        ExpertHeads([PHONES], HIDDEN, small_config())(torch.randn(2, K, HIDDEN + 1))


def random_distributions(rng, frames, dim):
    x = rng.random((frames, dim)).astype(np.float32) ** 4
    return x / x.sum(-1, keepdims=True)


def test_resample_relative_time_normalised_and_full():
    rng = np.random.default_rng(0)
    clips = [random_distributions(rng, t, 6) for t in (3, 12, 250)] + [None]
    values, mask = resample_targets(clips, PHONES, 12)
    assert values.shape == (4, 12, 6) and mask.shape == (4, 12)
    torch.testing.assert_close(values.sum(-1), torch.ones(4, 12))
    assert (values >= 0).all()
    assert mask[:3].eq(1).all() and mask[3].eq(0).all()  # every frame of every clip counts; no target: none
    torch.testing.assert_close(values[1], torch.from_numpy(clips[1]))  # same frame count: unchanged
    # linear interpolation: a ramp stays a ramp
    ramp = np.linspace(0, 1, 40, dtype=np.float32)[:, None]
    v, _ = resample_targets([ramp], VOICING, 8)
    assert torch.all(v[0, 1:, 0] > v[0, :-1, 0])
    # multilabel is clipped to [0, 1]; clip-level targets broadcast to their single frame
    v, _ = resample_targets([np.full((5, 5), 1.5, np.float32)], EVENTS, 4)
    assert v.max() == 1.0
    v, m = resample_targets([np.array([0.1, 0.2, 0.3, 0.4], np.float32)], EMOTION, 1)
    assert v.shape == (1, 1, 4) and m.eq(1).all()
    with pytest.raises(ValueError, match="'phones'"):
        resample_targets([np.zeros((5, 3), np.float32)], PHONES, 12)


def test_resample_absolute_time_masks_padded_frames():
    rng = np.random.default_rng(1)
    # 12 frames over 2 s -> 6 frames/s; PHONES is 50 frames/s: a 1 s clip fills half, a 3 s clip is cut
    clips = [random_distributions(rng, 50, 6), random_distributions(rng, 150, 6)]
    values, mask = resample_targets(clips, PHONES, 12, max_duration=2.0)
    assert mask[0].tolist() == [1.0] * 6 + [0.0] * 6
    assert mask[1].eq(1).all()
    torch.testing.assert_close(values.sum(-1), torch.ones(2, 12))  # padded frames hold a safe uniform row
    heads = ExpertHeads([PHONES], HIDDEN, small_config(max_duration=2.0))
    v2, m2 = prepare_targets({"phones": clips}, heads.specs, heads.config)
    torch.testing.assert_close(v2["phones"], values)
    torch.testing.assert_close(m2["phones"], mask)


def test_weight_by_masks_unvoiced_frames():
    frames = 60
    voiced = np.zeros((frames, 1), np.float32)
    voiced[20:40] = 1.0
    pitch = np.linspace(1.0, 2.0, frames, dtype=np.float32)[:, None]
    config = small_config(num_frames=frames)
    values, masks = prepare_targets({"pitch": [pitch], "voicing": [voiced]}, {s.name: s for s in SPECS}, config)
    assert masks["pitch"][0].tolist() == voiced[:, 0].tolist()
    assert masks["voicing"].eq(1).all()
    # an error on unvoiced frames only costs nothing; the same error on a voiced frame does
    prediction = values["pitch"].clone().requires_grad_()
    wrong = prediction.detach().clone()
    wrong[0, :20] += 3.0
    wrong[0, 40:] -= 3.0
    assert target_loss(wrong, values["pitch"], masks["pitch"], PITCH) == 0
    wrong[0, 30] += 3.0
    assert target_loss(wrong, values["pitch"], masks["pitch"], PITCH) > 0
    with pytest.raises(ValueError, match="'voicing'"):
        prepare_targets({"pitch": [pitch]}, {s.name: s for s in SPECS}, config)


def perfect_prediction(kind, target):
    """The prediction (raw head output) that matches ``target`` for a loss of ``kind``."""
    if kind == "distribution":
        return target.log()
    if kind == "multilabel":
        return torch.logit(target)
    return target.clone()


@pytest.mark.parametrize("kind", ["distribution", "multilabel", "regression", "embedding"])
def test_each_loss(kind):
    torch.manual_seed(0)
    n, f, dim = 3, 7, 5
    target = torch.rand(n, f, dim) * 0.8 + 0.1
    if kind == "distribution":
        target = target / target.sum(-1, keepdim=True)
    mask = torch.ones(n, f)
    mask[1, 4:] = 0
    loss_fn = LOSS_FUNCTIONS[kind]
    best = perfect_prediction(kind, target).requires_grad_()
    loss = loss_fn(best, target, mask)
    loss.backward()
    assert torch.isfinite(best.grad).all() and best.grad.abs().max() < 1e-5  # a stationary point
    if kind == "multilabel":  # BCE on soft labels bottoms out at the labels' entropy, not 0
        entropy = -(target * target.log() + (1 - target) * (1 - target).log()).mean(-1)
        torch.testing.assert_close(loss, (entropy * mask).sum() / mask.sum())
    else:  # KL 0; smooth-L1 0; cosine part and MSE 0
        assert abs(loss.item()) < 1e-5
    # off target: strictly worse, finite gradient, masked frames get exactly zero gradient
    pred = (best.detach() + torch.randn(n, f, dim)).requires_grad_()
    worse = loss_fn(pred, target, mask)
    assert worse > loss + 1e-3
    worse.backward()
    assert torch.isfinite(pred.grad).all()
    assert pred.grad[1, 4:].eq(0).all() and pred.grad[1, :4].abs().sum() > 0
    # garbage in masked frames (NaN targets, huge predictions) changes nothing
    target_bad, pred_bad = target.clone(), pred.detach().clone()
    target_bad[1, 4:] = float("nan")
    pred_bad[1, 4:] = 1e6
    pred_bad.requires_grad_()
    torch.testing.assert_close(loss_fn(pred_bad, target_bad, mask), worse.detach())
    loss_fn(pred_bad, target_bad, mask).backward()
    assert torch.isfinite(pred_bad.grad).all() and pred_bad.grad[1, 4:].eq(0).all()
    # no valid frame at all: exactly 0 and still differentiable
    empty = loss_fn(pred, target, torch.zeros(n, f))
    assert empty.item() == 0.0 and empty.requires_grad
    empty.backward()


def test_distillation_losses_weights_and_checks():
    torch.manual_seed(0)
    heads = ExpertHeads([PHONES, EVENTS, EMOTION], HIDDEN, small_config())
    specs = heads.specs
    rng = np.random.default_rng(0)
    batch = {"phones": [random_distributions(rng, 40, 6), random_distributions(rng, 90, 6)],
             "events": [rng.random((10, 5), dtype=np.float32), rng.random((30, 5), dtype=np.float32)],
             "emotion": [random_distributions(rng, 1, 4), random_distributions(rng, 1, 4)]}
    targets, masks = prepare_targets(batch, heads.specs, heads.config)
    predictions = heads(torch.randn(2, K, HIDDEN))
    weights = {"phones": 2.0, "events": 0.5, "emotion": 0.0}
    total, per_target = distillation_losses(predictions, targets, masks, specs, weights)
    assert set(per_target) == {"phones", "events"}
    torch.testing.assert_close(total, 2.0 * per_target["phones"] + 0.5 * per_target["events"])
    total.backward()
    assert all(p.grad is None for p in heads["emotion"].parameters())  # weight 0: skipped, no gradient
    assert all(p.grad is not None for p in heads["phones"].parameters())
    # everything weighted 0: a plain zero
    zero, none = distillation_losses(predictions, targets, masks, specs, dict.fromkeys(specs, 0.0))
    assert zero.item() == 0.0 and none == {}
    # shape mismatches name the target
    bad = dict(targets, events=targets["events"][:, :5])
    with pytest.raises(ValueError, match="'events'"):
        distillation_losses(predictions, bad, masks, specs)
    with pytest.raises(ValueError, match="'phones'"):
        distillation_losses(predictions, targets, dict(masks, phones=masks["phones"][:1]), specs)
    with pytest.raises(ValueError, match="'pitchh'"):
        distillation_losses(predictions, targets, masks, specs, {"pitchh": 1.0})


def test_transformer_head_learns_a_frame_level_distribution():
    torch.manual_seed(0)
    spec = TargetSpec("phones", 16000, 50.0, 6, "distribution")
    heads = ExpertHeads([spec], HIDDEN, small_config(num_frames=16))
    thinking = torch.randn(4, K, HIDDEN)
    # a different, peaked frame-level posterior per span: the head has to read the thinking states
    labels = torch.randint(0, 6, (4, 16))
    target = torch.nn.functional.one_hot(labels, 6).float() * 0.9 + 0.1 / 6
    mask = torch.ones(4, 16)
    optimizer = torch.optim.Adam(heads.parameters(), lr=3e-3)
    losses = []
    for _ in range(200):
        optimizer.zero_grad()
        total, _ = distillation_losses(heads(thinking), {"phones": target}, {"phones": mask}, heads.specs)
        total.backward()
        optimizer.step()
        losses.append(total.item())
    assert losses[-1] < losses[0] / 100, (losses[0], losses[-1])  # seeds 0-2 fall > 5000x


@pytest.mark.parametrize("head_type", ["transformer", "linear", "mlp"])
def test_heads_rebuild_from_their_config_and_state_dict(tmp_path, head_type):
    """What CoATModel.save_pretrained / from_pretrained do with the heads: to_dict() into coat_config.json, the
    state dict into a safetensors file, then from_dict() and load_state_dict()."""
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    heads = ExpertHeads(SPECS, HIDDEN, small_config(type=head_type, dropout=0.1)).eval()
    for p in heads.parameters():  # move off the init (zero query bias, unit norms) so the check means something
        p.data.add_(torch.randn_like(p) * 0.02)
    thinking = torch.randn(2, K, HIDDEN)
    save_file({k: v.contiguous() for k, v in heads.state_dict().items()}, tmp_path / "heads.safetensors")
    loaded = ExpertHeads.from_dict(json.loads(json.dumps(heads.to_dict())))
    loaded.load_state_dict(load_file(tmp_path / "heads.safetensors"))
    loaded.eval()
    assert loaded.to_dict() == heads.to_dict()
    assert list(loaded.state_dict()) == list(heads.state_dict())
    assert all(key.split(".")[0] in heads.specs for key in heads.state_dict())
    if head_type == "transformer":
        keys = heads.state_dict()
        assert "phones.query_bias" in keys and "phones.decoder.layers.1.multihead_attn.in_proj_weight" in keys
    a, b = heads(thinking), loaded(thinking)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)


def test_active_targets_keep_the_order_they_came_in():
    """The expert losses are summed in this order. It must be the caller's (the collator sorts the names), not a
    set's, whose order follows the process's string hash seed: two runs of one command would round differently."""
    from coat.heads import prepare_active_targets

    specs = {s.name: s for s in SPECS}
    rng = np.random.default_rng(0)
    clips = {s.name: [rng.standard_normal((1 if s.clip_level else 30, s.dim)).astype(np.float32)] for s in SPECS}
    names = [s.name for s in SPECS]
    for order in (names, names[::-1], names[2:] + names[:2]):
        prepared = prepare_active_targets({n: clips[n] for n in order}, specs, small_config(), {"events": 0.0})
        expected = [n for n in order if n != "events"]
        assert list(prepared.values) == expected and list(prepared.masks) == expected
