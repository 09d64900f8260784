"""Downloads and the file system: a download killed after its file got the final name but before the job's ``done`` was
committed: the next try (run with the checkpoint the killed one saved) finds its own file and
ends with exactly one copy (a bug once wrote ``477 (1).bin``)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from hathd.engine import download as dl
from hathd.engine.api import Job, JobState
from hathd.engine.download import PLACED_KEY, download, part_path, resolve_destination
from hathd.errors import PermanentError


@attrs.define
class Ctx:
    job: Job
    tmp_dir: Path
    updates: list[tuple[int, int | None]] = attrs.field(factory=list)

    def progress(self, done: int, total: int | None = None, *, message: str | None = None) -> None:
        self.updates.append((done, total))


@attrs.define
class Checkpoints:
    """What ``Engine.save_checkpoint`` keeps for the job: the last value saved."""

    saved: list[dict[str, Any] | None] = attrs.field(factory=list)

    async def __call__(self, data: dict[str, Any] | None) -> None:
        self.saved.append(data)

    @property
    def last(self) -> dict[str, Any] | None:
        return self.saved[-1] if self.saved else None


def job(url: str, checkpoint: dict[str, Any] | None, attempts: int) -> Job:
    return Job(
        id="job477",
        kind="download",
        target=url,
        domain="127.0.0.1",
        state=JobState.RUNNING,
        params={"filename": "477.bin"},
        attempts=attempts,
        checkpoint=checkpoint,
        created_at=time.time(),
    )


def files(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


async def test_try_after_a_kill_between_rename_and_commit_keeps_one_file(
    tmp_path: Path, http_server: Any
) -> None:
    root = tmp_path / "download"
    url = http_server.url("/files/477.bin")
    saves = Checkpoints()
    with trio.fail_after(30):
        first = await download(Ctx(job(url, None, 1), tmp_path), root, saves)
    placed = saves.last
    assert placed is not None
    assert placed[PLACED_KEY] == {
        "path": first["path"],
        "size": len(http_server.body),
        "sha256": http_server.digest,
    }
    # the process dies here: "done" is never committed, so the engine runs the job again
    # with the checkpoint saved last
    requests_before = len(http_server.requests)
    with trio.fail_after(30):
        second = await download(Ctx(job(url, placed, 2), tmp_path), root, Checkpoints())
    assert second["path"] == first["path"]
    assert second["sha256"] == http_server.digest
    assert files(root) == ["477.bin"]
    assert len(http_server.requests) == requests_before  # nothing fetched again


async def test_kill_between_the_link_and_the_partial_files_removal(
    tmp_path: Path, http_server: Any
) -> None:
    root = tmp_path / "download"
    url = http_server.url("/files/477.bin")
    saves = Checkpoints()
    with trio.fail_after(30):
        first = await download(Ctx(job(url, None, 1), tmp_path), root, saves)
    wanted = resolve_destination(root, {"filename": "477.bin"}, url)
    os.link(first["path"], part_path(wanted, "job477"))  # both names, as after os.link
    with trio.fail_after(30):
        second = await download(Ctx(job(url, saves.last, 2), tmp_path), root, Checkpoints())
    assert second["path"] == first["path"]
    assert files(root) == ["477.bin"]


async def test_kill_before_the_rename_places_the_file_once(
    tmp_path: Path, http_server: Any
) -> None:
    """The placement is recorded but the kill comes before the rename: the partial file is
    complete, and the next try gives it the recorded name."""
    root = tmp_path / "download"
    url = http_server.url("/files/477.bin")
    saves = Checkpoints()
    with trio.fail_after(30):
        first = await download(Ctx(job(url, None, 1), tmp_path), root, saves)
    wanted = resolve_destination(root, {"filename": "477.bin"}, url)
    os.rename(first["path"], part_path(wanted, "job477"))  # back to before the rename
    with trio.fail_after(30):
        second = await download(Ctx(job(url, saves.last, 2), tmp_path), root, Checkpoints())
    assert second["path"] == first["path"]
    assert files(root) == ["477.bin"]


async def test_a_file_of_someone_else_at_the_recorded_name_is_not_taken(
    tmp_path: Path, http_server: Any
) -> None:
    root = tmp_path / "download"
    url = http_server.url("/files/477.bin")
    saves = Checkpoints()
    with trio.fail_after(30):
        first = await download(Ctx(job(url, None, 1), tmp_path), root, saves)
    with open(first["path"], "wb") as fh:
        fh.write(b"another program's file")
    with trio.fail_after(30):
        second = await download(Ctx(job(url, saves.last, 2), tmp_path), root, Checkpoints())
    assert second["path"] == str(root / "477 (1).bin")
    with open(first["path"], "rb") as fh:
        assert fh.read() == b"another program's file"


async def test_a_symlink_planted_after_the_check_is_not_followed(
    tmp_path: Path, http_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The destination folder is swapped for a symlink out of the root right after the
    destination was checked (the race a hostile local user would run)."""
    root = tmp_path / "download"
    outside = tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    url = http_server.url("/files/477.bin")
    checked = dl.resolve_destination

    def check_then_swap(root_: Path, params: dict[str, Any], url_: str) -> Path:
        wanted = checked(root_, params, url_)
        os.rename(root / "sub", root / "sub.old")
        os.symlink(outside, root / "sub")
        return wanted

    monkeypatch.setattr(dl, "resolve_destination", check_then_swap)
    the_job = job(url, None, 1)
    the_job = attrs.evolve(the_job, params={"filename": "477.bin", "dest": "sub"})
    with trio.fail_after(30), pytest.raises(PermanentError, match="symlink"):
        await download(Ctx(the_job, tmp_path), root, Checkpoints())
    assert files(outside) == []
