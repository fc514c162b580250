"""Files written so that a crash never leaves a half-written one under the final name, and config digests.

Every JSON, markdown, CSV, image and weight file the library writes goes through :func:`write_atomic` (or
:func:`atomic_path` for writers that want a path, like safetensors' ``save_file``); whole folders (a saved model)
through :func:`atomic_dir`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[str]:
    """Yield a temp path next to ``target``; on success it replaces ``target``, on failure it is removed."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp folder next to ``target`` (parents created); on success it becomes ``target``, on failure it
    is removed, so a half-written folder never appears under that name."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_atomic(target: str | os.PathLike, data: str | bytes) -> None:
    """Write text or bytes to ``target`` atomically (temp file in the same folder, then ``os.replace``)."""
    with atomic_path(target) as tmp, open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def config_digest(*parts: Any, length: int = 12) -> str:
    """A short stable hash of dataclasses / JSON-able values (folder names keyed by settings)."""
    plain = [dataclasses.asdict(p) if dataclasses.is_dataclass(p) else p for p in parts]
    text = json.dumps(plain, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
