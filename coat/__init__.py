"""coat: Continuous Audio Thinking for Hugging Face large audio language models.

    import coat
    model = coat.wrap(base_model, coat.CoATConfig(num_thinking=16))
"""

from coat.adapters import Adapter, generic_adapter, register_adapter, supported_model_types
from coat.config import CoATConfig
from coat.model import CoATModel, wrap

__version__ = "0.1.0"
__all__ = ["Adapter", "CoATConfig", "CoATModel", "generic_adapter", "register_adapter", "supported_model_types",
           "wrap"]
