"""The downloader end to end: fake control server (real HTTP), the real engine in-process."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace

import attrs
import trio

from fakes.hath_control import FakeControlServer, open_fake_control
from fakes.hath_dl import FakeGallery, GalleryQueue
from gallery.helpers import CREDS, FAST, sha1_file, zip_members
from hathd.config import structure
from hathd.engine import running_engine
from hathd.engine.api import JobState
from hathd.events import Event, Subscription
from hathd.gallery.config import GalleryConfig
from hathd.gallery.downloader import Downloader
from hathd.gallery.naming import utf16_len
from hathd.gallery.plugin import install
from hathd.hath.node import NodeSettings
from hathd.hath.rpc import RpcClient
from hathd.runtime import Runtime, open_runtime


@attrs.define
class Stack:
    rt: Runtime
    downloader: Downloader
    hath: SimpleNamespace
    """What the hath plugin offers (``node``: the running image node, or ``None``)."""

    @property
    def root(self) -> Path:
        return self.rt.paths.downloads

    async def run(self) -> None:
        """Trigger the downloader through the servercmd hook and wait until it is idle."""
        assert self.downloader.trigger() is True
        await self.downloader.wait_idle()


@asynccontextmanager
async def open_stack(
    state: Path, fake: FakeControlServer, cfg: GalleryConfig = FAST
) -> AsyncIterator[Stack]:
    config = structure(
        {
            "hath": {
                "client_id": CREDS.client_id,
                "client_key": CREDS.client_key,
                "rpc_server": fake.rpc_host,
            }
        }
    )
    async with open_runtime(config, state) as rt, running_engine(rt):
        hath = SimpleNamespace(node=None)
        downloader, _deps = await install(rt, cfg, hath)
        async with trio.open_nursery() as nursery:
            await nursery.start(downloader.serve)
            yield Stack(rt, downloader, hath)
            nursery.cancel_scope.cancel()


async def job_states(rt: Runtime) -> dict[str, str]:
    rows = await rt.store.query("SELECT dedupe_key, state FROM engine_jobs WHERE kind = 'gallery'")
    return {row["dedupe_key"]: row["state"] for row in rows}


@attrs.frozen
class Acceptance:
    good: FakeGallery
    broken: FakeGallery
    long: FakeGallery


def three_galleries(queue: GalleryQueue) -> Acceptance:
    good = queue.add(
        FakeGallery.build(201, 'Ünïcode ☃ タイトル * <test> "q" a:|?b', [3000, 4000, 500])
    )
    good.file(2).corrupt_requests = {1}  # corrupt on the first try, good on the retry
    broken = queue.add(FakeGallery.build(202, "../../etc/evil :|? name", [1000, 2000]))
    broken.file(1).always_corrupt = True  # always fails: must show up in dlfails
    long = queue.add(FakeGallery.build(203, "Ж" * 150 + "x" * 150 + " |:?", [700], minxres="780"))
    return Acceptance(good, broken, long)


async def test_three_galleries(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with open_fake_control(CREDS) as fake:
            queue = GalleryQueue.attach(fake)
            acc = three_galleries(queue)
            cfg = attrs.evolve(FAST, archive="zip")
            async with open_stack(tmp_path / "state", fake, cfg) as stack:
                await stack.run()
                stats = stack.downloader.statistics()
                states = await job_states(stack.rt)
                root = stack.root

            # Each gallery was marked done with the next fetchqueue, then the queue was empty.
            assert queue.done == ["201;org", "202;org", "203;780"]
            assert queue.fetchqueue_adds == ["", "201;org", "202;org", "203;780"]
            assert states == {"201;org": "done", "202;org": "failed", "203;780": "done"}
            assert (stats.galleries, stats.galleries_failed, stats.malformed_replies) == (3, 1, 0)
            # dlfails before the next fetchqueue: the corrupt first try, then the bad file's key,
            # sent once although all 3 of its tries failed (J162 logFailure skips duplicates).
            assert queue.dlfails == [
                ["127.0.0.1-201002-org"],
                ["127.0.0.1-202001-org"],
            ]

            names = sorted(p.name for p in root.iterdir())
            good_dir = root / "Ünïcode ☃ タイトル test q ab [201]"
            assert good_dir.name in names
            # "../../etc/evil name" is no single directory entry: the fallback name.
            assert "202" in names
            long_dirs = [n for n in names if n.endswith("... [203-780x]")]
            assert len(long_dirs) == 1
            assert utf16_len(long_dirs[0]) <= 125
            assert len(long_dirs[0].encode()) <= 255
            assert not (tmp_path / "etc").exists()
            assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]  # noqa: ASYNC240

            # The good gallery: verified files, galleryinfo.txt, an archive of exactly those.
            for f in acc.good.files:
                assert sha1_file(good_dir / f"{f.filename}.jpg") == f.sha1
            assert (good_dir / "galleryinfo.txt").read_text() == acc.good.information
            members = zip_members(root / f"{good_dir.name}.zip")
            want = {f"{f.filename}.jpg": f.sha1 for f in acc.good.files}
            assert set(members) == {*want, "galleryinfo.txt"}
            assert all(members[name] == digest for name, digest in want.items())
            # The failed gallery: no galleryinfo.txt, no archive, its good file kept.
            assert sorted(p.name for p in (root / "202").iterdir()) == ["002.jpg"]
            assert "202.zip" not in names


async def test_malformed_and_invalid_replies_are_counted(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            queue = GalleryQueue.attach(fake)
            queue.add(FakeGallery.build(301, "After the junk", [100]))
            queue.script_raw(b"GID 301\nFILECOUNT many\nTITLE x\n", b"INVALID_REQUEST\n")
            async with open_stack(tmp_path, fake) as stack:
                await stack.run()
                assert stack.downloader.statistics().malformed_replies == 1
                await stack.run()
                assert stack.downloader.statistics().invalid_requests == 1
                assert await job_states(stack.rt) == {}
                await stack.run()  # still alive: the real queue is drained
                stats = stack.downloader.statistics()
                assert (stats.runs, stats.galleries, stats.run_errors) == (3, 1, 0)
                assert await job_states(stack.rt) == {"301;org": "done"}
            assert queue.done == ["301;org"]


async def test_trigger_while_running_does_not_start_another(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            queue = GalleryQueue.attach(fake)
            gallery = queue.add(FakeGallery.build(401, "Held", [100, 100]))
            gallery.file(1).gate = trio.Event()
            async with open_stack(tmp_path, fake) as stack:
                assert stack.downloader.trigger() is True
                await queue.wait_hits(1)
                assert stack.downloader.statistics().running
                assert stack.downloader.trigger() is False
                gallery.file(1).gate.set()
                await stack.downloader.wait_idle()
                # The trigger during the run asked for one more look at the queue afterwards.
                assert stack.downloader.statistics().runs == 2
            assert queue.fetchqueue_adds == ["", "401;org", ""]


async def test_restart_mid_gallery_keeps_verified_files(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with trio.fail_after(120):
        async with open_fake_control(CREDS) as fake:
            queue = GalleryQueue.attach(fake)
            gallery = queue.add(FakeGallery.build(501, "Restart", [2000, 3000, 4000, 5000]))
            gallery.file(3).gate = trio.Event()
            async with open_stack(state, fake) as stack:
                assert stack.downloader.trigger() is True
                await queue.wait_hits(3)  # files 1 and 2 verified, file 3 in flight
                gdir = stack.root / "Restart [501]"
            # The daemon went away in the middle of file 3.
            assert sorted(p.name for p in gdir.iterdir()) == ["001.jpg", "002.jpg"]
            gallery.file(3).gate = None
            async with open_stack(state, fake) as stack:
                # The engine resumes the job; the downloader finds the same gallery queued
                # (never marked done), joins the active job and marks it done afterwards.
                await stack.run()
                assert await job_states(stack.rt) == {"501;org": JobState.DONE}
                rows = await stack.rt.store.query(
                    "SELECT result FROM engine_jobs WHERE dedupe_key = '501;org'"
                )
                result = json.loads(rows[0]["result"])
            assert (result["kept"], result["downloaded"]) == (2, 2)
            assert [f.hits for f in gallery.files] == [1, 1, 2, 1]
            assert queue.done == ["501;org"]
            for f in gallery.files:
                assert sha1_file(gdir / f"{f.filename}.jpg") == f.sha1


async def test_gallery_jobs_show_on_the_event_bus(tmp_path: Path) -> None:
    seen: list[Event] = []
    finished = trio.Event()

    async def collect(sub: Subscription) -> None:
        async for event in sub:
            seen.append(event)
            if event.room == "jobs" and event.type in ("done", "failed"):
                finished.set()

    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            queue = GalleryQueue.attach(fake)
            queue.add(FakeGallery.build(701, "Watched", [1000] * 4))
            async with (
                open_stack(tmp_path, fake) as stack,
                stack.rt.bus.subscribe(["jobs", "progress"], buffer=1024) as sub,
                trio.open_nursery() as nursery,
            ):
                nursery.start_soon(collect, sub)
                await stack.run()
                await finished.wait()
                nursery.cancel_scope.cancel()
    jobs = [e for e in seen if e.room == "jobs" and e.data.get("kind") == "gallery"]
    assert jobs[0].type == "queued"
    assert jobs[-1].type == "done"
    assert jobs[-1].data["result"]["downloaded"] == 4
    progress = [e for e in seen if e.room == "progress" and e.data["kind"] == "gallery"]
    assert progress
    assert progress[-1].data["total"] == 4
    assert progress[-1].data["done"] <= 4


async def test_uses_the_image_nodes_rpc_client_when_it_runs(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            queue = GalleryQueue.attach(fake)
            queue.add(FakeGallery.build(751, "Shared client", [100, 200]))
            node_client = RpcClient(CREDS, bootstrap=fake.rpc_host)
            try:
                async with open_stack(tmp_path, fake) as stack:
                    # What the hath plugin offers while the node runs (.rpc and .settings).
                    stack.hath.node = SimpleNamespace(rpc=node_client, settings=NodeSettings())
                    await stack.run()
            finally:
                await node_client.aclose()
            # fetchqueue ×2, dlfetch ×2, no server_stat of our own: the node's clock is used.
            assert node_client.calls == 4
            assert fake.count("server_stat") == 0
            assert queue.done == ["751;org"]
