"""Small helpers that cut a clip into the windows an expert analyses (fit_frames, which puts model frames on a
target timeline, is in coat/targets.py: the forward uses it too)."""

from __future__ import annotations

import numpy as np


def pad_to_min(audio: np.ndarray, min_samples: int) -> np.ndarray:
    """Zero-pad a 1-D clip on the right to at least ``min_samples``: conv front ends (wav2vec2's 400-sample
    receptive field, 25 ms fbank windows) give no frame at all for shorter input. Alone or in a batch, a short
    clip gets the same padding, so its targets do not depend on the batch."""
    if len(audio) >= min_samples:
        return audio
    return np.pad(audio, (0, min_samples - len(audio)))


def window_bounds(length: int, num_frames: int, hop: int, window: int) -> list[tuple[int, int]]:
    """Sample ranges ``[(start, end)]`` of the analysis window of each target frame.

    Frame ``i`` describes ``[i * hop, (i + 1) * hop)``; its window is ``window`` samples centred on that span,
    shifted to stay inside the clip, so every window is full length unless the clip itself is shorter.
    """
    bounds = []
    for i in range(num_frames):
        start = i * hop + hop // 2 - window // 2
        start = min(max(0, start), max(0, length - window))
        bounds.append((start, min(start + window, length)))
    return bounds
