"""Which audio counts as bad: :class:`AudioChecks` and :func:`decode_and_check`, shared by the target cache (bad
examples are reported in ``report.jsonl`` and left out) and by training without experts (which checks each example
itself). A broken example is a reason in a report, never an exception that stops a run."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from coat.data.sources import AudioDecodeError, AudioSource

BAD_REASONS = ("unreadable", "empty", "nonfinite", "silent", "too_short", "too_long", "nonfinite_target")


@dataclass
class AudioChecks:
    """Which examples count as bad audio (the ``targets.checks`` section): reported and left out."""

    min_seconds: float = field(default=0.05, metadata={"help": "shorter clips are bad (too_short)"})
    max_seconds: float | None = field(default=None, metadata={"help": "longer clips are bad (too_long); null: any"})
    silence_db: float | None = field(
        default=-80.0, metadata={"help": "clips whose peak is below this level in dBFS are bad (silent); null: keep"}
    )

    def __post_init__(self):
        if self.min_seconds < 0:
            raise ValueError(f"checks.min_seconds must be >= 0, got {self.min_seconds}")
        if self.max_seconds is not None and self.max_seconds <= self.min_seconds:
            raise ValueError("checks.max_seconds must be > checks.min_seconds")

    def problem(self, audio: np.ndarray, sr: int) -> tuple[str, str] | None:
        """(reason, detail) if ``audio`` ((samples,) at ``sr``) is bad, else None."""
        if audio.size == 0:
            return "empty", "no samples"
        if not np.isfinite(audio).all():
            return "nonfinite", f"{int((~np.isfinite(audio)).sum())} NaN/inf samples"
        seconds = audio.size / sr
        if seconds < self.min_seconds:
            return "too_short", f"{seconds:.3f} s < min_seconds {self.min_seconds}"
        if self.max_seconds is not None and seconds > self.max_seconds:
            return "too_long", f"{seconds:.3f} s > max_seconds {self.max_seconds}"
        if self.silence_db is not None:
            peak = float(np.abs(audio).max())
            peak_db = 20 * np.log10(peak) if peak > 0 else -np.inf
            if peak_db < self.silence_db:
                return "silent", f"peak {peak_db:.1f} dBFS < silence_db {self.silence_db}"
        return None


def decode_and_check(source: AudioSource, i: int,
                     checks: AudioChecks) -> tuple[np.ndarray | None, int, tuple[str, str] | None]:
    """Example ``i`` of ``source`` decoded at its own rate and checked: ``(audio, rate, problem)``, problem being
    ``(reason, detail)`` for bad audio (unreadable included) or None. Never raises for a broken example."""
    try:
        audio, sr = source.read(i)
    except AudioDecodeError as err:
        return None, 0, ("unreadable", str(err))
    except Exception as err:  # noqa: BLE001 - a broken example must not stop the run
        return None, 0, ("unreadable", f"{type(err).__name__}: {err}")
    return audio, sr, checks.problem(audio, sr)
