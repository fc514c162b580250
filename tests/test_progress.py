"""Progress output: plain lines in a log file (no carriage returns), a bar in a terminal, Trainer logs as numbers."""

import io

from coat.progress import PlainProgress, format_logs, is_small_model, progress_bar, weights_bytes


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_file_gets_plain_lines_not_carriage_returns():
    log = io.StringIO()
    bar = progress_bar(total=3, desc="targets (pitch)", unit="clip", file=log, interval=0.0)
    assert isinstance(bar, PlainProgress)
    for _ in range(3):
        bar.update(1)
    bar.set_postfix(audio_s="12")
    bar.close()
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 4  # one per update (interval 0) and one at the end
    assert lines[0].startswith("targets (pitch): 1/3 clip (33%)")
    assert lines[-1].startswith("targets (pitch): 3/3 clip (100%)") and lines[-1].endswith("audio_s=12")


def test_lines_are_periodic_and_iteration_works():
    log = io.StringIO()
    items = list(progress_bar(range(5), desc="eval", file=log, interval=3600.0))
    assert items == list(range(5))
    assert log.getvalue().splitlines() == [log.getvalue().splitlines()[0]]  # only the closing line in an hour
    assert log.getvalue().startswith("eval: 5/5 it (100%)")
    quiet = io.StringIO()
    list(progress_bar(range(3), file=quiet, enabled=False))
    assert quiet.getvalue() == ""


def test_a_terminal_gets_a_tqdm_bar():
    from tqdm.auto import tqdm

    bar = progress_bar(total=2, desc="x", file=_Terminal())
    assert isinstance(bar, tqdm)
    bar.close()


def test_trainer_logs_print_numbers_as_numbers():
    line = format_logs({"loss": 11.3712, "grad_norm": 6.2512345, "learning_rate": 0.008333, "epoch": 0.5,
                        "step": 3, "note": "x"})
    assert line == "loss 11.37  grad_norm 6.251  learning_rate 0.008333  epoch 0.5  step 3  note x"
    assert "'" not in line


def test_small_model_folders(tmp_path):
    assert weights_bytes(tmp_path / "missing") is None and not is_small_model("Qwen/Qwen2-Audio-7B-Instruct")
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 1000)
    (tmp_path / "config.json").write_text("{}")
    assert weights_bytes(tmp_path) == 1000 and is_small_model(tmp_path)
