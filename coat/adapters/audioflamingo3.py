"""Audio Flamingo 3 (``AudioFlamingo3ForConditionalGeneration``, e.g. nvidia/audio-flamingo-3-hf).

The processor repeats ``<sound>`` once per audio frame with no closing marker, so thinking positions
follow the last ``<sound>`` of each run.
"""

from coat.adapters.base import Adapter

ADAPTER = Adapter(
    model_type="audioflamingo3",
    audio_token_id=lambda config: config.audio_token_id,
)
