"""The library scan over a real folder tree."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any
from unittest import mock

from hathd.anime.naming import VIDEO_EXTENSIONS, parse_episode_code
from hathd.anime.scan import FolderScan, files_digest, scan_library


def _touch(path: Path, size: int = 10) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


def test_scan_reads_key_files_and_episode_codes(tmp_path: Path) -> None:
    _touch(tmp_path / "Frieren (2023)" / "Season 01" / "Frieren - S01E01 - A.mp4", 100)
    _touch(tmp_path / "Frieren (2023)" / "Season 01" / "Frieren - S01E02 - B.mkv", 200)
    _touch(tmp_path / "Frieren (2023)" / "Season 01" / "notes.txt")
    _touch(tmp_path / "Frieren (2023)" / "Season 00" / "Frieren - S00E01.mp4")
    _touch(tmp_path / "Other" / "cover.jpg")
    (tmp_path / "Other" / "key").write_text("s.to other-show\n")
    (tmp_path / ".hidden").mkdir()
    os.symlink(tmp_path / "Other", tmp_path / "Link")
    results = {r.folder: r for r in scan_library(str(tmp_path))}
    assert sorted(results) == ["Frieren (2023)", "Other"]
    frieren = results["Frieren (2023)"]
    assert frieren.key is None
    assert frieren.files == {
        (1, 1): ("Frieren (2023)/Season 01/Frieren - S01E01 - A.mp4", 100),
        (1, 2): ("Frieren (2023)/Season 01/Frieren - S01E02 - B.mkv", 200),
        (0, 1): ("Frieren (2023)/Season 00/Frieren - S00E01.mp4", 10),
    }
    assert (results["Other"].key, results["Other"].site) == ("other-show", "s.to")
    assert results["Other"].files == {}


def test_a_folder_that_cannot_be_read_is_reported_and_the_scan_goes_on(tmp_path: Path) -> None:
    for name in ("A", "B", "C"):
        _touch(tmp_path / name / f"{name} - S01E01.mp4")
    seen: list[tuple[int, int, FolderScan]] = []

    def on_folder(index: int, total: int, result: FolderScan) -> None:
        seen.append((index, total, result))
        if index == 1:  # B vanishes (or turns unreadable) after the listing
            shutil.rmtree(tmp_path / "B")

    results = list(scan_library(str(tmp_path), on_folder))
    assert [r.folder for r in results] == ["A", "B", "C"]
    assert results[1].error is not None
    assert "B" in results[1].error
    assert results[2].error is None
    assert results[2].files
    assert [(i, t) for i, t, _ in seen] == [(1, 3), (2, 3), (3, 3)]


def test_episode_names_are_found_as_the_per_name_pattern_finds_them(tmp_path: Path) -> None:
    # the walk parses a folder's names in one pass over the joined listing: each name must
    # give what parse_episode_code gives it alone, and only with a video extension
    names = [
        "A - S01E01 - x.mp4",
        "b s1e2.MKV",
        "c S01.E03.webm",
        "x.S01E04 S02E09.ts",  # the leftmost code wins
        "line\nbreak S01E05.mp4",
        "S01E06.txt",
        "S01E07x.mp4",
        "S01E08.mp4.part",
        "no code.mp4",
        ".S01E10.m4v",
        "S1E11 trailing.avi",
    ]
    for name in names:
        _touch(tmp_path / "Show" / name, 3)
    (tmp_path / "Show" / "Sub S01E12.mp4").mkdir()  # a folder named like an episode: walked
    _touch(tmp_path / "Show" / "Sub S01E12.mp4" / "Show - S01E13.mkv", 4)
    os.symlink(tmp_path / "Show" / "A - S01E01 - x.mp4", tmp_path / "Show" / "L - S01E14.mp4")
    (result,) = scan_library(str(tmp_path))
    expected = {
        parse_episode_code(n): (f"Show/{n}", 3)
        for n in names
        if os.path.splitext(n)[1].lower() in VIDEO_EXTENSIONS and parse_episode_code(n)
    }
    expected[(1, 13)] = ("Show/Sub S01E12.mp4/Show - S01E13.mkv", 4)
    assert result.files == expected
    assert set(expected) == {(1, 1), (1, 2), (1, 3), (1, 4), (1, 5), (1, 10), (1, 11), (1, 13)}
    assert result.error is None
    assert result.digest == files_digest(result.files)


def test_a_file_vanishing_between_listing_and_stat_is_reported(tmp_path: Path) -> None:
    _touch(tmp_path / "Show" / "Show - S01E01.mp4")
    _touch(tmp_path / "Show" / "Show - S01E02.mp4")
    real_stat = os.stat

    def stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if path == "Show - S01E02.mp4":
            raise FileNotFoundError(2, "No such file or directory")
        return real_stat(path, *args, **kwargs)

    with mock.patch("os.stat", stat):
        (result,) = scan_library(str(tmp_path))
    assert set(result.files) == {(1, 1)}
    assert result.error == "Show/Show - S01E02.mp4: No such file or directory"
