"""MMAU and MMAR as published: MMAU's string_match on edge cases, and real items (tests/data) through ``coat eval``
with a tiny model: the copy it writes has the official output key on every item, and the accuracy it reports is
MMAU's rule applied to that copy (so the benchmark's own script gives the same number). Bad items are reported, never
a crash and never dropped."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from coat.cli import main as coat_main
from coat.evaluation import mmau_match, read_items

DATA = Path(__file__).parent / "data"
MMAU = DATA / "mmau" / "mmau-test-mini-sample.json"
MMAR = DATA / "mmar" / "MMAR-meta-sample.jsonl"

WOMAN = ["A child", "A woman", "An adult man", "A teenager"]
SPEECH = ["Male speech", "Female speech", "Male singing", "Female singing"]
SECONDS = ["0.75 seconds", "1.00 seconds", "1.49 seconds", "2.00 seconds"]


@pytest.mark.parametrize("prediction, choices, answer, expected", [
    # every answer token ({a, woman}) is there, and none of the tokens only wrong choices have (child, an, adult,
    # man, teenager: "a" is shared with the answer, so it does not count against)
    ("A woman", WOMAN, "A woman", True),
    ("a WOMAN.", WOMAN, "A woman", True),  # lowercased word tokens: case and punctuation do not matter
    ("The speaker is a woman", WOMAN, "A woman", True),  # extra words are fine unless a wrong choice has them
    ("woman", WOMAN, "A woman", False),  # the answer's "a" is missing: every answer token is required
    ("a woman, not a man", WOMAN, "A woman", False),  # "man" is a wrong choice's token
    ("B", WOMAN, "A woman", False),  # a letter alone is no answer token
    ("A", WOMAN, "A woman", False),  # ... nor is "a" alone ("woman" missing)
    ("(B) A woman", WOMAN, "A woman", True),  # "b" belongs to no choice, so the letter does not hurt
    ("", WOMAN, "A woman", False),  # an empty prediction is wrong
    ("...", WOMAN, "A woman", False),  # no word tokens: empty
    ("A child, a woman, an adult man or a teenager", WOMAN, "A woman", False),  # naming every choice
    # multi-word answers sharing words with wrong choices: male and speech are the answer's, so only female and
    # singing count against
    ("male speech", SPEECH, "Male speech", True),
    ("speech by a male", SPEECH, "Male speech", True),  # order does not matter
    ("Female speech", SPEECH, "Male speech", False),
    ("Male", SPEECH, "Male speech", False),
    # \w+ splits at hyphens and points: twenty-three is {twenty, three}; "twenty" is the answer's, so not wrong
    ("twenty three", ["twenty", "twenty-three", "eighteen"], "twenty-three", True),
    ("twenty", ["twenty", "twenty-three", "eighteen"], "twenty-three", False),
    ("1.49 seconds", SECONDS, "1.49 seconds", True),  # {1, 49, seconds}
    ("1.49", SECONDS, "1.49 seconds", False),  # "seconds" missing
    ("1.49 seconds, not 2.00", SECONDS, "1.49 seconds", False),  # 2 and 00 are wrong choices' tokens
    # a choice with exactly the answer's tokens is no wrong choice (MMAU lists some answers twice)
    ("It rises.", ["It rises.", "it rises", "It falls"], "it rises", True),
    ("CAFÉ", ["café", "bar"], "café", True),  # Unicode word characters, lowercased
])
def test_mmau_match_is_mmaus_string_match(prediction, choices, answer, expected):
    assert mmau_match(prediction, choices, answer) is expected


# ---------------------------------------------------------------------------------------------------------
# real items through coat eval


def _words() -> list[str]:
    """The tiny tokenizer's words: the answers' and choices' words of the sample files and a few letters, so a
    random model's answers sometimes name an option."""
    words = {"A", "B", "C", "D", "(A)", "(B)", "answer", "is"}
    for item in [*read_items(MMAU), *read_items(MMAR)]:
        for choice in item["choices"]:
            words.update(choice.split())
    return sorted(words)


@pytest.fixture(scope="module")
def tiny(save_tiny_with_adapter):
    """A tiny random Qwen2-Audio with a real processor, and a CoAT adapter of it, saved to disk."""
    return save_tiny_with_adapter("bench_tiny", _words())


def published(tmp_path: Path, file: Path, audio_field: str) -> Path:
    """The benchmark file copied unchanged into ``tmp_path``, with a short tone at each item's audio path."""
    target = tmp_path / file.name
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copy(file, target)
    for n, item in enumerate(read_items(file)):
        wav = target.parent / item[audio_field]
        wav.parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(8000) / 16000
        sf.write(wav, (0.3 * np.sin(2 * np.pi * (200 + 40 * n) * t)).astype(np.float32), 16000)
    return target


def run_eval(tiny, tmp_path, tasks, **extra) -> dict:
    config = {"model": {"name_or_path": str(tiny / "model")}, "adapters": [str(tiny / "adapter")],
              "output_dir": str(tmp_path / "out"), "batch_size": 3, "max_new_tokens": 3, "progress": False,
              "tasks": tasks, **extra}
    path = tmp_path / "eval.yaml"
    path.write_text(json.dumps(config))
    assert coat_main(["eval", str(path)]) == 0
    return json.loads((tmp_path / "out" / "results.json").read_text())


def official_accuracy(items: list[dict], key: str, fields: tuple[str, ...]) -> dict[str, float]:
    """MMAU's rule over a written file: overall and per value of each field, over the items that have ``key``."""
    scored = [(item, mmau_match(item[key], item["choices"], item["answer"])) for item in items if key in item]
    out = {"accuracy": sum(ok for _, ok in scored) / len(scored)}
    for name in fields:
        for value in {item[name] for item, _ in scored}:
            group = [ok for item, ok in scored if item[name] == value]
            out[f"accuracy/{name}={value}"] = sum(group) / len(group)
    return out


