"""Functions of the local lmms-eval tasks: the prompt is coat's (coat.data.prompts.format_question), so lmms-eval
asks exactly what coat eval asks."""

from pathlib import Path

import soundfile as sf

from coat.data.prompts import format_question
from coat.evaluation import mmau_match

DATA = Path(__file__).parent / "data"


def doc_to_audio(doc):
    array, rate = sf.read(DATA / doc["audio"], dtype="float32")
    return [{"array": array, "sampling_rate": rate}]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return format_question(doc["question"], doc["choices"])


def doc_to_choice(doc):
    return doc["choices"]


def doc_to_target(doc):
    return doc["choices"].index(doc["answer"])


def mmau_results(doc, results):
    return {"mmau_accuracy": float(mmau_match(results[0], doc["choices"], doc["answer"]))}
