"""Experts: offline teachers that turn audio into frame-level targets for the CoAT heads.

Built-ins: ``pitch`` (CREPE), ``emotion``, ``sound_event``, ``phonetic`` and ``reconstruction`` (log-mel and the
LALM's own audio encoder). Register your own with ``register_expert(name, factory)``; see
``examples/custom_expert.py``. Each expert imports its heavy libraries only when it loads.

Target names (dim; frames/s; kind) of the built-ins, all at 16 kHz:
``pitch`` (360; 100; distribution, weighted by ``voicing``), ``voicing`` (1; 100; regression),
``emotion`` (classes; clip; distribution), ``emotion_frames`` (classes; 1 / hop_s = 2; distribution),
``sound_event`` (classes, 527 for AudioSet; clip; multilabel), ``sound_event_frames`` (classes; 2; multilabel),
``phonetic`` (CTC vocab; 50 for wav2vec2; distribution), ``logmel`` (80; 100; regression),
``encoder`` (LALM audio-encoder width; 25; embedding).
"""

from coat.experts.base import (
    TARGET_KINDS,
    Expert,
    ExpertConfig,
    TargetSpec,
    available_experts,
    build_expert,
    build_experts,
    register_expert,
)
from coat.experts.cache import TargetCache
from coat.experts.compute import compute_targets
from coat.experts.emotion import EmotionExpert
from coat.experts.loading import ModelSourceError, load_pretrained
from coat.experts.phonetic import PhoneticExpert
from coat.experts.pitch import PitchExpert, distribution_to_hz
from coat.experts.reconstruction import ReconstructionExpert
from coat.experts.sound_event import SoundEventExpert

__all__ = [
    "TARGET_KINDS",
    "EmotionExpert",
    "Expert",
    "ExpertConfig",
    "ModelSourceError",
    "PhoneticExpert",
    "PitchExpert",
    "ReconstructionExpert",
    "SoundEventExpert",
    "TargetCache",
    "TargetSpec",
    "available_experts",
    "build_expert",
    "build_experts",
    "compute_targets",
    "distribution_to_hz",
    "load_pretrained",
    "register_expert",
]

register_expert("pitch", PitchExpert)
register_expert("emotion", EmotionExpert)
register_expert("sound_event", SoundEventExpert)
register_expert("phonetic", PhoneticExpert)
register_expert("reconstruction", ReconstructionExpert)
