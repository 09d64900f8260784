"""Shared pieces of the gallery tests: credentials, a job context, the handler's dependencies."""

from __future__ import annotations

import hashlib
import time
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs

from fakes.hath_control import FakeControlServer
from hathd.engine.api import Job, JobState
from hathd.gallery.config import GalleryConfig
from hathd.gallery.handler import MIGRATIONS, GalleryDeps
from hathd.gallery.hosts import HostGates
from hathd.gallery.rpc import OpenRpc, RpcTarget, standalone_rpc
from hathd.hath.protocol import Credentials, ServerClock
from hathd.store import Store, open_store

CREDS = Credentials(4242, "abcdefghij0123456789")

FAST = GalleryConfig(success_delay=0.0, failure_delay=0.0, low_disk_delay=0.05)
"""No pacing, so tests run at loopback speed (pacing has its own sans-IO tests)."""


@attrs.define
class StubContext:
    """A :class:`hathd.engine.api.JobContext` for calling the handler without the engine."""

    job: Job
    tmp_dir: Path
    reports: list[tuple[int, int | None, str | None]] = attrs.field(factory=list)

    def progress(self, done: int, total: int | None = None, *, message: str | None = None) -> None:
        self.reports.append((done, total, message))


def make_job(params: dict[str, Any], job_id: str = "job-1") -> Job:
    now = time.time()
    return Job(
        id=job_id,
        kind="gallery",
        target="gallery",
        domain="hath-gallery",
        state=JobState.RUNNING,
        params=params,
        attempts=1,
        created_at=now,
        updated_at=now,
    )


def rpc_opener(fake: FakeControlServer) -> OpenRpc:
    """The downloader's own RPC client pointed at ``fake``."""
    return standalone_rpc(RpcTarget.parse(fake.rpc_host), lambda: CREDS, ServerClock())


@asynccontextmanager
async def open_deps(
    tmp_path: Path,
    fake: FakeControlServer,
    config: GalleryConfig = FAST,
    opener: OpenRpc | None = None,
) -> AsyncIterator[GalleryDeps]:
    async with open_store(tmp_path / "state.sqlite3") as store:
        await store.migrate("gallery", MIGRATIONS)
        yield GalleryDeps(
            config=config,
            root=tmp_path / "download",
            store=store,
            gates=HostGates(config.host_concurrency),
            open_rpc=opener or rpc_opener(fake),
        )


async def run_row(store: Store, gid: int) -> dict[str, Any]:
    rows = await store.query("SELECT * FROM gallery_runs WHERE gid = ?", (gid,))
    assert len(rows) == 1
    return dict(rows[0])


def zip_members(path: Path) -> dict[str, str]:
    """name → SHA-1 of each member of a ZIP archive."""
    with zipfile.ZipFile(path) as zf:
        return {name: hashlib.sha1(zf.read(name)).hexdigest() for name in zf.namelist()}


def sha1_file(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()
