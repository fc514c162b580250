"""coat.files: a folder written through atomic_dir appears whole or not at all."""

import pytest

from coat.files import atomic_dir


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
