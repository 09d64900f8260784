"""hathd.safepath: no operation follows a symlink below its root, even one planted after a
check."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from hathd import safepath
from hathd.safepath import (
    UnsafePath,
    makedirs_under,
    open_under,
    parts_under,
    rename_under,
    unlink_under,
)


@pytest.fixture
def root_and_outside(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    return root, outside


def test_parts_refuse_dotdot_empty_and_foreign_absolute(tmp_path: Path) -> None:
    assert parts_under(tmp_path, "a/b") == ("a", "b")
    assert parts_under(tmp_path, tmp_path / "a") == ("a",)
    for bad in ("a/../b", "..", "a\x00b", "/etc/passwd"):
        with pytest.raises(UnsafePath) as caught:
            parts_under(tmp_path, bad)
        assert caught.value.errno == errno.EINVAL, bad


def test_makedirs_creates_and_refuses_a_symlinked_folder(
    root_and_outside: tuple[Path, Path],
) -> None:
    root, outside = root_and_outside
    assert makedirs_under(root, "a/b/c") == root / "a" / "b" / "c"
    assert (root / "a" / "b" / "c").is_dir()
    makedirs_under(root, "a/b/c")  # exists: fine
    (root / "a" / "link").symlink_to(outside)
    with pytest.raises(UnsafePath) as caught:
        makedirs_under(root, "a/link/d")
    assert caught.value.errno == errno.ELOOP
    assert list(outside.iterdir()) == []


def test_open_under_never_follows_a_planted_symlink(root_and_outside: tuple[Path, Path]) -> None:
    root, outside = root_and_outside
    makedirs_under(root, "dl")
    fd = open_under(root, "dl/file.bin", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"ok")
    os.close(fd)
    assert (root / "dl" / "file.bin").read_bytes() == b"ok"
    # a folder swapped for a symlink after the destination was checked
    os.rename(root / "dl", root / "dl.old")
    (root / "dl").symlink_to(outside)
    with pytest.raises(UnsafePath):
        open_under(root, "dl/file.bin", os.O_WRONLY | os.O_CREAT, 0o600)
    # the file itself a symlink (to a file outside)
    (outside / "victim").write_bytes(b"keep")
    (root / "dl.old" / "evil.part").symlink_to(outside / "victim")
    with pytest.raises(UnsafePath):
        open_under(root, "dl.old/evil.part", os.O_WRONLY | os.O_APPEND)
    assert (outside / "victim").read_bytes() == b"keep"
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    fd = open_under(root, "x/y/z.bin", os.O_WRONLY | os.O_CREAT, create_parents=True)
    os.close(fd)
    assert (root / "x" / "y" / "z.bin").is_file()


def test_rename_under_never_overwrites_and_never_follows(
    root_and_outside: tuple[Path, Path],
) -> None:
    root, outside = root_and_outside
    (root / "a.part").write_bytes(b"new")
    (root / "a.bin").write_bytes(b"old")
    with pytest.raises(FileExistsError):
        rename_under(root, "a.part", "a.bin")
    assert (root / "a.bin").read_bytes() == b"old"
    rename_under(root, "a.part", "a (1).bin")
    assert (root / "a (1).bin").read_bytes() == b"new"
    assert not (root / "a.part").exists()
    (root / "b.part").write_bytes(b"b")
    (root / "sub").symlink_to(outside)
    with pytest.raises(UnsafePath):
        rename_under(root, "b.part", "sub/b.bin")
    assert list(outside.iterdir()) == []
    rename_under(root, "b.part", "a.bin", replace=True)
    assert (root / "a.bin").read_bytes() == b"b"


def test_unlink_under(root_and_outside: tuple[Path, Path]) -> None:
    root, outside = root_and_outside
    (outside / "f").write_bytes(b"x")
    (root / "sub").symlink_to(outside)
    with pytest.raises(UnsafePath):
        unlink_under(root, "sub/f")
    assert (outside / "f").exists()
    (root / "g").write_bytes(b"x")
    assert unlink_under(root, "g") is True
    assert unlink_under(root, "g") is False


def test_is_confined_judges_a_relative_path_by_its_text() -> None:
    assert safepath.is_confined("A (2001)/Season 01/A - S01E01")
    assert safepath.is_confined("caf\u00e9/\U0001f3b8")
    for bad in ("", "/etc/x", "a/../b", "..", "a//b", "./a", "a/", "a/b\x00c", "a/\x1bb", "\x85"):
        assert not safepath.is_confined(bad), bad
