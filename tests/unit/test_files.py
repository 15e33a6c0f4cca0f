"""``nosync.files``: an atomic write replaces the file whole, or leaves the old one and nothing
else behind."""

from __future__ import annotations

import os
import stat

import pytest

from nosync import files


def test_a_write_replaces_the_file_and_creates_its_folder(tmp_path) -> None:
    target = tmp_path / "deep" / "er" / "out.json"
    files.atomic_write_text(target, "one\n")
    files.atomic_write_bytes(target, b"two\n")
    assert target.read_bytes() == b"two\n"
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]


@pytest.mark.parametrize(
    "failure", [OSError(28, "No space left on device"), RuntimeError("bug"), KeyboardInterrupt()]
)
def test_a_failure_mid_write_keeps_the_old_file_and_leaves_no_temporary_file(
    tmp_path, failure
) -> None:
    target = tmp_path / "summary.json"
    target.write_text("old\n")
    expected = files.WriteFailed if isinstance(failure, OSError) else type(failure)
    with pytest.raises(expected), files.atomic_write(target) as handle:
        handle.write(b"half of the new")
        handle.flush()
        raise failure
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_an_os_error_becomes_one_line_naming_the_file(tmp_path, monkeypatch) -> None:
    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    target = tmp_path / "a.txt"
    with pytest.raises(files.WriteFailed, match=f"^cannot write {target}: No space left on dev"):
        files.atomic_write_text(target, "new\n")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_a_folder_that_cannot_be_made_is_a_write_failed(tmp_path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(files.WriteFailed, match="cannot write .*file/x.txt"):
        files.atomic_write_text(tmp_path / "file" / "x.txt", "x")


def test_the_file_is_as_readable_as_the_umask_allows_not_0600(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        files.atomic_write_text(tmp_path / "x", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x").stat().st_mode) == 0o644


def test_the_writes_still_import_from_their_old_home() -> None:
    from nosync.run import checkpoint

    assert checkpoint.WriteFailed is files.WriteFailed
    assert checkpoint.atomic_write_text is files.atomic_write_text
    assert checkpoint.write_failed is files.write_failed
