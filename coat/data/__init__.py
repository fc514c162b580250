"""Audio data for CoAT: example sources shared by target extraction, training and evaluation.

``coat.data.synth`` (the synthetic acoustic QA benchmark) is imported on its own, not from here.
"""

from coat.data.sources import (
    AUDIO_EXTENSIONS,
    AudioDecodeError,
    AudioExample,
    AudioSource,
    DatasetSource,
    ExampleListSource,
    FolderSource,
    ManifestSource,
    SourceConfig,
    SubsetSource,
    decode_audio,
    open_source,
    resample,
)

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioDecodeError",
    "AudioExample",
    "AudioSource",
    "DatasetSource",
    "ExampleListSource",
    "FolderSource",
    "ManifestSource",
    "SourceConfig",
    "SubsetSource",
    "decode_audio",
    "open_source",
    "resample",
]
