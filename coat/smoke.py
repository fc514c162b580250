"""What a smoke run says about itself: a tiny random model (``model.create_tiny``) or ``coat demo --quick``
scores near zero, and its output says so, with what the run is for."""

from __future__ import annotations

# command -> what its smoke run checks
_PURPOSE = {
    "coat train": "the losses show that the thinking table, the heads and LoRA train and the adapter saves",
    "coat eval": "it checks data loading, batched generation, answer parsing and scoring",
    "coat ablate": "it checks that every run of the grid trains, evaluates and reaches the table",
    "coat analyze": "it checks the attention-share and probe plumbing; the numbers mean nothing",
}
_REAL = "coat demo (about 8 minutes on 2 CPU cores) gives numbers that mean something; so does a real model"


def tiny_model_note(command: str) -> str:
    """One plain line for the output of ``command`` run on a tiny random model."""
    return (f"note: this is a smoke run on a tiny random model (model.create_tiny): it is expected to score near "
            f"zero, with most answers unparseable; {_PURPOSE[command]}. {_REAL}.")


def quick_demo_note() -> str:
    return ("note: --quick is a smoke run (a few dozen clips, a few dozen pre-training steps, a few training steps): "
            "accuracies near zero or chance are expected, and the variants' order means nothing; it checks that "
            "the whole recipe runs. coat demo without --quick gives the result (about 8 minutes on 2 CPU cores).")
