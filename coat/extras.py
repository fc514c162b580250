"""Optional extras (``pip install 'coat-lalm[speech]'``): finding their packages, and the one error when one is
missing, which names the extra and the command that installs it."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from coat.errors import CoatError


class MissingExtraError(CoatError, ImportError):
    """A package of an optional extra is not installed (or does not load)."""


def install_hint(extra: str) -> str:
    return f"pip install 'coat-lalm[{extra}]'   (in a clone: pip install -c .ci/constraints.txt -e '.[{extra}]')"


def missing(dist: str, extra: str, what: str, detail: str = "") -> MissingExtraError:
    detail = f" ({detail})" if detail else ""
    return MissingExtraError(f"{what} needs the {dist!r} package of the '{extra}' extra{detail}: "
                             f"{install_hint(extra)}")


def require(module: str, dist: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` (from the distribution ``dist``) or raise :class:`MissingExtraError`."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise missing(dist, extra, what, f"{type(err).__name__}: {err}") from err


def package_dir(module: str, dist: str, extra: str, what: str) -> str:
    """The folder of an installed package, found without importing it (for packages whose import has side
    effects, such as silero_vad's ``torch.set_num_threads(1)``)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise missing(dist, extra, what)
    return list(spec.submodule_search_locations)[0]


def version(dist: str, extra: str, what: str) -> str:
    """The installed version of ``dist`` (it goes into cache fingerprints)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _version

    try:
        return _version(dist)
    except PackageNotFoundError as err:
        raise missing(dist, extra, what) from err
