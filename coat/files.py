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
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (``os.umask`` sets it to read it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _as_created(path: Path) -> None:
    """Give ``path`` the mode a plain ``open()`` / ``mkdir()`` would have (0666 / 0777 less the umask), instead of
    the 0600 / 0700 of temp files (mkstemp, mkdtemp, safetensors' own writer)."""
    if path.is_symlink():
        return
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[str]:
    """Yield a temp path next to ``target``; on success it replaces ``target``, on failure it is removed.

    The file gets the permissions any file created here would get (0666 less the umask), not mkstemp's 0600."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        _as_created(Path(tmp))  # after the writer: some (safetensors) replace the file with a 0600 one of their own
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """Yield a temp folder next to ``target`` (parents created); on success it becomes ``target``, on failure it
    is removed, so a half-written folder never appears under that name.

    ``replace``: an existing ``target`` is replaced as a whole (moved aside, the new folder renamed in, the old one
    deleted), so nothing of the old folder survives into the new one. The folder and what was written into it get
    the permissions of any new folder and file (0777 / 0666 less the umask)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        yield tmp
        for path in [tmp, *tmp.rglob("*")]:
            _as_created(path)
        old = None
        if replace and target.exists():
            old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
            os.replace(target, old / target.name)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def private_dir(*parts: str) -> Path:
    """A folder only this user can use: ``$XDG_CACHE_HOME/coat/<parts>`` (``~/.cache/coat/...``).

    For what other code executes from (a speechbrain model folder: its ``hyperparams.yaml`` and custom interface
    are code). Each level is created 0700; an existing level must belong to this user and must not be writable
    by others, else :class:`PermissionError` says which folder and what to do. Never a shared temp folder."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "coat"
    root.parent.mkdir(parents=True, exist_ok=True)
    path = root
    for part in ("", *parts):
        if part:
            if part in (".", "..") or "/" in part or os.sep in part:
                raise ValueError(f"private folder name {part!r} must be a plain folder name")
            path = path / part
        try:
            path.mkdir(mode=0o700)
            os.chmod(path, 0o700)
        except FileExistsError:
            pass
        info = path.lstat()
        if not stat.S_ISDIR(info.st_mode):
            raise PermissionError(f"{path} is not a folder (a link or a file); remove it so coat can create its "
                                  "private folder there")
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise PermissionError(f"{path} belongs to another user (uid {info.st_uid}); coat will not run code "
                                  "from it. Remove it, or set XDG_CACHE_HOME to a folder of your own")
        if info.st_mode & 0o022:
            raise PermissionError(f"{path} is writable by other users (mode {stat.S_IMODE(info.st_mode):o}); "
                                  f"coat will not run code from it. Check its contents, then `chmod 700 {path}`")
    return path


def write_atomic(target: str | os.PathLike, data: str | bytes) -> None:
    """Write text or bytes to ``target`` atomically (temp file in the same folder, then ``os.replace``)."""
    with atomic_path(target) as tmp, open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def config_digest(*parts: Any, length: int = 12) -> str:
    """A short stable hash of dataclasses / JSON-able values (folder names keyed by settings)."""
    plain = [dataclasses.asdict(p) if dataclasses.is_dataclass(p) else p for p in parts]
    text = json.dumps(plain, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
