"""A transfer job's ``dest_dir`` must lie under a q4d destination, whichever surface submits
it: the admin API (served by hypercorn on the unix socket), the engine (MQTT ingest and the CLI
submit through it) and the handler itself (for a job stored before the check existed)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve

from hathd.admin.app import create_app
from hathd.client import AdminClient, AdminError
from hathd.config import structure
from hathd.engine import Engine, build_engine
from hathd.engine.api import Job, JobSpec, JobState
from hathd.engine.plugin import EnginePlugin
from hathd.errors import PermanentError
from hathd.q4d.config import Q4DConfig
from hathd.q4d.plugin import Q4dPlugin
from hathd.q4d.transfer import TransferHandler, check_params, destination_roots
from hathd.runtime import open_runtime


@asynccontextmanager
async def served(tmp_path: Path, root: Path) -> AsyncIterator[tuple[Engine, AdminClient]]:
    config = structure(
        {
            "q4d": {
                "enabled": True,
                "download_root": str(root),
                "type_map": {"M": "Movies", "T": str(tmp_path / "tv")},
            }
        }
    )
    async with open_runtime(config, tmp_path / "state") as rt, trio.open_nursery() as nursery:
        engine = await build_engine(rt)
        await Q4dPlugin().setup(rt)
        await engine.pause_queue()
        app = create_app(rt, "token", plugins=[EnginePlugin()])
        hyper = HyperConfig()
        hyper.bind = [f"unix:{rt.paths.socket}"]
        hyper.graceful_timeout = 0.5
        stop = trio.Event()
        await nursery.start(partial(serve, app, hyper, shutdown_trigger=stop.wait))
        try:
            async with AdminClient(rt.paths.socket) as admin:
                yield engine, admin
        finally:
            stop.set()


def transfer(dest_dir: str, path: str = "/files/Movie.mkv") -> dict[str, Any]:
    params = {"path": path, "hash": "H", "code": "M", "dest_dir": dest_dir}
    return {"kind": "transfer", "target": path, "domain": "seed", "params": params}


async def test_api_refuses_dest_dir_outside_the_q4d_destinations(tmp_path: Path) -> None:
    root = tmp_path / "q4d"
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "Movies").mkdir(parents=True)
    (root / "Movies" / "link").symlink_to(outside)
    async with served(tmp_path, root) as (engine, admin):
        bad = [
            f"{root}/sub/../..",  # the reproduced escape
            "/sub/..",
            str(outside),
            f"{root}/Movies/link",  # a symlink out of the root
            "Movies",  # relative
        ]
        for dest in bad:
            with pytest.raises(AdminError) as caught:
                await admin.post("/api/v1/jobs", transfer(dest))
            assert caught.value.status == 400, dest
            assert "dest_dir" in str(caught.value), dest
        with pytest.raises(AdminError) as caught:
            await admin.post("/api/v1/jobs", transfer(str(root / "Movies"), path="/files/.."))
        assert caught.value.status == 400
        assert "path" in str(caught.value)
        # the configured folders (the root, a type_map folder outside it) are accepted
        for good in (root / "Movies", root / "Movies" / "sub", tmp_path / "tv"):
            reply = await admin.post("/api/v1/jobs", transfer(str(good)))
            assert reply["created"] is True
        # the engine (MQTT ingest, the CLI) applies the same check
        with pytest.raises(ValueError, match="dest_dir"):
            await engine.submit(JobSpec(**transfer(str(outside))))
        jobs, total = await engine.list_jobs(kind="transfer")
        assert total == 3
        stored = sorted(j.params["dest_dir"] for j in jobs)
        assert stored == sorted(
            str(p) for p in (root / "Movies", root / "Movies/sub", tmp_path / "tv")
        )
        assert not list(outside.iterdir())


async def test_handler_refuses_a_stored_job_outside_its_roots(tmp_path: Path) -> None:
    root = tmp_path / "q4d"
    roots = destination_roots({"M": "Movies"}, root)
    assert roots == [root.resolve(), (root / "ERR").resolve(), (root / "Movies").resolve()]
    handler = TransferHandler(Q4DConfig(enabled=True, host="ftp://127.0.0.1:9"), roots=roots)
    job = Job(
        id="j1",
        kind="transfer",
        target="/files/x",
        domain="seed",
        state=JobState.RUNNING,
        params=transfer(f"{root}/../elsewhere")["params"],
        attempts=1,
        created_at=time.time(),
    )

    @attrs.define
    class Ctx:
        job: Job
        tmp_dir: Path

        def progress(self, done: int, total: int | None = None, **_kw: Any) -> None:
            raise AssertionError("no progress expected")

    with pytest.raises(PermanentError, match="dest_dir"):
        await handler(Ctx(job, tmp_path))
    assert not (tmp_path / "elsewhere").exists()


def test_check_params_names_the_field() -> None:
    roots = [Path("/srv/q4d")]
    assert check_params(transfer("/srv/q4d/M")["params"], roots).dest_dir == "/srv/q4d/M"
    with pytest.raises(ValueError, match=r"^params"):
        check_params({"path": "/x"}, roots)
    with pytest.raises(ValueError, match=r"^dest_dir"):
        check_params(transfer("/srv/q4d/M\x00")["params"], roots)
