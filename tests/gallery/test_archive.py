"""ZIP archives and atomic writes (blocking helpers, called directly)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from hathd.gallery.archive import (
    INFO_NAME,
    archive_path,
    remove_gallery_dir,
    write_archive,
    write_atomic,
)
from hathd.safepath import UnsafePath


def make_gallery(root: Path) -> tuple[Path, dict[str, bytes]]:
    gdir = root / "T [1]"
    gdir.mkdir(parents=True)
    files = {"001.jpg": b"\xff\xd8" + bytes(range(256)) * 40, "002.png": b"\x89PNG" * 100}
    for name, data in files.items():
        (gdir / name).write_bytes(data)
    write_atomic(root, gdir / INFO_NAME, "Tags: ü\n".encode())
    return gdir, files


def test_write_atomic_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "galleryinfo.txt"
    write_atomic(tmp_path, target, b"one")
    write_atomic(tmp_path, target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["galleryinfo.txt"]


def test_archive_lists_exactly_the_members(tmp_path: Path) -> None:
    gdir, files = make_gallery(tmp_path)
    (gdir / ".stray.part").write_bytes(b"not a member")
    dest = write_archive(tmp_path, gdir, [*files, INFO_NAME])
    assert dest == archive_path(gdir) == tmp_path / "T [1].zip"
    with zipfile.ZipFile(dest) as zf:
        assert sorted(zf.namelist()) == sorted([*files, INFO_NAME])
        for name, data in files.items():
            assert hashlib.sha1(zf.read(name)).digest() == hashlib.sha1(data).digest()
            assert zf.getinfo(name).compress_type == zipfile.ZIP_STORED
        assert zf.getinfo(INFO_NAME).compress_type == zipfile.ZIP_DEFLATED
        assert zf.read(INFO_NAME).decode() == "Tags: ü\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["T [1]", "T [1].zip"]


def test_failed_archive_leaves_nothing(tmp_path: Path) -> None:
    gdir, files = make_gallery(tmp_path)
    with pytest.raises(FileNotFoundError):
        write_archive(tmp_path, gdir, [*files, "missing.jpg"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["T [1]"]


def test_remove_refuses_outside_root(tmp_path: Path) -> None:
    gdir, _ = make_gallery(tmp_path / "root")
    with pytest.raises(ValueError):
        remove_gallery_dir(tmp_path / "root", tmp_path / "root")
    with pytest.raises(ValueError):
        remove_gallery_dir(gdir, tmp_path)
    assert gdir.is_dir()
    remove_gallery_dir(gdir, tmp_path / "root")
    assert not gdir.exists()


def test_symlinked_member_is_refused_and_not_read(tmp_path: Path) -> None:
    """A member replaced by a symlink (to a file outside the root) is refused; the archive is
    not written and the outside file's bytes go nowhere."""
    root = tmp_path / "root"
    gdir, files = make_gallery(root)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"outside the root")
    (gdir / "001.jpg").unlink()
    (gdir / "001.jpg").symlink_to(secret)
    with pytest.raises(UnsafePath):
        write_archive(root, gdir, [*files, INFO_NAME])
    assert sorted(p.name for p in root.iterdir()) == ["T [1]"]


def test_symlink_at_the_part_name_is_not_followed(tmp_path: Path) -> None:
    """A symlink planted at ``.<name>.part`` must not redirect the write outside the root."""
    root = tmp_path / "root"
    gdir, files = make_gallery(root)
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    (gdir / f".{INFO_NAME}.part").symlink_to(victim)
    with pytest.raises(UnsafePath):
        write_atomic(root, gdir / INFO_NAME, b"new info")
    (root / ".T [1].zip.part").symlink_to(victim)
    with pytest.raises(UnsafePath):
        write_archive(root, gdir, [*files, INFO_NAME])
    assert victim.read_bytes() == b"keep me"
    assert not (root / "T [1].zip").exists()


def test_symlinked_gallery_folder_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    elsewhere = tmp_path / "elsewhere"
    gdir, files = make_gallery(elsewhere)
    (root).mkdir()
    (root / "T [1]").symlink_to(gdir)
    with pytest.raises(UnsafePath):
        write_archive(root, root / "T [1]", [*files, INFO_NAME])
    assert sorted(p.name for p in root.iterdir()) == ["T [1]"]
