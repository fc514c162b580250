"""Register your own expert: a frame-level loudness teacher in a few lines.

An expert declares its targets (``TargetSpec``), lists what changes its output (``params``, which goes into the
target-cache fingerprint) and maps a padded batch of waveforms to one ``(frames, dim)`` array per example. Once
registered, it is built by name like the built-ins, e.g. from a YAML config: ``experts: [{name: loudness}]``.

    python examples/custom_expert.py
"""

import numpy as np
import torch

from coat.experts import Expert, TargetSpec, build_expert, register_expert


class LoudnessExpert(Expert):
    """RMS loudness in dBFS per 10 ms frame (kind ``regression``, so heads train on it with smooth-L1)."""

    name = "loudness"
    sample_rate = 16000

    def __init__(self, hop_length: int = 160, floor_db: float = -80.0, device: str = "cpu"):
        super().__init__(device)
        self.hop_length, self.floor_db = hop_length, floor_db

    def specs(self):
        return (TargetSpec("loudness", self.sample_rate, self.sample_rate / self.hop_length, 1, "regression"),)

    def params(self):
        return {"hop_length": self.hop_length, "floor_db": self.floor_db}

    def compute(self, waveforms: torch.Tensor, lengths: torch.Tensor):
        # one vectorised pass over the whole batch: zero-pad to whole frames, then RMS per frame
        frames = torch.nn.functional.pad(waveforms, (0, -waveforms.shape[1] % self.hop_length))
        frames = frames.unfold(1, self.hop_length, self.hop_length)  # (batch, frames, hop)
        db = (10 * torch.log10(frames.pow(2).mean(-1).clamp_min(1e-12))).clamp_min(self.floor_db)
        spec = self.specs()[0]
        return [{"loudness": db[b, : spec.num_frames(int(n)), None].cpu().numpy()} for b, n in enumerate(lengths)]


register_expert("loudness", LoudnessExpert)

if __name__ == "__main__":
    expert = build_expert("loudness", floor_db=-60.0)
    t = torch.arange(16000) / 16000
    quiet_then_loud = torch.where(t < 0.5, 0.01, 0.5) * torch.sin(2 * torch.pi * 440 * t)
    waveforms = torch.stack([quiet_then_loud, torch.nn.functional.pad(quiet_then_loud[:8000], (0, 8000))])
    lengths = torch.tensor([16000, 8000])
    for i, out in enumerate(expert(waveforms, lengths)):
        x = out["loudness"]
        print(f"clip {i}: loudness {x.shape}, first {x[0, 0]:.1f} dBFS, last {x[-1, 0]:.1f} dBFS")
    # batched output equals one-at-a-time output
    alone = expert(waveforms[1:, :8000], lengths[1:])[0]["loudness"]
    assert np.allclose(expert(waveforms, lengths)[1]["loudness"], alone)
    print("fingerprint:", expert.fingerprint_params())
