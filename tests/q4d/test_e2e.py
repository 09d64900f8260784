"""Acceptance: mosquitto + FTP/SFTP servers + real lftp + the real engine, in-process.

A runtime (store, bus, supervisor) with the engine and the q4d plugin is assembled as the daemon
does it (``open_runtime`` → ``running_engine`` → ``Q4dPlugin.setup`` → supervised services).
Events are published with ``mosquitto_pub`` exactly as the seedbox script does; labels are read
with ``mosquitto_sub``.
"""

from __future__ import annotations

import filecmp
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import paho.mqtt.client as paho
import pytest
import trio
from paho.mqtt.enums import CallbackAPIVersion

from hathd.config import Config, structure
from hathd.engine import Engine, running_engine
from hathd.engine.api import Job, JobState
from hathd.q4d.ingest import Q4DIngest
from hathd.q4d.payload import DownEvent, format_down
from hathd.q4d.plugin import SERVICE, Q4dPlugin, Q4DState
from hathd.runtime import Runtime, open_runtime
from q4d.rig import (
    PASSWORD,
    USER,
    FileServer,
    Mosquitto,
    mosquitto_pub,
    open_ftp,
    open_mosquitto,
    open_sftp,
    ssh_connect_program,
    watch_labels,
)

pytestmark = pytest.mark.slow

FINAL = {JobState.DONE, JobState.FAILED, JobState.CANCELLED}


def make_config(broker: Mosquitto, server: FileServer, tmp: Path, **q4d: Any) -> Config:
    q4d_section: dict[str, Any] = {
        "enabled": True,
        "host": server.url,
        "user": USER,
        "password": PASSWORD,
        "download_root": str(tmp / "media"),
        "type_map": {"M": "Movies", "T": "TV", "B": "Big", "ERR": "Other"},
        "retry_preset": "q4dtest",
        "threads": 3,
        "segments": 3,
        "net_timeout": 5.0,
        "net_max_retries": 1,
        "reconnect_interval_base": 1.0,
        "reconnect_interval_max": 1.0,
        "sftp_connect_program": ssh_connect_program(tmp),
        "concurrency": 2,
    }
    q4d_section.update(q4d)
    return structure(
        {
            "engine": {
                "workers": 4,
                "retry": {"q4dtest": {"delays": [0.2, 0.2], "jitter": 0.0, "final_wait": None}},
            },
            "mqtt": {
                "port": broker.port,
                "client_id": "hathd-e2e",
                "reconnect_min": 0.1,
                "reconnect_max": 1.0,
            },
            "q4d": q4d_section,
        }
    )


@attrs.define
class Daemon:
    rt: Runtime
    engine: Engine
    plugin: Q4dPlugin

    @property
    def ingest(self) -> Q4DIngest:
        state = self.plugin.state
        assert isinstance(state, Q4DState)
        assert state.ingest is not None
        return state.ingest

    async def transfers(self) -> list[Job]:
        jobs, _total = await self.engine.list_jobs(kind="transfer", limit=10_000)
        return jobs

    async def wait_hashes_done(self, hashes: set[str], timeout: float = 120.0) -> list[Job]:
        """Wait until every hash has a ``done`` transfer job; return all final jobs.

        Delivery is at least once: an event whose acknowledgement was lost (a broker restart)
        comes again and may make a second job, which finds the payload complete."""
        with trio.fail_after(timeout):
            while True:
                jobs = [j for j in await self.transfers() if j.state in FINAL]
                if hashes <= {j.params["hash"] for j in jobs if j.state is JobState.DONE}:
                    return jobs
                await trio.sleep(0.1)

    async def wait_final(self, count: int, timeout: float = 120.0) -> list[Job]:
        """Wait until ``count`` transfer jobs are final (the store is polled)."""
        with trio.fail_after(timeout):
            while True:
                jobs = [j for j in await self.transfers() if j.state in FINAL]
                if len(jobs) >= count:
                    return jobs
                await trio.sleep(0.1)


@asynccontextmanager
async def running_daemon(config: Config, state_dir: Path) -> AsyncIterator[Daemon]:
    async with open_runtime(config, state_dir) as rt, running_engine(rt) as engine:
        plugin = Q4dPlugin()
        await plugin.setup(rt)
        async with trio.open_nursery() as nursery:
            for spec in plugin.services(rt):
                with trio.fail_after(30):
                    await rt.supervisor.start(nursery, spec)
            yield Daemon(rt, engine, plugin)
            nursery.cancel_scope.cancel()


