"""The one check that must run before torch, torchaudio or transformers load: is torchaudio built for this torch?

transformers imports torchaudio whenever it is installed, and a torchaudio built for another torch release dies
inside its C++ extension (``OSError: ... undefined symbol``) in a deep traceback that names neither version. The
two versions are read from the installed packages' metadata, without importing either, so ``import coat`` and
every ``coat`` command stop first with one short message and the pip command that fixes it.
"""

from __future__ import annotations

import sys
from importlib import metadata


class TorchPairError(ImportError):
    """torch and torchaudio are installed in versions that do not load together."""


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


def _print_short(hook):
    def excepthook(kind, value, traceback):
        if issubclass(kind, TorchPairError):
            print(value, file=sys.stderr)
        else:
            hook(kind, value, traceback)

    return excepthook


def check_torch_pair() -> None:
    """Raise :class:`TorchPairError` when the installed torch and torchaudio do not match.

    An uncaught one prints as its message alone (no traceback), for ``import coat`` in a script and for the
    ``coat`` command, whose entry point imports the package first.
    """
    problem = torch_pair_problem(_installed("torch"), _installed("torchaudio"))
    if problem is not None:
        if not getattr(sys.excepthook, "_coat_short", False):
            sys.excepthook = _print_short(sys.excepthook)
            sys.excepthook._coat_short = True
        raise TorchPairError(problem)
