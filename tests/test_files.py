"""coat.files: a folder written through atomic_dir appears whole or not at all."""

import os

import pytest
import torch
from safetensors.torch import save_file

from coat.files import atomic_dir, private_dir, write_atomic


def test_atomic_dir_appears_only_when_complete(tmp_path):
    target = tmp_path / "models" / "m"
    with atomic_dir(target) as tmp:
        (tmp / "config.json").write_text("{}")
        assert not target.exists()
    assert (target / "config.json").read_text() == "{}"
    assert [p.name for p in target.parent.iterdir()] == ["m"]


def test_atomic_dir_leaves_nothing_behind_when_the_writer_fails(tmp_path):
    target = tmp_path / "m"
    with pytest.raises(KeyboardInterrupt), atomic_dir(target) as tmp:
        (tmp / "half.bin").write_bytes(b"x")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_and_folders_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_atomic(tmp_path / "results.json", "{}")
        with atomic_dir(tmp_path / "adapter") as tmp:
            save_file({"w": torch.zeros(2)}, tmp / "w.safetensors")  # safetensors writes 0600 files of its own
            (tmp / "lora").mkdir()
    finally:
        os.umask(old)
    assert (tmp_path / "results.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "adapter").stat().st_mode & 0o777 == 0o777 & ~umask
    assert (tmp_path / "adapter" / "w.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "adapter" / "lora").stat().st_mode & 0o777 == 0o777 & ~umask


def test_atomic_dir_replace_leaves_nothing_of_the_old_folder(tmp_path):
    target = tmp_path / "adapter"
    (target / "lora").mkdir(parents=True)
    (target / "lora" / "stale.bin").write_bytes(b"old")
    with atomic_dir(target, replace=True) as tmp:
        (tmp / "new.bin").write_bytes(b"new")
    assert [p.name for p in target.iterdir()] == ["new.bin"]
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]


def test_private_dir_is_the_users_own(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = private_dir("speechbrain", "model")
    assert path == tmp_path / "coat" / "speechbrain" / "model"
    assert all(p.stat().st_mode & 0o777 == 0o700 for p in (path, path.parent, path.parent.parent))
    os.chmod(path, 0o777)
    with pytest.raises(PermissionError, match="writable by other users"):
        private_dir("speechbrain", "model")
    with pytest.raises(ValueError, match="plain folder name"):
        private_dir("..")
    if os.getuid() == 0:  # as root, a folder of another user can be made here
        os.chmod(path, 0o700)
        os.chown(path, 12345, 12345)
        with pytest.raises(PermissionError, match="belongs to another user"):
            private_dir("speechbrain", "model")
