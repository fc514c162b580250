"""The one check that must run before torch, torchaudio or transformers load: are torchaudio and torchvision built
for this torch?

transformers imports torchaudio and torchvision whenever they are installed, and one built for another torch release
dies inside its C++ extension (``OSError: ... undefined symbol``, ``operator torchvision::nms does not exist``) in a
deep traceback that names neither version. torchvision comes with lmms-eval (the ``lmms-eval`` extra). The versions
are read from the installed packages' metadata, without importing any of them, so ``import coat`` and every ``coat``
command stop first with one short message and the pip command that fixes it.
"""

from __future__ import annotations

import sys
from importlib import metadata


class TorchPairError(ImportError):
    """torch and torchaudio (or torchvision) are installed in versions that do not load together."""


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _split(version: str) -> tuple[str, str]:
    """``"2.11.0+cu130"`` -> ``("2.11.0", "cu130")``."""
    public, _, local = version.partition("+")
    return public, local


def _pair_problem(torch_version: str, name: str, version: str, expected: str, extra: str) -> str | None:
    """The message when ``name`` ``version`` is not ``expected`` (the release built for this torch) or carries
    another local build tag (``+cu130``, ``+cpu``; both must agree when both are given), else None."""
    (torch_public, torch_local), (public, local) = _split(torch_version), _split(version)
    if public == expected and (not torch_local or not local or torch_local == local):
        return None
    index = f" --index-url https://download.pytorch.org/whl/{torch_local}" if torch_local else ""
    return (f"coat: torch {torch_version} and {name} {version} do not match: {name} {expected} is the release "
            f"built for torch {torch_public}, and transformers imports {name} whenever it is installed.\n"
            f"Fix: pip install \"{name}=={expected}\"{index}   (or install from the project's lock: "
            f"pip install -c .ci/constraints.txt -e {extra})")


def torch_pair_problem(torch_version: str | None, torchaudio_version: str | None) -> str | None:
    """The message for a torch / torchaudio pair that does not load together, or None when it does (or when either
    is missing). A torchaudio release is built for the torch release of the same number (2.11.0 for 2.11.0)."""
    if not torch_version or not torchaudio_version:
        return None
    return _pair_problem(torch_version, "torchaudio", torchaudio_version, _split(torch_version)[0], ".")


def torchvision_for(torch_version: str) -> str | None:
    """The torchvision release built for a torch release: ``"2.11.0"`` -> ``"0.26.0"`` (torch 2.x.y pairs with
    torchvision 0.(x+15).y since torch 2.0 / torchvision 0.15), or None for a version outside that scheme."""
    parts = _split(torch_version)[0].split(".")
    if len(parts) < 2 or parts[0] != "2" or not all(p.isdigit() for p in parts[:3]):
        return None
    return f"0.{int(parts[1]) + 15}.{parts[2] if len(parts) > 2 else 0}"


def torchvision_problem(torch_version: str | None, torchvision_version: str | None) -> str | None:
    """The message for a torch / torchvision pair that does not load together, or None when it does (or when either
    is missing, or torch's version is outside the known scheme)."""
    expected = torchvision_for(torch_version) if torch_version and torchvision_version else None
    if expected is None:
        return None
    return _pair_problem(torch_version, "torchvision", torchvision_version, expected, '".[lmms-eval]"')


def _print_short(hook):
    def excepthook(kind, value, traceback):
        if issubclass(kind, TorchPairError):
            print(value, file=sys.stderr)
        else:
            hook(kind, value, traceback)

    return excepthook


def check_torch_pair() -> None:
    """Raise :class:`TorchPairError` when the installed torch and torchaudio (or torchvision) do not match.

    An uncaught one prints as its message alone (no traceback), for ``import coat`` in a script and for the
    ``coat`` command, whose entry point imports the package first.
    """
    torch_version = _installed("torch")
    problem = (torch_pair_problem(torch_version, _installed("torchaudio"))
               or torchvision_problem(torch_version, _installed("torchvision")))
    if problem is not None:
        if not getattr(sys.excepthook, "_coat_short", False):
            sys.excepthook = _print_short(sys.excepthook)
            sys.excepthook._coat_short = True
        raise TorchPairError(problem)
