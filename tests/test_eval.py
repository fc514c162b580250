"""``coat eval``: answer parsing, metrics, and the real CLI on synthetic audio with tiny models (offline)."""

import json

import jiwer
import pytest

from coat.cli import main as coat_main
from coat.config_io import load_config
from coat.data.synth import SynthConfig, generate_split, write_manifest
from coat.evaluation import (
    EvalConfig,
    macro_f1,
    normalize_text,
    parse_choice,
    word_error_rate,
)

CHOICES = ["C4", "it rises", "it rises then falls", "a hum"]
# A tiny vocabulary rich in answer forms, so that a random model's greedy answers parse to letters and texts.
WORDS = ["A", "B", "C", "D", "(A)", "(B)", "B.", "C.", "answer", "is", "the", "C4", "hum", "a", "beeps", "chirp",
         "click", "train", "cat", "sat", "on", "mat", "it", "rises", "falls"]


@pytest.mark.parametrize("generation, expected", [
    ("B", 1), ("b", 1), ("(B)", 1), ("B.", 1), ("B)", 1), ("The answer is B.", 1), ("Answer: (C)", 2),
    ("(B) it rises", 1), ("B. it rises", 1), ("it rises", 1), ("It Rises!", 1), ("c4", 0),
    ("It rises then falls.", 2),  # the longer option wins over the one it contains
    ("I think it is a hum", 3), ("The answer is a hum", 3),  # "a" after "answer is" is an article, not (A)
])
def test_parse_choice_letter_and_text_forms(generation, expected):
    assert parse_choice(generation, CHOICES) == (expected, "")


@pytest.mark.parametrize("generation, reason", [
    ("", "names no option"), ("no idea", "names no option"), ("E", "names no option"),  # no option E
    ("A or B", "names no option"), ("(A) or (B)", "ambiguous: names A, B"),
    ("(A) it rises", "ambiguous: names A, B"), ("C4 or a hum", "ambiguous"),
])
def test_parse_choice_unparseable(generation, reason):
    index, why = parse_choice(generation, CHOICES)
    assert index is None and why.startswith(reason)


def test_macro_f1_hand_computed():
    golds = ["cat", "cat", "dog", "dog", "bird"]
    preds = ["cat", "dog", "dog", None, "cat"]
    # cat: tp1 fp1 fn1 -> 2/4; dog: tp1 fp1 fn1 -> 2/4; bird: tp0 fp0 fn1 -> 0
    assert macro_f1(golds, preds) == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    assert macro_f1(["a", "b"], ["a", "b"]) == 1.0


def test_wer_matches_jiwer_on_normalised_strings():
    refs = ["Hello, World! It's twenty-one.", "THE CAT sat on the mat."]
    hyps = ["hello world it is 21", "the cat sat mat hat"]
    refs_n = [normalize_text(r) for r in refs]
    hyps_n = [normalize_text(h) for h in hyps]
    assert refs_n[0] == "hello world it is 21"
    assert word_error_rate(refs_n, hyps_n)["wer"] == pytest.approx(jiwer.wer(refs_n, hyps_n))
    assert word_error_rate(refs_n, hyps_n)["reference_words"] == 11
    assert normalize_text("Hello, World!", "lowercase") == "hello world"


# ---------------------------------------------------------------------------------------------------------
# the real CLI on synthetic audio


@pytest.fixture(scope="module")
def tiny(save_tiny_with_adapter):
    """A tiny random Qwen2-Audio + real processor, and a CoAT adapter of it, saved to disk."""
    return save_tiny_with_adapter("eval_tiny", WORDS)


def write_synth(folder, size=12, categories=None, seed=0):
    config = SynthConfig(test_size=size, seed=seed, **({"categories": categories} if categories else {}))
    return write_manifest(generate_split(config, "test"), folder)


def run_cli(config: dict, tmp_path, *overrides):
    path = tmp_path / "eval.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return coat_main(["eval", str(path), "progress=false", *overrides])


def base_config(tiny, out, tasks, **extra):
    return {"model": {"name_or_path": str(tiny / "model")}, "output_dir": str(out), "batch_size": 4,
            "max_new_tokens": 2, "tasks": tasks, **extra}


