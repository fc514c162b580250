"""Loading an expert's model from a *model source*: a local folder or a Hugging Face hub id.

Every expert that loads weights goes through :func:`load_pretrained`, so a bad source always fails the same
clear way: the error says whether the source was taken as a local folder or as a hub id, and why loading failed
(missing folder, no ``config.json``, hub unreachable or offline, or a checkpoint of the wrong model class).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coat.errors import CoatError, HubUnreachableError
from coat.hub import hub_offline, is_hub_id, require_hub
from coat.progress import is_small_model, quiet_hub_bars


class ModelSourceError(CoatError, RuntimeError):
    """A model source (local folder or hub id) could not be loaded; the message says how it was read and why."""


def source_kind(source: str | os.PathLike) -> str:
    """``"local folder"`` or ``"hub id"``: how ``source`` is interpreted.

    Only the ``owner/name`` form is a hub id, and only when no local path of that name (and no local folder
    ``owner``) exists (:func:`coat.hub.is_hub_id`); anything else is a local folder, so that a typo in a path is
    reported as a missing folder rather than as a failed hub download.
    """
    text = os.fspath(source)
    if os.path.isdir(os.path.expanduser(text)):
        return "local folder"
    return "hub id" if is_hub_id(text) else "local folder"


def check_source(source: str | os.PathLike, what: str = "model", required_file: str | None = "config.json") -> str:
    """Validate a source before loading; returns the string to hand to ``from_pretrained``.

    Raises :class:`ModelSourceError` for a local folder that is missing or lacks ``required_file``.
    """
    text = os.fspath(source)
    if source_kind(text) == "local folder":
        path = Path(text).expanduser()
        if not path.is_dir():
            raise ModelSourceError(
                f"{what} source {text!r} was treated as a local folder (a hub id has the form owner/name), "
                "but that folder does not exist."
            )
        if required_file is not None and not (path / required_file).is_file():
            present = sorted(p.name for p in path.iterdir())[:10]
            raise ModelSourceError(
                f"{what} source {text!r} was treated as a local folder, but it has no {required_file} "
                f"(found: {present or 'nothing'}); save the model there with save_pretrained()."
            )
        return str(path)
    return text


def _in_hub_cache(repo_id: str, filename: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, filename), str)
    except Exception:  # noqa: BLE001 - a malformed id is simply not cached
        return False


def require_hub_source(what: str, repo_id: str, filename: str = "config.json") -> None:
    """One quick look at the hub before a hub id is loaded (:func:`coat.hub.require_hub`): unreachable and
    ``filename`` not in the local cache is a :class:`ModelSourceError` at once, not after the hub library's
    retries."""
    try:
        require_hub(f"{what} source", repo_id, cached=_in_hub_cache(repo_id, filename))
    except HubUnreachableError as err:
        raise ModelSourceError(str(err)) from None


def load_pretrained(
    loader: Callable[..., Any], source: str | os.PathLike, what: str = "model", required_file: str | None = None,
    **kwargs,
) -> Any:
    """``loader(source, **kwargs)`` (a ``from_pretrained``), with failures turned into :class:`ModelSourceError`.

    loader: e.g. ``AutoModelForCTC.from_pretrained`` or ``AutoFeatureExtractor.from_pretrained``.
    what: what is being loaded, for the message (``"phonetic model"``, ``"feature extractor"``).
    required_file: a file a local folder must contain (``config.json`` for models); ``None`` to skip the check.
    """
    path = check_source(source, what, required_file)
    kind = source_kind(path)
    if kind == "hub id":
        require_hub_source(what, path, required_file or "config.json")
    try:
        with quiet_hub_bars(is_small_model(path)):  # a "Loading weights" bar only where loading takes a while
            return loader(path, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        name = getattr(loader, "__self__", None)
        name = getattr(name, "__name__", None) or getattr(loader, "__qualname__", str(loader))
        if isinstance(err, ValueError) and "Unrecognized configuration class" in str(err):
            why = f"its config is not a model that {name} can load (wrong model class for this expert)"
        elif kind == "hub id" and hub_offline():
            why = "the hub is offline (HF_HUB_OFFLINE is set) and the model is not in the local cache"
        elif kind == "hub id" and "connect" in str(err).lower():
            why = "the hub could not be reached (no network?) and the model is not in the local cache"
        elif kind == "hub id" and "not a valid model identifier" in str(err):
            why = "no such repository on the hub (a typo, or a private repo without a token)"
        elif kind == "hub id":
            why = "it could not be downloaded or found in the local cache"
        else:
            why = f"{name} could not load it"
        how = "a hub id (no local folder of that name exists)" if kind == "hub id" else "a local folder"
        raise ModelSourceError(
            f"{what} source {path!r} was treated as {how}; loading with {name} failed: {why}. "
            f"Original error: {type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
        ) from err


def check_architecture(config, source: str, what: str, suffixes: tuple[str, ...]) -> None:
    """Refuse a checkpoint whose saved head is not the kind the expert needs.

    An ``Auto`` class happily loads, say, a sequence classifier as a CTC model with a freshly initialised head,
    which would turn every target into noise; ``config.architectures`` says what was saved.
    """
    saved = list(getattr(config, "architectures", None) or [])
    if saved and not any(a.endswith(suffixes) for a in saved):
        raise ModelSourceError(
            f"{what} source {source!r} was treated as a {source_kind(source)} and holds a {', '.join(saved)} "
            f"checkpoint: wrong model class for this expert, which needs a *{' or *'.join(suffixes)} model"
        )
