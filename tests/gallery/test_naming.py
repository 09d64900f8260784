"""Gallery directory and file names (docs/hath-protocol.md §6)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hathd.gallery.naming import (
    DIR_NAME_MAX_BYTES,
    FILE_NAME_MAX_BYTES,
    NAME_MAX_BYTES,
    clean_title,
    file_names,
    gallery_dir_name,
    is_safe_entry_name,
    safe_file_name,
    utf16_len,
)
from hathd.gallery.storage import make_gallery_dir


def test_clean_title_removes_reference_characters() -> None:
    assert clean_title('a*b"c\\d<e>f') == "abcdef"
    # Only the literal three-character sequence :|? goes; single ones stay (reference quirk).
    assert clean_title("x:|?y") == "xy"
    assert clean_title("a: b | c? d") == "a: b | c? d"
    assert clean_title("  many \t\n spaces  ") == "many spaces"


def test_dir_name_postfix() -> None:
    assert gallery_dir_name("Title", 42, "") == "Title [42]"
    assert gallery_dir_name("Title", 42, "-1280x") == "Title [42-1280x]"
    assert gallery_dir_name("***", 42, "") == "42"


def test_long_title_is_capped_with_ellipsis() -> None:
    name = gallery_dir_name("x" * 300, 123456, "-780x", 125)
    assert utf16_len(name) == 125
    assert name.endswith("... [123456-780x]")
    assert name.startswith("xxxx")


def test_cap_counts_utf16_units_and_bytes() -> None:
    # Astral characters are two UTF-16 units each (Java String.length()).
    name = gallery_dir_name("😀" * 100, 1, "", 125)
    assert utf16_len(name) <= 125
    assert name.endswith("... [1]")
    # Three-byte characters: the byte limit bites before 125 units. It is 245 bytes, so the
    # archive ".<name>.zip.part" still fits the 255-byte name limit.
    name = gallery_dir_name("漢" * 120, 1, "", 125)
    assert len(name.encode()) <= DIR_NAME_MAX_BYTES == 245
    assert len(f".{name}.zip.part".encode()) <= NAME_MAX_BYTES
    assert name.endswith("... [1]")


@given(st.text(max_size=400), st.integers(1, 10**9), st.sampled_from(["", "-780x", "-2400x"]))
def test_dir_name_always_fits(title: str, gid: int, xres: str) -> None:
    name = gallery_dir_name(title, gid, xres, 125)
    assert utf16_len(name) <= 125
    assert len(f".{name}.zip.part".encode()) <= NAME_MAX_BYTES
    assert name.endswith(f"{gid}{xres}]") or name == f"{gid}{xres}"


def test_safe_file_names() -> None:
    assert safe_file_name("001", "jpg", 1) == "001.jpg"
    assert safe_file_name("../../etc/passwd", "jpg", 2) == "0002.jpg"  # hidden names are ours
    assert safe_file_name("a/../b", "jpg", 2) == "a_.._b.jpg"
    assert is_safe_entry_name(safe_file_name("../../etc/passwd", "jpg", 2))
    assert safe_file_name("", "png", 3) == "0003.png"
    assert safe_file_name("galleryinfo", "txt", 4) == "0004.txt"
    assert safe_file_name("a" * 300, "jpg", 5) == "0005.jpg"
    # Room for ".<name>.part": at most 249 bytes.
    assert FILE_NAME_MAX_BYTES == 249
    assert safe_file_name("a" * 245, "jpg", 7) == "a" * 245 + ".jpg"
    assert safe_file_name("a" * 246, "jpg", 7) == "0007.jpg"
    assert safe_file_name("あ" * 82, "jpg", 8) == "0008.jpg"  # 250 bytes
    assert safe_file_name("..", "", 6) == "0006."


def test_duplicate_names_are_made_unique() -> None:
    names = file_names([("a", "jpg", 1), ("A", "jpg", 2), ("a", "jpg", 3), ("0002", "jpg", 4)])
    assert len({n.casefold() for n in names}) == 4
    assert names[0] == "a.jpg"
    assert names[1] == "0002.jpg"


@pytest.mark.parametrize(
    "title",
    ["../../escape", "sub/dir", "..", "/abs/path", "a\x00b"],
)
def test_directory_never_escapes_the_root(tmp_path: Path, title: str) -> None:
    root = tmp_path / "download"
    outside_before = sorted(p.name for p in tmp_path.iterdir()) if tmp_path.exists() else []
    name = gallery_dir_name(title, 77, "")
    made = make_gallery_dir(root, name, "77")
    assert made.parent == root
    assert made.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({*outside_before, "download"})


def test_symlink_out_of_root_falls_back(tmp_path: Path) -> None:
    root = tmp_path / "download"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (root / "T [5]").symlink_to(tmp_path / "elsewhere")
    made = make_gallery_dir(root, "T [5]", "5")
    assert made == root / "5"


def test_too_long_directory_name_falls_back(tmp_path: Path) -> None:
    root = tmp_path / "download"
    name = "x" * 246  # a valid entry, but ".<name>.zip.part" would not fit
    assert make_gallery_dir(root, name, "9") == root / "9"


def test_mkdir_failure_falls_back(tmp_path: Path) -> None:
    root = tmp_path / "download"
    root.mkdir()
    (root / "T [5]").write_text("a file in the way")
    made = make_gallery_dir(root, "T [5]", "5")
    assert made == root / "5"
    assert made.is_dir()
