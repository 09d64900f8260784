"""The library scan over a real folder tree."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hathd.anime.scan import FolderScan, scan_library


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