def test_eval_base_and_adapter_metrics_match_a_recount(tiny, tmp_path, capsys):
    mc = write_synth(tmp_path / "mc", size=12)
    cls = write_synth(tmp_path / "cls", size=8, categories=["sound_type"], seed=1)
    tasks = [
        {"name": "mc", "type": "multiple_choice", "data": {"source": {"path": str(mc)}}},
        {"name": "sound", "type": "classification", "data": {"source": {"path": str(cls)}}, "prompt": "Which sound?"},
        {"name": "sound_text", "type": "classification", "data": {"source": {"path": str(cls)}},
         "prompt": "Which sound?", "list_labels": False, "max_new_tokens": 4},
        {"name": "caption", "type": "transcription", "data": {"source": {"path": str(mc)}}, "text_column": "caption",
         "max_new_tokens": 4},
    ]
    out = tmp_path / "out"
    config = base_config(tiny, out, tasks, adapters=[{"path": str(tiny / "adapter"), "name": "coat4"}])
    assert run_cli(config, tmp_path) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["models"]) == ["base", "coat4"]
    answers = {json.loads(line)["id"]: json.loads(line) for line in mc.read_text().splitlines()}
    forms = set()
    for per_task in results["models"].values():
        res = per_task["mc"]
        preds = res["predictions"]
        assert len(preds) == 12 and res["metrics"]["n"] == 12
        # recount from the saved predictions against the manifest's answers
        correct = [p["parsed"] == answers[p["id"]]["answer"] for p in preds]
        assert res["metrics"]["accuracy"] == pytest.approx(sum(correct) / len(correct))
        for cat in {a["category"] for a in answers.values()}:
            rows = [c for p, c in zip(preds, correct) if answers[p["id"]]["category"] == cat]
            assert res["metrics"][f"accuracy/{cat}"] == pytest.approx(sum(rows) / len(rows))
        assert {u["id"] for u in res["unparseable"]} == {p["id"] for p in preds if p["parsed"] is None}
        for p in preds:  # what the model said, and how it was read
            index, _ = parse_choice(p["prediction"], answers[p["id"]]["choices"])
            assert p["parsed"] == (None if index is None else answers[p["id"]]["choices"][index])
            if p["parsed"] is not None:
                forms.add("text" if p["parsed"].lower() in p["prediction"].lower() else "letter")
        sound = per_task["sound"]
        golds = [p["answer"] for p in sound["predictions"]]
        for p in sound["predictions"] + per_task["sound_text"]["predictions"]:
            assert p["correct"] == (p["parsed"] == p["answer"])
            if p["parsed"] is not None:
                forms.add("text" if p["parsed"].lower() in p["prediction"].lower() else "letter")
        assert sound["metrics"]["accuracy"] == pytest.approx(sum(p["correct"] for p in sound["predictions"]) / 8)
        parsed = [p["parsed"] for p in sound["predictions"]]
        assert sound["metrics"]["macro_f1"] == pytest.approx(macro_f1(golds, parsed))
        cap = per_task["caption"]["predictions"]
        assert per_task["caption"]["metrics"]["wer"] == pytest.approx(
            jiwer.wer([p["reference"] for p in cap], [p["hypothesis"] for p in cap]))
    # the random tiny model's answers are not all unparseable: letters and texts both get read
    assert forms == {"text", "letter"}
    table = (out / "results.md").read_text()
    assert table.splitlines()[0] == "| task / metric | base | coat4 |"
    assert "| mc / accuracy |" in table and "| caption / wer |" in table and "| sound / macro_f1 |" in table
    assert "| task / metric | base | coat4 |" in capsys.readouterr().out


def test_missing_audio_is_skipped_and_reported(tiny, tmp_path, capsys):
    manifest = write_synth(tmp_path / "data", size=6)
    missing = json.loads(manifest.read_text().splitlines()[2])
    (manifest.parent / missing["audio"]).unlink()
    out = tmp_path / "out"
    tasks = [{"name": "mc", "data": {"source": {"path": str(manifest)}}}]
    assert run_cli(base_config(tiny, out, tasks), tmp_path) == 0
    res = json.loads((out / "results.json").read_text())["models"]["base"]["mc"]
    assert [s["id"] for s in res["skipped"]] == [missing["id"]]
    assert "file not found" in res["skipped"][0]["reason"]
    # never dropped from the denominator: 6 items, the unreadable one counted wrong
    assert res["metrics"]["n"] == 6 and res["metrics"]["skipped"] == 1 and res["metrics"]["unanswered"] == 1
    assert missing["id"] not in {p["id"] for p in res["predictions"]}
    correct = sum(p["correct"] for p in res["predictions"])
    assert res["metrics"]["accuracy"] == pytest.approx(correct / 6)
    assert f"base / mc: 1 item(s) with unreadable audio, counted wrong (first: {missing['id']}" in \
        capsys.readouterr().out


