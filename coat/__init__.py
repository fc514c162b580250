"""coat: Continuous Audio Thinking for Hugging Face large audio language models."""

__version__ = "0.1.0"
