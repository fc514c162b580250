"""Experts: offline teachers that turn audio into frame-level targets for the CoAT heads.

Built-ins: ``pitch`` (CREPE), ``emotion``, ``sound_event``, ``phonetic`` and ``reconstruction`` (log-mel and the
LALM's own audio encoder), and the offline speech experts of the ``speech`` extra, whose wheels ship their models or
analysis code: ``speech_activity`` (Silero VAD), ``speaker`` (Resemblyzer), ``egemaps`` (openSMILE) and ``formants``
(Praat). Register your own with ``register_expert(name, factory)``; see
``examples/custom_expert.py``. Each expert imports its heavy libraries only when it loads.

Target names (dim; frames/s; kind) of the built-ins, all at 16 kHz:
``pitch`` (360; 100; distribution, weighted by ``voicing``; cached as CREPE's pitch per frame and rebuilt as a
Gaussian at batch time), ``voicing`` (1; 100; regression),
``emotion`` (classes; clip; distribution), ``emotion_frames`` (classes; 1 / hop_s = 2; distribution),
``sound_event`` (classes, 527 for AudioSet; clip; multilabel), ``sound_event_frames`` (classes; 2; multilabel),
``phonetic`` (CTC vocab; 50 for wav2vec2; distribution), ``logmel`` (80; 100; regression; made in the data
loader), ``encoder`` (LALM audio-encoder width; 25; embedding; taken in the forward from the frozen audio tower),
``speech_activity`` (1; 31.25; multilabel),
``speaker`` (256; clip; embedding), ``egemaps`` (10; 100; regression), ``egemaps_voiced`` (15; 100; regression,
weighted by ``egemaps_voicing``), ``egemaps_voicing`` (1; 100; multilabel), ``formants`` (3, Bark; 100; regression,
weighted by ``formant_voicing``), ``formant_voicing`` (1; 100; multilabel).
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
from coat.experts.egemaps import EGeMAPSExpert
from coat.experts.emotion import EmotionExpert
from coat.experts.formants import FormantExpert
from coat.experts.loading import ModelSourceError, load_pretrained
from coat.experts.phonetic import PhoneticExpert
from coat.experts.pitch import PitchExpert, distribution_to_hz
from coat.experts.reconstruction import ReconstructionExpert
from coat.experts.sound_event import SoundEventExpert
from coat.experts.speaker import SpeakerExpert
from coat.experts.speech_activity import SpeechActivityExpert

__all__ = [
    "TARGET_KINDS",
    "EGeMAPSExpert",
    "EmotionExpert",
    "Expert",
    "ExpertConfig",
    "FormantExpert",
    "ModelSourceError",
    "PhoneticExpert",
    "PitchExpert",
    "ReconstructionExpert",
    "SoundEventExpert",
    "SpeakerExpert",
    "SpeechActivityExpert",
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
register_expert("speech_activity", SpeechActivityExpert)
register_expert("speaker", SpeakerExpert)
register_expert("egemaps", EGeMAPSExpert)
register_expert("formants", FormantExpert)
