"""Atomic file writes: the final name holds the old file or the new one, never a partial one."""

from __future__ import annotations

import pytest

from stylecore.files import atomic_file, is_temporary_name, temporary_name, write_atomically


def test_a_write_appears_whole_creating_folders_and_leaving_no_temporary_file(tmp_path):
    path = tmp_path / "a" / "b" / "out.bin"
    write_atomically(path, b"first")
    with atomic_file(path) as handle:
        handle.write(b"sec")
        assert path.read_bytes() == b"first", "the old file stays until the write completes"
        handle.write(b"ond")
    assert path.read_bytes() == b"second"
    assert [child.name for child in path.parent.iterdir()] == ["out.bin"]


def test_a_failed_write_changes_nothing_and_cleans_up(tmp_path):
    path = tmp_path / "out.html"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="midway"), atomic_file(path) as handle:
        handle.write(b"half")
        raise RuntimeError("midway")
    assert path.read_bytes() == b"old" and [child.name for child in tmp_path.iterdir()] == ["out.html"]


def test_temporary_names_are_hidden_unique_and_recognised():
    first, second = temporary_name("cat.png"), temporary_name("cat.png")
    assert first != second and first.startswith(".cat.png.") and first.endswith(".tmp")
    assert is_temporary_name(first) and is_temporary_name(second)
    for name in ("cat.png", ".cat.png", "cat.png.tmp", ".cat.png.1234.tmp", ".hidden.png"):
        assert not is_temporary_name(name), name
