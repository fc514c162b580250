"""Progress output that reads well both in a terminal and in a log file.

Every progress bar the library makes goes through :func:`progress_bar`: in a terminal (stderr is a TTY) it is a
tqdm bar; in a log file or a pipe it is a plain line every ``interval`` seconds and one at the end (no ``\\r``
updates piling up into one huge line). Training bars come from :class:`TrainerProgress`, a Trainer callback that
names the stage and prints the Trainer's log dicts with numbers as numbers. :func:`quiet_hub_bars` silences the
"Loading weights" / "Writing model shards" bars of transformers for small models, where they only add noise.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

LOG_INTERVAL = 30.0  # seconds between plain progress lines in a log file
SMALL_MODEL_BYTES = 1 << 30  # loads of weights below this are quick: no progress bar


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _seconds(value: float) -> str:
    value = int(value)
    if value < 3600:
        return f"{value // 60}:{value % 60:02d}"
    return f"{value // 3600}:{value // 60 % 60:02d}:{value % 60:02d}"


class PlainProgress:
    """A tqdm-like counter that prints ``desc: n/total (pct) elapsed, rate, postfix`` lines: one when the first
    ``interval`` seconds have passed since the last line, and one at :meth:`close`. Supports what the library's
    bars use: iteration, ``update``, ``set_postfix``, ``write``, ``close``."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "it",
                 interval: float = LOG_INTERVAL, file: TextIO | None = None, disable: bool = False):
        self.iterable, self.desc, self.unit, self.interval = iterable, desc, unit, interval
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.n, self.postfix, self.disable = total, 0, "", disable
        self.file = file
        self.start = self.last = time.monotonic()
        self.closed = False

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _out(self) -> TextIO:
        return self.file or sys.stderr

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        done = f"{self.n}/{self.total}" if self.total else str(self.n)
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        rate = f", {self.n / elapsed:.2f} {self.unit}/s" if elapsed > 0 and self.n else ""
        postfix = f", {self.postfix}" if self.postfix else ""
        head = f"{self.desc}: " if self.desc else ""
        return f"{head}{done} {self.unit}{pct}, {_seconds(elapsed)} elapsed{rate}{postfix}"

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if not self.disable and now - self.last >= self.interval:
            self.last = now
            print(self.line(), file=self._out(), flush=True)

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc

    def write(self, text: str) -> None:
        """A message line (to stdout, like ``tqdm.write``; printed even when the counter is disabled)."""
        print(text, file=self.file or sys.stdout, flush=True)

    def close(self) -> None:
        if not self.closed and not self.disable:
            print(self.line(), file=self._out(), flush=True)
        self.closed = True


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
                 enabled: bool = True, file: TextIO | None = None, interval: float = LOG_INTERVAL):
    """A tqdm bar in a terminal, :class:`PlainProgress` lines elsewhere; nothing at all when not ``enabled``."""
    stream = file or sys.stderr
    if is_terminal(stream):
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True, file=file)
    return PlainProgress(iterable, total=total, desc=desc, unit=unit, interval=interval, file=file,
                         disable=not enabled)


def format_logs(logs: dict[str, Any]) -> str:
    """A Trainer log dict as ``key value`` pairs, numbers printed as numbers (4 significant digits)."""
    parts = []
    for key, value in logs.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            parts.append(f"{key} {value}")
        elif isinstance(value, int):
            parts.append(f"{key} {value}")
        else:
            parts.append(f"{key} {value:.4g}")
    return "  ".join(parts)


def trainer_progress_callback(stage: str, enabled: bool = True, file: TextIO | None = None):
    """A ``transformers.TrainerCallback`` for one stage (use with ``disable_tqdm=True`` and without the Trainer's
    own PrinterCallback): a progress bar named after the stage, and each log dict as one plain line
    ``[stage] step i/n: loss 11.37  text_loss 5.885 ...``."""
    from transformers import TrainerCallback

    class TrainerProgress(TrainerCallback):
        def __init__(self):
            self.bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.bar = progress_bar(total=state.max_steps, desc=f"[{stage}]", unit="step", enabled=enabled,
                                        file=file)
                self.bar.update(state.global_step)  # a resumed run starts where it stopped

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            logs = {k: v for k, v in logs.items() if k != "total_flos"}
            line = f"[{stage}] step {state.global_step}/{state.max_steps}: {format_logs(logs)}"
            if self.bar is not None:
                self.bar.write(line)  # above a terminal bar, not through it
            else:
                print(line, file=file or sys.stdout, flush=True)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return TrainerProgress()


def weights_bytes(folder: str | os.PathLike) -> int | None:
    """Size of the weight files in a local model folder; None when ``folder`` is not a local folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    return sum(p.stat().st_size for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pt"))


@contextlib.contextmanager
def quiet_hub_bars(quiet: bool = True):
    """Turn off transformers' (and huggingface_hub's) progress bars inside the block, when ``quiet``; the
    caller's setting comes back afterwards."""
    if not quiet:
        yield
        return
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def is_small_model(folder: str | os.PathLike) -> bool:
    """A local model folder whose weights load in well under a second (below :data:`SMALL_MODEL_BYTES`)."""
    size = weights_bytes(folder)
    return size is not None and size < SMALL_MODEL_BYTES
