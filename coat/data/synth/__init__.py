"""A synthetic acoustic question-answering benchmark, generated on the fly from a seed.

Every clip is a short mono waveform with a multiple-choice question whose answer needs acoustic detail
(which note, which vowel, does the pitch rise, how many beeps, ...), so that a small audio LM trained on it
profits from what the pitch and log-mel experts know. Nothing is downloaded: the offline demo trains and
evaluates on it, and tests can check every label against the audio with plain signal processing.

Two modules: ``splits.py`` (:class:`SynthConfig`, the splits and their exports) and ``categories.py`` (each
category is one small synthesis function plus its answer texts and question templates, registered in
:data:`CATEGORIES`; add one with :func:`register_category`). The tone categories (the group ``tones``, the
default) are there; the spoken ones (the group ``speech``: espeak-ng, the ``speech`` extra) in
coat/data/speech_categories.py, registered on import of this package. An example is a plain dict::

    {"id", "split", "category", "audio" (float32, (samples,)), "sampling_rate", "duration_s",
     "question", "choices", "answer", "answer_letter", "answer_index", "caption", ...parameters}

where the parameters (``f0_hz``, ``note``, ``n_beeps``, ``formants_hz``, ...) are the ground truth the
clip was made from, for analysis and linear probes, and ``caption`` is a short description for
audio-text alignment pre-training. Answers are balanced per category, and so are answer letters.

Determinism: every example draws from its own ``numpy`` generator seeded by (seed, split, category,
index), so the same config gives identical audio bytes and questions, any example can be built on its
own, and the splits (different split keys) never share a seed.
"""

from coat.data import speech_categories  # noqa: F401  registers the group `speech` (espeak-ng, the speech extra)
from coat.data.prompts import LETTERS
from coat.data.synth.categories import (
    CATEGORIES,
    NUMBER_WORDS,
    VOWEL_FORMANTS_HZ,
    Category,
    Synthesize,
    category_groups,
    note_to_hz,
    register_category,
)
from coat.data.synth.splits import (
    GENERATOR_VERSION,
    SPLITS,
    SynthConfig,
    generate_split,
    iter_split,
    make_example,
    synth_words,
    to_dataset,
    write_manifest,
    write_split_if_missing,
)

__all__ = [
    "CATEGORIES",
    "GENERATOR_VERSION",
    "LETTERS",
    "NUMBER_WORDS",
    "SPLITS",
    "VOWEL_FORMANTS_HZ",
    "Category",
    "SynthConfig",
    "Synthesize",
    "category_groups",
    "generate_split",
    "iter_split",
    "make_example",
    "note_to_hz",
    "register_category",
    "synth_words",
    "to_dataset",
    "write_manifest",
    "write_split_if_missing",
]
