"""The torch / torchaudio guard: a mismatched pair stops `import coat` and `coat` with one short message.

The mismatch is simulated by a torchaudio distribution record of another version placed first on sys.path
(what importlib.metadata reads), not by installing a broken pair.
"""

import os
import subprocess
import sys
from importlib import metadata

import pytest

from coat.environment import torch_pair_problem, torchvision_for, torchvision_problem

TORCH = metadata.version("torch")


@pytest.mark.parametrize(("torch_version", "audio_version", "ok"), [
    ("2.11.0", "2.11.0", True),
    ("2.11.0+cu130", "2.11.0+cu130", True),
    ("2.11.0+cu130", "2.11.0", True),  # one local tag only: the release decides
    ("2.11.0", "2.11.1", False),  # the pair that broke fresh installs
    ("2.12.0", "2.11.0", False),
    ("2.11.0+cpu", "2.11.0+cu130", False),
    ("2.11.0", None, True),  # no torchaudio: transformers does not import it
])
def test_pair_rule(torch_version, audio_version, ok):
    problem = torch_pair_problem(torch_version, audio_version)
    assert (problem is None) == ok
    if not ok:
        assert torch_version in problem and audio_version in problem
        assert f'pip install "torchaudio=={torch_version.partition("+")[0]}"' in problem


def test_fix_names_the_index_of_a_local_build():
    problem = torch_pair_problem("2.11.0+cu126", "2.11.1+cu126")
    assert "--index-url https://download.pytorch.org/whl/cu126" in problem


@pytest.mark.parametrize(("torch_version", "vision_version", "ok"), [
    ("2.11.0", "0.26.0", True),  # the locked pair
    ("2.11.0+cu130", "0.26.0+cu130", True),
    ("2.11.0+cu130", "0.26.0", True),  # one local tag only: the release decides
    ("2.4.1", "0.19.1", True),
    ("2.11.0", "0.27.0", False),  # built for torch 2.12
    ("2.11.0", "0.26.1", False),
    ("2.11.0+cpu", "0.26.0+cu130", False),
    ("2.11.0", None, True),  # no torchvision (lmms-eval not installed): nothing to check
])
def test_torchvision_rule(torch_version, vision_version, ok):
    problem = torchvision_problem(torch_version, vision_version)
    assert (problem is None) == ok
    if not ok:
        assert f'pip install "torchvision=={torchvision_for(torch_version)}"' in problem
        assert torch_version in problem and vision_version in problem


def _fake(tmp_path, name, version):
    record = tmp_path / f"{name}-{version}.dist-info"
    record.mkdir()
    (record / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return {**os.environ, "PYTHONPATH": str(tmp_path)}


def _fake_torchaudio(tmp_path, version):
    return _fake(tmp_path, "torchaudio", version)


def test_a_torchvision_for_another_torch_stops_import_coat(tmp_path):
    result = subprocess.run([sys.executable, "-c", "import coat"], capture_output=True, text=True, timeout=120,
                            env=_fake(tmp_path, "torchvision", "0.1.0"))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"torch {TORCH} and torchvision 0.1.0 do not match" in result.stderr
    assert f'pip install "torchvision=={torchvision_for(TORCH)}"' in result.stderr


@pytest.mark.parametrize("command", [
    [sys.executable, "-c", "import coat"],
    [sys.executable, "-m", "coat", "demo", "--quick"],
])
def test_mismatch_stops_with_one_short_message(tmp_path, command):
    wrong = TORCH.partition("+")[0] + ".post99"
    result = subprocess.run(command, capture_output=True, text=True, env=_fake_torchaudio(tmp_path, wrong),
                            timeout=120)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert f"torch {TORCH} and torchaudio {wrong} do not match" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 2  # the message and the fix


def test_import_coat_loads_no_torch():
    code = "import sys, coat; print(any(m == 'torch' or m.startswith('transformers') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"
