"""Local path or Hugging Face hub id, and one quick look at whether the hub can be reached.

Every place that takes "a local folder or a hub id" (model sources, dataset sources) decides with
:func:`is_hub_id`: only the ``owner/name`` form is a hub id, and only when nothing local of that name exists, so a
missing local path is reported as missing instead of being looked up on the network. Before the hub is asked for
something, :func:`require_hub` makes one request with a short timeout: the hub libraries retry a failed
connection five times with back-off (about 25 s), and end in a traceback; this ends in one line saying the hub was
not reachable.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

from coat.errors import HubUnreachableError

# owner/name, as the hub spells repository ids
_OWNER_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def is_hub_id(text: str | os.PathLike) -> bool:
    """Whether ``text`` is read as a hub id: the ``owner/name`` form, no such local path, and no local folder
    ``owner`` (``data/clips`` next to an existing ``data/`` folder is a local path)."""
    text = os.fspath(text)
    if not _OWNER_NAME.match(text) or text.endswith((".jsonl", ".json", ".wav", ".flac", ".mp3", ".ogg")):
        return False
    path = Path(text)
    return not path.exists() and not path.parent.is_dir()


def hub_offline() -> bool:
    """HF_HUB_OFFLINE is set: the hub libraries use only their local cache."""
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # pragma: no cover - huggingface_hub always ships with transformers
        return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 5.0) -> bool:
    """One HEAD request to the hub endpoint (through the hub library's own HTTP client, so proxies apply), no
    retries. Any HTTP answer counts as reachable. Asked once per process."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception:  # noqa: BLE001 - DNS, connection, TLS, timeout: all mean "not reachable from here"
        return False
    return True


def require_hub(what: str, repo_id: str, cached: bool = False) -> None:
    """Raise :class:`HubUnreachableError` (one line) when ``repo_id`` would have to come from a hub that cannot be
    reached. ``cached``: the files are in the local cache, so the hub library can do without the network."""
    if cached or hub_offline() or hub_reachable():
        return
    from huggingface_hub import constants

    raise HubUnreachableError(
        f"{what} {repo_id!r} was read as a hub id (owner/name; no local path of that name exists), but the hub "
        f"({constants.ENDPOINT}) was not reachable and it is not in the local cache. If it is a local path, it "
        "does not exist: check it. If it is a hub id, connect to the network (or set HF_HUB_OFFLINE=1 to use "
        "only the local cache).")
