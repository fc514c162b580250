"""Audio data for CoAT: the ``data:`` section of every command (:class:`DataConfig`, :func:`open_data`) and the
example sources it opens, shared by target extraction, training, evaluation and analysis.

``coat.data.synth`` (the synthetic acoustic QA benchmark) and ``coat.data.collate`` are imported on their own.
"""

from coat.data.config import DataConfig, open_data
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
    "DataConfig",
    "DatasetSource",
    "ExampleListSource",
    "FolderSource",
    "ManifestSource",
    "SourceConfig",
    "SubsetSource",
    "decode_audio",
    "open_data",
    "open_source",
    "resample",
]
