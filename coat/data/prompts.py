"""One way to turn a (question, choices) example into chat messages, shared by training and evaluation so a
model is asked at test time exactly as it was taught."""

from __future__ import annotations

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ANSWER_FORMATS = ("text", "letter", "letter_text")


def format_question(question: str, choices: list[str] | None = None) -> str:
    """``question`` followed by lettered choices: ``"Which note? Choices: (A) C4 (B) D4"``."""
    if not choices:
        return question
    listed = " ".join(f"({LETTERS[i]}) {choice}" for i, choice in enumerate(choices))
    return f"{question} Choices: {listed}"


def format_answer(answer: str, choices: list[str] | None = None, answer_format: str = "text") -> str:
    """The training target for ``answer``: its text, its letter, or ``"(B) D4"``."""
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
    if answer_format == "text" or not choices:
        return answer
    if answer not in choices:
        raise ValueError(f"answer {answer!r} is not one of the choices {choices}")
    letter = LETTERS[choices.index(answer)]
    return letter if answer_format == "letter" else f"({letter}) {answer}"


def user_messages(text: str, num_audios: int = 1) -> list[dict]:
    """A one-turn conversation: the audio(s) first, then the text (the layout of the families' own examples)."""
    content = [{"type": "audio"} for _ in range(num_audios)] + [{"type": "text", "text": text}]
    return [{"role": "user", "content": content}]


def prompt_text(processor, text: str, num_audios: int = 1) -> str:
    """The chat-templated prompt, ending where the assistant's answer starts."""
    return processor.apply_chat_template(user_messages(text, num_audios), add_generation_prompt=True,
                                         tokenize=False)
