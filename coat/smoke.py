"""What a smoke run says about itself: a tiny random model (``model.create_tiny``) or ``coat demo --quick``
scores near zero, and its output says so, with what the run is for."""

from __future__ import annotations

# command -> (what a tiny random model gives there, what its smoke run checks)
_NOTES = {
    "coat train": ("it learns no useful answers (it scores near zero in coat eval)",
                   "the losses show that the thinking table, the heads and LoRA train and the adapter saves"),
    "coat eval": ("it is expected to score near zero, with most answers unparseable",
                  "it checks data loading, batched generation, answer parsing and scoring"),
    "coat ablate": ("every run is expected to score near zero, with most answers unparseable",
                    "it checks that every run of the grid trains, evaluates and reaches the table"),
    "coat analyze": ("its attention shares and probe accuracies mean nothing",
                     "it checks the attention-share and probe plumbing"),
}
_REAL = "coat demo (about 7 minutes on 2 CPU cores) gives numbers that mean something; so does a real model"


def tiny_model_note(command: str) -> str:
    """One plain line for the output of ``command`` run on a tiny random model."""
    expected, purpose = _NOTES[command]
    return f"note: this is a smoke run on a tiny random model (model.create_tiny): {expected}; {purpose}. {_REAL}."


def quick_demo_note() -> str:
    return ("note: --quick is a smoke run (a few dozen clips, a few dozen pre-training steps, a few training steps): "
            "accuracies near zero or chance are expected, and the variants' order means nothing; it checks that "
            "the whole recipe runs. coat demo without --quick gives the result (about 7 minutes on 2 CPU cores).")