def server_for(protocol: str, root: Path) -> Any:
    return open_ftp(root) if protocol == "ftp" else open_sftp(root)


def same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    _ok, bad, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    return not bad and not errors and all(same_tree(a / d, b / d) for d in cmp.common_dirs)


@pytest.mark.parametrize("protocol", ["ftp", "sftp"])
async def test_payloads_land_byte_identical_and_done_is_labelled(
    protocol: str, seed_root: Path, tmp_path: Path
) -> None:
    async with (
        open_mosquitto(tmp_path / "mq") as broker,
        server_for(protocol, seed_root) as server,
        watch_labels(broker.port) as labels,
    ):
        config = make_config(broker, server, tmp_path)
        async with running_daemon(config, tmp_path / "state") as daemon:
            events = [
                ("/files/My Movie (2024)", "HASHDIR", "M"),
                ("/files/Big Payload (2160p).bin", "HASHBIG", "B"),
                ("/files/Single Episode S01E02 (720p).mkv", "HASHUNKNOWN", "Z"),
            ]
            for path, hash_, code in events:
                # Byte for byte what Queue4Download.sh sends: printf "%s\t%s\t%s\n", QoS 2.
                await mosquitto_pub(broker.port, "Down", format_down(path, hash_, code) + b"\n")
            await labels.wait_for(
                {f"{h}\tDONE" for _p, h, _c in events} | {f"{h}\tQUEUED" for _p, h, _c in events},
                timeout=180,
            )
            jobs = await daemon.wait_final(3)
            assert {j.state for j in jobs} == {JobState.DONE}, [j.error for j in jobs]
            with trio.fail_after(30):  # the broker's PUBCOMP may trail the subscriber's copy
                while daemon.ingest.statistics().labels_sent < 6:
                    await trio.sleep(0.05)
            stats = daemon.ingest.statistics()
            assert (stats.received, stats.queued, stats.labels_sent) == (3, 3, 6)
            state = daemon.plugin.state
            assert isinstance(state, Q4DState)
            assert await state.outbox.count() == 0  # every label acknowledged by the broker
    for hash_ in ("HASHDIR", "HASHBIG", "HASHUNKNOWN"):
        assert labels.labels.index(f"{hash_}\tQUEUED") < labels.labels.index(f"{hash_}\tDONE")
    media = tmp_path / "media"
    files = seed_root / "files"
    assert same_tree(files / "My Movie (2024)", media / "Movies" / "My Movie (2024)")
    big = "Big Payload (2160p).bin"
    assert filecmp.cmp(files / big, media / "Big" / big, shallow=False)
    episode = "Single Episode S01E02 (720p).mkv"
    assert filecmp.cmp(files / episode, media / "Other" / episode, shallow=False)  # code Z → ERR
    leftovers = [p.name for p in media.rglob(".*")]
    assert leftovers == []  # no staging names left behind


async def test_wrong_password_ends_in_nope_with_lftps_reason(
    seed_root: Path, tmp_path: Path
) -> None:
    async with (
        open_mosquitto(tmp_path / "mq") as broker,
        open_sftp(seed_root) as server,
        watch_labels(broker.port) as labels,
    ):
        config = make_config(broker, server, tmp_path, password="Not-The-Password")
        async with running_daemon(config, tmp_path / "state") as daemon:
            await mosquitto_pub(broker.port, "Down", format_down("/files/x", "HASHBAD", "M"))
            await labels.wait_for({"HASHBAD\tNOPE"}, timeout=120)
            (job,) = await daemon.wait_final(1)
    assert job.state is JobState.FAILED
    assert job.attempts == 3  # the first try and the two retries of the preset
    assert job.error is not None
    assert "Login failed: Login incorrect" in job.error
    assert "HASHBAD\tDONE" not in labels.labels