def test_answer_missing_from_choices_is_reported_not_fatal(tiny, tmp_path, capsys):
    manifest = write_synth(tmp_path / "data", size=4)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    rows[1]["answer"] = "not an option"
    del rows[2]["choices"]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    assert run_cli(base_config(tiny, out, [{"name": "mc", "data": {"source": {"path": str(manifest)}}}]),
                   tmp_path) == 0
    res = json.loads((out / "results.json").read_text())["models"]["base"]["mc"]
    assert {i["id"]: i["reason"] for i in res["invalid"]} == {
        rows[1]["id"]: f"the answer 'not an option' is not one of its choices {rows[1]['choices']}",
        rows[2]["id"]: "choices must be a list of at least two options, got None"}
    assert (res["metrics"]["n"], res["metrics"]["invalid"], res["metrics"]["unanswered"]) == (4, 2, 2)
    assert sorted(p["id"] for p in res["predictions"]) == sorted([rows[0]["id"], rows[3]["id"]])
    assert "base / mc: 2 item(s) that cannot be scored, counted wrong" in capsys.readouterr().out


def test_unknown_config_key_is_an_error(tmp_path, capsys):
    task = {"name": "t", "data": {"source": {"path": "m.jsonl"}}, "promt": "?"}
    config = {"model": {"name_or_path": "x"}, "tasks": [task]}
    assert run_cli(config, tmp_path) == 2
    assert "tasks[0].promt" in capsys.readouterr().err


def test_eval_tiny_config_runs(tmp_path, monkeypatch, capsys):
    """configs/eval_tiny.yaml as shipped (its synth manifests, its created tiny model), and its output says that a
    tiny random model scores near zero."""
    from pathlib import Path

    config_path = Path(__file__).parents[1] / "configs" / "eval_tiny.yaml"
    monkeypatch.chdir(tmp_path)
    config = load_config(EvalConfig, config_path, ["progress=false"])
    assert [t.type for t in config.tasks] == ["multiple_choice", "classification", "transcription"]
    assert coat_main(["eval", str(config_path), "progress=false"]) == 0
    results = json.loads((tmp_path / "runs/eval_tiny/results.json").read_text())
    assert set(results["models"]["base"]) == {"synth_mc", "synth_sound_type", "synth_caption"}
    out = capsys.readouterr().out
    assert "smoke run on a tiny random model" in out and "expected to score near zero" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # every output under runs/




def test_one_bad_adapter_is_reported_by_name_and_the_others_are_kept(tiny, tmp_path, capsys):
    import shutil

    mc = write_synth(tmp_path / "mc", size=4)
    broken = tmp_path / "broken"
    shutil.copytree(tiny / "adapter", broken)
    (broken / "coat_model.safetensors").write_bytes(b"\0" * 20)  # a damaged weights file
    adapters = [{"path": str(tiny / "adapter"), "name": "good1"}, {"path": str(broken), "name": "bad"},
                {"path": str(tiny / "adapter"), "name": "good2"}]
    out = tmp_path / "out"
    assert run_cli(base_config(tiny, out, [{"name": "mc", "data": {"source": {"path": str(mc)}}}], adapters=adapters),
                   tmp_path) == 1
    results = json.loads((out / "results.json").read_text())
    assert list(results["models"]) == ["base", "good1", "good2"]
    assert results["failed"]["bad"]["path"] == str(broken)
    assert "coat_model.safetensors cannot be read" in results["failed"]["bad"]["error"]
    assert (out / "results.md").read_text().splitlines()[0] == "| task / metric | base | good1 | good2 |"
    err = capsys.readouterr().err
    assert f"coat eval: bad ({broken}) failed: ValueError" in err


def test_a_task_without_examples_is_an_error_naming_it(tiny, tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = tmp_path / "out"
    assert run_cli(base_config(tiny, out, [{"name": "mc", "data": {"source": {"path": str(empty)}}}]), tmp_path) == 2
    assert "task 'mc': its data" in capsys.readouterr().err and not (out / "results.json").exists()
