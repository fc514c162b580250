"""The coat command itself: --help everywhere (options and config keys, plain text), a fast top-level help that
imports no torch, and user errors as one line."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from coat.cli import BENCHMARKS, COMMANDS, main
from coat.config_help import command_help, config_keys, plain

ROOT = Path(__file__).resolve().parent.parent


def test_top_level_help_imports_no_torch():
    code = "import sys; from coat.cli import main; main(['--help']); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip().endswith("False")
    for name in COMMANDS:
        assert f"  {name} " in done.stdout


@pytest.mark.parametrize("argv", [[name, "--help"] for name in COMMANDS] + [["bench", s, "--help"] for s in BENCHMARKS]
                         + [["train", "configs/tiny.yaml", "-h"]], ids=lambda a: " ".join(a))
def test_every_command_help_lists_its_options_and_keys_in_plain_text(argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: coat " + " ".join(a for a in argv[:2] if not a.startswith("-") and ".yaml" not in a))
    assert "`" not in out and ":mod:" not in out  # no docstring markup
    if argv[0] == "bench" and len(argv) == 2:
        assert all(subject in out for subject in BENCHMARKS)
    else:  # one convention: [config.yaml] [key=value ...], every key listed, top-level keys as --key options
        assert f"usage: coat {' '.join(argv[:-1] if argv[-1] == '--help' else argv[:1])}" in out
        assert "[config.yaml] [key=value ...]" in out and "config keys" in out and "--key VALUE" in out
    if argv[:2] in (["bench", "generation"], ["bench", "training"]):
        assert "  threads: int | null = null" in out and "  size: str = mid" in out


def test_help_shows_dotted_keys_with_type_default_and_help(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "  coat.num_thinking: int = 16\n      K: learnable thinking positions" in out
    assert "  stages[].learning_rate: float = 0.0001" in out
    assert "  model.name_or_path: str = ''" in out
    assert main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    assert "  quick: bool = false" in out and "--output" in out and "sets output_dir" in out
    assert "  heads.d_model: int = 64" in out  # the demo's own default for the section, not HeadConfig's 256


def _command_configs():
    sys.path.insert(0, str(ROOT))
    from benchmarks.targets import BenchTargetsConfig
    from benchmarks.widths import WidthsBenchConfig
    from coat.ablation import AblationConfig
    from coat.analysis import AnalyzeConfig
    from coat.demo import DemoConfig
    from coat.evaluation import EvalConfig
    from coat.extraction import ExtractConfig
    from coat.training import TrainConfig

    return [TrainConfig, EvalConfig, AblationConfig, AnalyzeConfig, ExtractConfig, DemoConfig, BenchTargetsConfig,
            WidthsBenchConfig]


def test_every_config_key_of_every_command_has_help():
    missing = [f"{cls.__name__}: {key.key}" for cls in _command_configs() for key in config_keys(cls) if not key.help]
    assert missing == []


def test_config_keys_walk_nested_sections_and_lists():
    @dataclasses.dataclass
    class Leaf:
        size: int = dataclasses.field(default=1, metadata={"help": "the ``size``"})

    @dataclasses.dataclass
    class Root:
        leaf: Leaf = dataclasses.field(default_factory=lambda: Leaf(size=5), metadata={"help": "a section"})
        maybe: Leaf | None = dataclasses.field(default=None, metadata={"help": "an optional section"})
        items: list[Leaf] = dataclasses.field(default_factory=list, metadata={"help": "a list"})
        pair: tuple[float, float] = dataclasses.field(default=(0.5, 1.0), metadata={"help": ":mod:`x` pair"})

    keys = {k.key: k for k in config_keys(Root)}
    assert list(keys) == ["leaf", "leaf.size", "maybe", "maybe.size", "items", "items[].size", "pair"]
    assert (keys["leaf.size"].type, keys["leaf.size"].default, keys["leaf.size"].help) == ("int", "5", "the size")
    assert keys["maybe"].type == "section | null" and keys["maybe.size"].default == "1"
    assert keys["items"].type == "list of sections" and keys["pair"].type == "[float, float]"
    assert keys["pair"].default == "[0.5, 1.0]" and keys["pair"].help == "x pair"
    text = command_help("prog", "Does ``things``.", Root, options=[("--flag", "a flag")], examples=["prog x=1"])
    assert "usage: prog [config.yaml] [key=value ...]" in text and "Does things." in text
    assert "  maybe: section | null = null" in text and "--flag" in text and "  prog x=1" in text


def test_plain_strips_docstring_markup():
    assert plain("See :mod:`coat.demo` and ``x=1``,\n  `y`.") == "See coat.demo and x=1, y."


def test_user_errors_are_one_line_on_stderr(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["targets", str(ROOT / "configs" / "targets_example.yaml"), "data.source.path=data/clips"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "\n" not in err and err.startswith("coat targets: data.source:") and "data/clips" in err
    assert "does not exist" in err or "not reachable" in err or "no such dataset" in err
    assert not (tmp_path / "runs").exists()  # nothing was written for a source that is not there
    assert main(["train"]) == 2 and "usage: coat train" in capsys.readouterr().err
    assert main(["train", "configs/no_such.yaml"]) == 2 and "does not exist" in capsys.readouterr().err


def test_every_command_reads_a_yaml_path_key_values_and_its_keys_as_options():
    """One convention: [config.yaml] [key=value ...]; every top-level key also as --key value (--key alone for a
    true/false key, --no-key to clear it, a comma list for a list key) and a command's own aliases."""
    from benchmarks.training import TrainingBenchConfig
    from coat.cli import split_arguments
    from coat.demo import DemoConfig
    from coat.errors import CoatError

    sys.path.insert(0, str(ROOT))
    path, overrides = split_arguments(["configs/demo.yaml", "--quick", "--seeds", "3", "--output", "x",
                                       "heads.layers=2", "--eval-split=validation"], DemoConfig,
                                      COMMANDS["demo"].aliases, "coat demo")
    assert path == "configs/demo.yaml"
    assert overrides == ["quick=true", "seeds=3", "output_dir=x", "heads.layers=2", "eval_split=validation"]
    path, overrides = split_arguments(["--no-memory", "--variants", "lora,coat", "--head-d-model", "128"],
                                      TrainingBenchConfig, {}, "coat bench training")
    assert path is None and overrides == ["memory=false", "variants=[lora,coat]", "head_d_model=128"]
    with pytest.raises(CoatError, match="unknown option --sedes"):
        split_arguments(["--sedes", "3"], DemoConfig, {}, "coat demo")
    with pytest.raises(CoatError, match="unexpected argument 'extra'"):
        split_arguments(["configs/demo.yaml", "extra"], DemoConfig, {}, "coat demo")


def test_every_command_is_one_row_of_the_table_of_config_class_and_run_function():
    from coat.cli import Group, _import

    commands = [c for entry in COMMANDS.values() for c in (entry.commands.values() if isinstance(entry, Group)
                                                           else [entry])]
    sys.path.insert(0, str(ROOT))
    for command in commands:
        assert dataclasses.is_dataclass(_import(command.config)) and callable(_import(command.run))
        assert (_import(command.run).__doc__ or "").strip(), command.run  # its --help summary
    assert not (ROOT / "coat" / "cli" / "train.py").exists()  # no shim per command