async def test_duplicate_hash_is_not_queued_twice(seed_root: Path, tmp_path: Path) -> None:
    async with open_mosquitto(tmp_path / "mq") as broker, open_ftp(seed_root) as server:
        config = make_config(broker, server, tmp_path)
        async with running_daemon(config, tmp_path / "state") as daemon:
            await daemon.engine.pause_queue()  # the first job stays queued (active)
            payload = format_down("/files/Big Payload (2160p).bin", "HASHDUP", "B")
            for _ in range(3):
                await mosquitto_pub(broker.port, "Down", payload)
            with trio.fail_after(60):
                while (st := daemon.ingest.statistics()).queued + st.duplicates < 3:
                    await trio.sleep(0.05)
            stats = daemon.ingest.statistics()
            await daemon.engine.resume_queue()
            jobs = await daemon.wait_final(1)
    assert (stats.queued, stats.duplicates) == (1, 2)
    assert len(jobs) == 1
    assert jobs[0].state is JobState.DONE


async def test_broker_restart_mid_run_loses_no_event(
    seed_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with open_mosquitto(tmp_path / "mq") as broker, open_ftp(seed_root) as server:
        config = make_config(broker, server, tmp_path)
        async with running_daemon(config, tmp_path / "state") as daemon:
            ep = "/files/Single Episode S01E02 (720p).mkv"
            big = "/files/Big Payload (2160p).bin"
            # The big file keeps a transfer running while the broker goes away.
            await mosquitto_pub(broker.port, "Down", format_down(big, "BEFOREBIG", "B"))
            for i in range(3):
                await mosquitto_pub(broker.port, "Down", format_down(ep, f"BEFORE{i}", f"T{i}"))
            with trio.fail_after(60):
                while not [j for j in await daemon.transfers() if j.state is JobState.RUNNING]:
                    await trio.sleep(0.01)
            await broker.stop()
            await broker.start()
            # Published at once: hathd may not be reconnected yet; the broker keeps its session.
            for i in range(3):
                await mosquitto_pub(broker.port, "Down", format_down(ep, f"AFTER{i}", f"U{i}"))
            wanted = {f"BEFORE{i}" for i in range(3)} | {f"AFTER{i}" for i in range(3)}
            wanted.add("BEFOREBIG")
            jobs = await daemon.wait_hashes_done(wanted, timeout=180)
            stats = daemon.ingest.statistics()
            assert stats.mqtt is not None
            assert stats.mqtt.connects >= 2
            assert stats.mqtt.disconnects >= 1
            assert stats.connected
            assert daemon.rt.supervisor.records[SERVICE].restarts == 0
            state = daemon.plugin.state
            assert isinstance(state, Q4DState)
            with trio.fail_after(30):  # labels held during the outage go out after it
                while await state.outbox.count():
                    await trio.sleep(0.05)
        assert {j.params["hash"] for j in jobs} == wanted
        assert {j.state for j in jobs} == {JobState.DONE}, [j.error for j in jobs]
    # No descriptor closed behind Trio's back (EBADF), no crash of the service.
    faults = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert faults == []


@pytest.mark.parametrize("concurrency", [1, 2])
async def test_seedbox_lane_bounds_concurrent_transfers(
    concurrency: int, seed_root: Path, tmp_path: Path
) -> None:
    async with open_mosquitto(tmp_path / "mq") as broker, open_ftp(seed_root) as server:
        config = make_config(broker, server, tmp_path, concurrency=concurrency)
        async with running_daemon(config, tmp_path / "state") as daemon:
            await daemon.engine.pause_queue()  # all three queued before the first starts
            events = [
                ("/files/Big Payload (2160p).bin", "LANE1", "B"),
                ("/files/My Movie (2024)", "LANE2", "M"),
                ("/files/Single Episode S01E02 (720p).mkv", "LANE3", "T"),
            ]
            for path, hash_, code in events:
                await mosquitto_pub(broker.port, "Down", format_down(path, hash_, code))
            with trio.fail_after(30):
                while daemon.ingest.statistics().queued < 3:
                    await trio.sleep(0.01)
            await daemon.engine.resume_queue()
            most = 0
            with trio.fail_after(120):
                while True:
                    jobs = await daemon.transfers()
                    most = max(most, sum(j.state is JobState.RUNNING for j in jobs))
                    if sum(j.state in FINAL for j in jobs) == 3:
                        break
                    await trio.sleep(0.005)
    assert {j.state for j in jobs} == {JobState.DONE}, [j.error for j in jobs]
    assert most == concurrency


async def test_labels_wait_out_a_broker_outage(seed_root: Path, tmp_path: Path) -> None:
    async with open_mosquitto(tmp_path / "mq") as broker, open_ftp(seed_root) as server:
        async with watch_labels(broker.port, client_id="seedbox-labeld"):
            pass  # the seedbox's label reader has a persistent session
        config = make_config(broker, server, tmp_path)
        async with running_daemon(config, tmp_path / "state") as daemon:
            await broker.stop()
            # A transfer finishes while the broker is down: its label waits in the outbox.
            event = DownEvent("/files/Single Episode S01E02 (720p).mkv", "OUTAGE", "T")
            await daemon.engine.submit(daemon.ingest.spec_for(event, 0))
            await daemon.wait_hashes_done({"OUTAGE"})
            state = daemon.plugin.state
            assert isinstance(state, Q4DState)
            assert await state.outbox.count() == 1
            await broker.start()
            async with watch_labels(broker.port, client_id="seedbox-labeld") as labels:
                await labels.wait_for({"OUTAGE\tDONE"}, timeout=60)
            with trio.fail_after(30):
                while await state.outbox.count():
                    await trio.sleep(0.05)


async def test_events_published_while_down_are_transferred_after_restart(
    seed_root: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    async with open_mosquitto(tmp_path / "mq") as broker, open_ftp(seed_root) as server:
        config = make_config(broker, server, tmp_path)
        async with running_daemon(config, state):
            pass  # first run: the broker now holds hathd's persistent session
        async with watch_labels(broker.port) as labels:
            for i in range(4):
                path = "/files/My Movie (2024)" if i % 2 else "/files/Big Payload (2160p).bin"
                await mosquitto_pub(broker.port, "Down", format_down(path, f"OFFLINE{i}", "M"))
            async with running_daemon(config, state) as daemon:
                await labels.wait_for({f"OFFLINE{i}\tDONE" for i in range(4)}, timeout=180)
                jobs = await daemon.wait_final(4)
    # Same payload twice per path: the later event of a path finds its job active or done.
    assert {j.state for j in jobs} == {JobState.DONE}
    media = tmp_path / "media" / "Movies"
    assert same_tree(seed_root / "files" / "My Movie (2024)", media / "My Movie (2024)")


def publish_many(port: int, topic: str, payloads: list[bytes]) -> None:
    """A separate real MQTT client (paho's own network thread) publishing at QoS 1."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="flooder")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(topic, p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(timeout=60)
    finally:
        client.disconnect()
        client.loop_stop()


async def test_malformed_flood_is_rejected_and_counted(seed_root: Path, tmp_path: Path) -> None:
    malformed = []
    for i in range(1000):
        kind = i % 4
        if kind == 0:
            malformed.append(f"/files/only two fields\t{i}".encode())
        elif kind == 1:
            malformed.append(b"\xff\xfe bad utf-8 \t" + str(i).encode() + b"\tM")
        elif kind == 2:
            malformed.append(f"\tHASH{i}\tM".encode())
        else:
            malformed.append(b"/files/..\t" + str(i).encode() + b"\tM")
    valid = [
        format_down("/files/Single Episode S01E02 (720p).mkv", f"GOOD{i}", "T") for i in range(3)
    ]
    async with (
        open_mosquitto(tmp_path / "mq") as broker,
        open_ftp(seed_root) as server,
        watch_labels(broker.port) as labels,
    ):
        config = make_config(broker, server, tmp_path)
        async with running_daemon(config, tmp_path / "state") as daemon:
            mixed = malformed[:500] + valid[:1] + malformed[500:] + valid[1:]
            await trio.to_thread.run_sync(publish_many, broker.port, "Down", mixed)
            await labels.wait_for({f"GOOD{i}\tDONE" for i in range(3)}, timeout=120)
            stats = daemon.ingest.statistics()
            record = daemon.rt.supervisor.records[SERVICE]
            rows = await daemon.rt.store.query("SELECT COUNT(*) AS n FROM q4d_rejected")
    assert sum(stats.rejected.values()) == 1000
    assert stats.rejected == {
        "too_few_fields": 250,
        "bad_encoding": 250,
        "empty_path": 250,
        "bad_path": 250,
    }
    assert stats.received == 1003
    assert stats.queued == 3
    assert stats.connected
    assert record.restarts == 0
    assert rows[0]["n"] == 1000
