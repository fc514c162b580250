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


def torch_pair_problem(torch_version: str | None, torchaudio_version: str | None) -> str | None:
    """The message for a torch / torchaudio pair that does not load together, or None when it does.

    A torchaudio release is built for the torch release of the same number (2.11.0 for 2.11.0); two local build
    tags (``+cu130``, ``+cpu``) must also agree when both are given. A missing package is no mismatch.
    """
    if not torch_version or not torchaudio_version:
        return None
    (torch_public, torch_local), (audio_public, audio_local) = _split(torch_version), _split(torchaudio_version)
    if torch_public == audio_public and (not torch_local or not audio_local or torch_local == audio_local):
        return None
    index = f" --index-url https://download.pytorch.org/whl/{torch_local}" if torch_local else ""
    return (f"coat: torch {torch_version} and torchaudio {torchaudio_version} do not match: a torchaudio release "
            f"loads only with the torch release of the same number, and transformers imports torchaudio whenever "
            f"it is installed.\nFix: pip install \"torchaudio=={torch_public}\"{index}   (or install from the "
            f"project's lock: pip install -c .ci/constraints.txt -e .)")


def torchvision_for(torch_version: str) -> str | None:
    """The torchvision release built for a torch release: ``"2.11.0"`` -> ``"0.26.0"`` (torch 2.x.y pairs with
    torchvision 0.(x+15).y since torch 2.0 / torchvision 0.15), or None for a version outside that scheme."""
    parts = _split(torch_version)[0].split(".")
    if len(parts) < 2 or parts[0] != "2" or not all(p.isdigit() for p in parts[:3]):
        return None
    return f"0.{int(parts[1]) + 15}.{parts[2] if len(parts) > 2 else 0}"


def torchvision_problem(torch_version: str | None, torchvision_version: str | None) -> str | None:
    """The message for a torch / torchvision pair that does not load together, or None when it does (or when either
    is missing, or torch's version is outside the known scheme). Local build tags must agree when both are given."""
    if not torch_version or not torchvision_version:
        return None
    expected = torchvision_for(torch_version)
    if expected is None:
        return None
    (_, torch_local), (vision_public, vision_local) = _split(torch_version), _split(torchvision_version)
    if vision_public == expected and (not torch_local or not vision_local or torch_local == vision_local):
        return None
    index = f" --index-url https://download.pytorch.org/whl/{torch_local}" if torch_local else ""
    return (f"coat: torch {torch_version} and torchvision {torchvision_version} do not match: torchvision "
            f"{expected} is the release built for torch {_split(torch_version)[0]}, and transformers imports "
            f"torchvision whenever it is installed.\nFix: pip install \"torchvision=={expected}\"{index}   (or "
            f"install from the project's lock: pip install -c .ci/constraints.txt -e \".[lmms-eval]\")")


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
