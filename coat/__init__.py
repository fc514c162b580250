"""coat: Continuous Audio Thinking for Hugging Face large audio language models.

    import coat
    model = coat.wrap(base_model, coat.CoATConfig(num_thinking=16))

The public names load on first use, so ``import coat`` (and ``coat --help``) imports neither torch nor
transformers. It first checks that the installed torch and torchaudio belong together (coat/environment.py).
"""

from __future__ import annotations

import importlib

from coat.environment import check_torch_pair

check_torch_pair()

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {
    "Adapter": "coat.adapters",
    "generic_adapter": "coat.adapters",
    "register_adapter": "coat.adapters",
    "supported_model_types": "coat.adapters",
    "CoATConfig": "coat.config",
    "CoATModel": "coat.model",
    "wrap": "coat.model",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value  # once: later lookups do not come back here
        return value
    raise AttributeError(f"module 'coat' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