def test_mmau_file_as_published_is_written_back_with_model_output_on_every_item(tiny, tmp_path):
    file = published(tmp_path / "mmau", MMAU, "audio_id")
    source = {"source": {"path": str(file)}}
    tasks = [{"name": "mmau", "benchmark": "mmau", "data": source},
             {"name": "mmau_lik", "benchmark": "mmau", "data": source, "scoring": "likelihood"}]
    results = run_eval(tiny, tmp_path, tasks)
    original = read_items(MMAU)
    fields = ("task", "difficulty", "sub-category")
    for column in ("base", "adapter"):
        for task in ("mmau", "mmau_lik"):
            res = results["models"][column][task]
            written = Path(res["benchmark_file"])
            assert written == tmp_path / "out" / column / task / MMAU.name
            items = json.loads(written.read_text())
            assert len(items) == len(original) == res["metrics"]["n"] == 8
            for item, before in zip(items, original):
                assert {k: v for k, v in item.items() if k != "model_output"} == before  # as published
                assert isinstance(item["model_output"], str)
            expected = official_accuracy(items, "model_output", fields)
            name = "accuracy" if task == "mmau" else "likelihood_accuracy"
            reported = {k.replace(name, "accuracy", 1): v for k, v in res["metrics"].items()
                        if k == name or k.startswith(f"{name}/")}
            assert reported == pytest.approx(expected)
            assert res["metrics"]["unanswered"] == 0
        # the generated answers are what the model said; the likelihood copy holds the picked options
        gen = results["models"][column]["mmau"]["predictions"]
        assert [p["prediction"] for p in gen] == [i["model_output"] for i in json.loads(
            Path(results["models"][column]["mmau"]["benchmark_file"]).read_text())]
        lik = json.loads(Path(results["models"][column]["mmau_lik"]["benchmark_file"]).read_text())
        assert all(item["model_output"] in item["choices"] for item in lik)
    assert sum(p["likelihood"]["correct"] for p in results["models"]["adapter"]["mmau"]["predictions"]) > 0


def test_mmar_file_as_published_gets_answer_prediction(tiny, tmp_path):
    file = published(tmp_path / "mmar", MMAR, "audio_path")
    task = {"name": "mmar", "benchmark": "mmar", "data": {"source": {"path": str(file)}}}
    results = run_eval(tiny, tmp_path, [task])
    res = results["models"]["adapter"]["mmar"]
    written = Path(res["benchmark_file"])
    assert written.suffix == ".jsonl"
    lines = written.read_text().splitlines()
    items = [json.loads(line) for line in lines]
    original = read_items(MMAR)
    assert len(items) == len(original) == 4
    assert [{k: v for k, v in i.items() if k != "answer_prediction"} for i in items] == original
    expected = official_accuracy(items, "answer_prediction", ("modality", "category", "sub-category"))
    assert {k: v for k, v in res["metrics"].items() if k == "accuracy" or k.startswith("accuracy/")} == \
        pytest.approx(expected)
    assert "accuracy/modality=mix-sound-speech" in res["metrics"]


def test_bad_items_are_reported_counted_wrong_and_written_empty(tiny, tmp_path, capsys):
    file = published(tmp_path / "mmau", MMAU, "audio_id")
    items = json.loads(file.read_text())
    (file.parent / items[0]["audio_id"]).unlink()  # a missing audio file
    items[1]["answer"] = "not an option"  # an answer that is not among its choices
    items[2]["choices"] = []  # an item without choices
    file.write_text(json.dumps(items, indent=2))
    task = {"name": "mmau", "benchmark": "mmau", "data": {"source": {"path": str(file)}}}
    results = run_eval(tiny, tmp_path, [task])
    res = results["models"]["base"]["mmau"]
    metrics = res["metrics"]
    assert (metrics["n"], metrics["unanswered"], metrics["skipped"], metrics["invalid"]) == (8, 3, 1, 2)
    assert [s["id"] for s in res["skipped"]] == [items[0]["id"]] and "file not found" in res["skipped"][0]["reason"]
    reasons = {i["id"]: i["reason"] for i in res["invalid"]}
    assert "'not an option' is not one of its choices" in reasons[items[1]["id"]]
    assert "at least two options" in reasons[items[2]["id"]]
    written = json.loads(Path(res["benchmark_file"]).read_text())
    assert len(written) == 8 and [w["model_output"] for w in written[:3]] == ["", "", ""]
    # the denominator is every item: MMAU's rule over the written copy gives the reported accuracy
    assert metrics["accuracy"] == pytest.approx(official_accuracy(written, "model_output", ())["accuracy"])
    assert metrics["likelihood_accuracy"] <= 5 / 8
    out = capsys.readouterr().out
    assert "base / mmau: 1 item(s) with unreadable audio, counted wrong" in out
    assert "base / mmau: 2 item(s) that cannot be scored, counted wrong" in out


def test_a_column_no_item_has_stops_before_the_model_loads(tmp_path, capsys):
    file = published(tmp_path / "mmau", MMAU, "audio_id")
    config = {"model": {"name_or_path": str(tmp_path / "no_model")}, "output_dir": str(tmp_path / "out"),
              "tasks": [{"name": "mmau", "benchmark": "mmau", "data": {"source": {"path": str(file)},
                                                                       "question_column": "prompt"}}]}
    path = tmp_path / "eval.yaml"
    path.write_text(json.dumps(config))
    assert coat_main(["eval", str(path)]) == 2
    assert "no example has a 'prompt' field" in capsys.readouterr().err
