"""The two ways a command reports: a markdown table and a PNG figure, each in one function.

:func:`markdown_table` writes every table of results.md, ablation.md and demo.md; :func:`figure` every chart
(demo.png, ablation.png, attention_share.png, probes.png): matplotlib on its Agg backend (no display needed),
saved as PNG through :func:`coat.files.write_atomic` like every other file, and closed whatever happens.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from coat.files import write_atomic


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """``| a | b |`` lines under a ``|---|---|`` rule, one per row (cells as ``str``), ending in a newline."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def figure(path: str | os.PathLike, figsize: tuple[float, float], dpi: int = 100) -> Iterator[tuple[Any, Any]]:
    """``(fig, ax)`` of a new matplotlib figure; when the block ends, its tight layout is saved as a PNG at ``path``
    (atomically) and the figure is closed (also when the block raises)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    try:
        yield fig, ax
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
        write_atomic(path, buffer.getvalue())
    finally:
        plt.close(fig)
