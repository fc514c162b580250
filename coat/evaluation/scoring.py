"""How an answer is scored: the rules for generated answers and the metrics.

Two rules read a generated answer against its options (``TaskConfig.scoring``):

- ``mmau``: :func:`mmau_match`, the ``string_match`` of MMAU's ``evaluation.py`` (MMAR's ``code/evaluation.py`` is
  the same function), so a score here is the score the benchmark's own script gives the same text;
- ``parse``: :func:`parse_choice`, coat's parser: a letter form or an option's text, and an answer that names no
  option or several is *unparseable* (counted wrong and listed).

The third, ``likelihood``, reads no text: it picks the option the model finds most likely (``likelihood.py``).
"""

from __future__ import annotations

import re
import string
from collections import Counter

from coat.data.prompts import LETTERS

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")
_WORD = re.compile(r"\b\w+\b")  # MMAU's tokens: runs of Unicode word characters (letters, digits, underscore)
# letter forms, tried on the raw generation; each must name a letter among the choices
_LETTER_PATTERNS = (
    re.compile(r"^\s*\(?([A-Za-z])\)?[.:)]?\s*$"),  # "B", "(B)", "B.", "b"
    re.compile(r"\b(?i:answer|option|choice)\b\s*(?i:is)?\s*:?\s*\(?([A-Z])\)?(?![A-Za-z0-9])"),  # "answer is B"
    re.compile(r"^\s*\(?([A-Z])[.:)]\s"),  # "B. text", "(B) text", "B) text"
    re.compile(r"\(([A-Z])\)"),  # "(B)" anywhere
)


# ---------------------------------------------------------------------------------------------------------
# MMAU's rule


def mmau_tokens(text: str) -> set[str]:
    """The set of lowercase word tokens (``\\b\\w+\\b``) of ``text``: what MMAU's ``string_match`` compares."""
    return set(_WORD.findall(str(text).lower()))


def mmau_match(prediction: str, choices: list[str], answer: str) -> bool:
    """MMAU's ``string_match`` (also MMAR's): is ``prediction`` a correct answer?

    Correct when every token of ``answer`` is in the prediction and no token that only wrong choices have is in
    it; tokens are :func:`mmau_tokens`. A wrong choice's tokens that the answer also has do not count against the
    prediction, and a choice with exactly the answer's tokens is no wrong choice. An empty prediction (no tokens:
    ``""``, ``"..."``) is wrong. So ``"B"`` is right only when ``b`` is a word of the answer, and a prediction that
    repeats every choice is wrong."""
    predicted = mmau_tokens(prediction)
    if not predicted:
        return False
    expected = mmau_tokens(answer)
    wrong: set[str] = set()
    for choice in choices:
        tokens = mmau_tokens(choice)
        if tokens != expected:
            wrong |= tokens - expected
    return expected <= predicted and predicted.isdisjoint(wrong)


# ---------------------------------------------------------------------------------------------------------
# coat's parser


def normalize_option(text: str) -> str:
    """Case- and punctuation-insensitive form of an option or a generation: ``"It rises!"`` -> ``"it rises"``."""
    return " ".join(_PUNCT.sub(" ", str(text).lower()).split())


def _letters_in(generation: str, n: int) -> set[int]:
    found: set[int] = set()
    for pattern in _LETTER_PATTERNS:
        for match in pattern.finditer(generation):
            index = LETTERS.find(match.group(1).upper())
            if 0 <= index < n:
                found.add(index)
    return found


def _texts_in(generation: str, options: list[str]) -> set[int]:
    gen = f" {normalize_option(generation)} "
    norm = [normalize_option(o) for o in options]
    hits = {i for i, o in enumerate(norm) if o and f" {o} " in gen}
    # an option contained in a longer matching option ("it rises" in "it rises then falls") is not a match
    return {i for i in hits if not any(j != i and f" {norm[i]} " in f" {norm[j]} " and norm[j] != norm[i]
                                       for j in hits)}


def parse_choice(generation: str, options: list[str], letters: bool = True) -> tuple[int | None, str]:
    """The option a generation names: ``(index, "")``, or ``(None, reason)`` when it names none or several.

    Letter forms (``B``, ``(B)``, ``B.``, ``answer is B``, ``(B) text``; only letters of existing options)
    count when ``letters``; option texts count case- and punctuation-insensitively as whole words. Letters and
    texts that point to different options make the answer ambiguous.
    """
    found = (_letters_in(generation, len(options)) if letters else set()) | _texts_in(generation, options)
    if len(found) == 1:
        return found.pop(), ""
    if not found:
        return None, "names no option"
    listed = ", ".join(LETTERS[i] if letters else repr(options[i]) for i in sorted(found))
    return None, f"ambiguous: names {listed}"


# ---------------------------------------------------------------------------------------------------------
# metrics


def accuracy(correct: list[bool]) -> float:
    return sum(map(bool, correct)) / len(correct) if correct else 0.0


def macro_f1(golds: list[str], predictions: list[str | None]) -> float:
    """Mean over classes of ``2 TP / (2 TP + FP + FN)``; classes: those among the golds or the predictions.

    An unparseable prediction (None) is a false negative of its gold class and nobody's false positive.
    """
    classes = sorted({*golds, *(p for p in predictions if p is not None)})
    if not classes:
        return 0.0
    tp, fp, fn = Counter(), Counter(), Counter()
    for gold, pred in zip(golds, predictions, strict=True):
        if pred == gold:
            tp[gold] += 1
        else:
            fn[gold] += 1
            if pred is not None:
                fp[pred] += 1
    scores = [2 * tp[c] / (2 * tp[c] + fp[c] + fn[c]) if (tp[c] + fp[c] + fn[c]) else 0.0 for c in classes]
    return sum(scores) / len(scores)


NORMALIZERS = ("english", "basic", "lowercase", "none")


def normalize_text(text: str, normalizer: str = "english") -> str:
    """Transcript normalisation before WER.

    ``english``: transformers' Whisper ``EnglishTextNormalizer`` (lowercase, punctuation, contractions, numbers
    and spelled-out numbers, "mr" -> "mister", ...) with an empty British->American spelling map, since that map
    is a file downloaded with a Whisper tokenizer; ``basic``: Whisper's ``BasicTextNormalizer`` (lowercase,
    symbols to spaces); ``lowercase``: lowercase and ASCII punctuation stripped; ``none``: whitespace only.
    """
    if normalizer == "english":
        text = _english_normalizer()(text)
    elif normalizer == "basic":
        from transformers.models.whisper.english_normalizer import BasicTextNormalizer

        text = BasicTextNormalizer()(text)
    elif normalizer == "lowercase":
        text = _PUNCT.sub("", text.lower())
    elif normalizer != "none":
        raise ValueError(f"normalizer must be one of {NORMALIZERS}, got {normalizer!r}")
    return " ".join(text.split())


_ENGLISH = None


def _english_normalizer():
    global _ENGLISH
    if _ENGLISH is None:
        from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

        _ENGLISH = EnglishTextNormalizer({})
    return _ENGLISH


def word_error_rate(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    """Corpus WER of already normalised strings (jiwer): ``{"wer", "substitutions", "deletions", "insertions",
    "reference_words"}``. References must be non-empty."""
    import jiwer

    if not references:
        return {"wer": 0.0, "substitutions": 0, "deletions": 0, "insertions": 0, "reference_words": 0}
    out = jiwer.process_words(list(references), list(hypotheses))
    words = out.substitutions + out.deletions + out.hits
    return {"wer": float(out.wer), "substitutions": out.substitutions, "deletions": out.deletions,
            "insertions": out.insertions, "reference_words": words}
