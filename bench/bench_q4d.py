"""Seedbox transfer benchmark: ingest rate and transfer throughput, each against a reference
measured in the same run on the same machine.

1. **Ingest, events/s from broker to durable job.** N ``Down`` events are published (QoS 1) to
   a local mosquitto while hathd's ingest service runs with the engine queue paused (so jobs
   stay queued); the clock stops when the N-th job is committed to SQLite. Reference: a bare
   paho-mqtt subscriber (its own network thread, QoS 1, no storage) receiving the same N
   messages from the same broker. Ratio = hathd / bare subscriber.
2. **Transfer, MB/s.** The same payloads (one large file, one folder of files) fetched from a
   local SFTP server (asyncssh) and a local FTP server (pyftpdlib) by a hathd ``transfer`` job
   (event → job → lftp probe + pget/mirror → size check → rename → ``DONE``) and by lftp run
   by hand (``pget -n SEGMENTS`` / ``mirror --parallel``), three runs each, best counted.
   Ratio = hathd / lftp by hand.

Usage::

    .venv/bin/python bench/bench_q4d.py --quick    # 2,000 events, 64 MiB file, 8 x 4 MiB folder
    .venv/bin/python bench/bench_q4d.py            # 10,000 events, 256 MiB file, 16 x 8 MiB
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import trio
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from hathd.config import structure
from hathd.engine import running_engine
from hathd.engine.api import JobState
from hathd.q4d.payload import format_down
from hathd.q4d.plugin import Q4dPlugin, Q4DState
from hathd.runtime import open_runtime
from q4d.rig import PASSWORD, USER, open_ftp, open_mosquitto, open_sftp, ssh_connect_program


def publish_many(port: int, payloads: list[bytes], client_id: str) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish("Down", p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(timeout=120)
    finally:
        client.disconnect()
        client.loop_stop()


def bare_subscriber(port: int, payloads: list[bytes]) -> float:
    """Seconds for a plain paho subscriber to receive all ``payloads`` (published meanwhile)."""
    got = threading.Event()
    count = [0]

    def on_message(_c: Any, _u: Any, _m: Any) -> None:
        count[0] += 1
        if count[0] == len(payloads):
            got.set()

    ready = threading.Event()
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare", clean_session=False)
    sub.on_message = on_message
    sub.on_subscribe = lambda *_a: ready.set()
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    sub.subscribe("Down", qos=1)
    ready.wait(30)
    began = time.perf_counter()
    publish_many(port, payloads, "bench-pub-ref")
    got.wait(300)
    elapsed = time.perf_counter() - began
    sub.disconnect()
    sub.loop_stop()
    return elapsed


async def bench_ingest(tmp: Path, events: int) -> dict[str, float]:
    payloads = [format_down(f"/files/item {i:06d}", f"{i:040X}", "M") for i in range(events)]
    async with open_mosquitto(tmp / "mq") as broker:
        reference = await trio.to_thread.run_sync(bare_subscriber, broker.port, payloads)
        config = structure(
            {
                "mqtt": {"port": broker.port, "client_id": "bench-hathd"},
                "q4d": {"enabled": True, "host": "ftp://127.0.0.1:9", "label_queued": False},
            }
        )
        async with open_runtime(config, tmp / "state") as rt, running_engine(rt) as engine:
            plugin = Q4dPlugin()
            await plugin.setup(rt)
            await engine.pause_queue()
            (spec,) = plugin.services(rt)
            state = plugin.state
            assert isinstance(state, Q4DState)
            async with trio.open_nursery() as nursery:
                await nursery.start(spec.serve)
                ingest = state.ingest
                assert ingest is not None
                began = time.perf_counter()
                nursery.start_soon(
                    trio.to_thread.run_sync, publish_many, broker.port, payloads, "bench-pub"
                )
                while ingest.queued + ingest.duplicates < events:  # noqa: ASYNC110
                    await trio.sleep(0.005)
                elapsed = time.perf_counter() - began
                nursery.cancel_scope.cancel()
    return {"hathd": events / elapsed, "reference": events / reference}


def make_payloads(root: Path, big_mb: int, files: int, file_mb: int) -> tuple[Path, Path]:
    big = root / "files" / "Big Payload (bench).bin"
    big.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(1 << 20)
    with big.open("wb") as fh:
        for i in range(big_mb):
            fh.write(i.to_bytes(8, "big") + block[8:])
    folder = root / "files" / "Season (bench)"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (folder / f"episode {i:02d}.mkv").write_bytes(os.urandom(file_mb << 20))
    return big, folder


REPEATS = 3
"""Each transfer is timed this many times per side; the best run counts (see docs/perf-q4d.md:
pyftpdlib occasionally leaves one lftp connection waiting for ``net:timeout``)."""

NET_TIMEOUT = 5


async def lftp_by_hand(url: str, script: str, dest: Path, sets: str = "") -> float:
    env = {**os.environ, "LFTP_PASSWORD": PASSWORD}
    began = time.perf_counter()
    await trio.run_process(
        [
            "lftp",
            "-c",
            f"set net:timeout {NET_TIMEOUT}; {sets}open --env-password -u {USER} {url}; {script}",
        ],
        cwd=dest,
        env=env,
        capture_stdout=True,
    )
    return time.perf_counter() - began


async def hathd_transfer(engine: Any, port: int, name: str, code: str, hash_: str) -> float:
    """Seconds from publishing the event to the job being ``done``."""
    began = time.perf_counter()
    payload = format_down(f"/files/{name}", hash_, code)
    await trio.to_thread.run_sync(publish_many, port, [payload], f"bench-{hash_}")
    while True:
        jobs, _n = await engine.list_jobs(kind="transfer", limit=100)
        done = [
            j
            for j in jobs
            if j.params["hash"] == hash_ and j.state in (JobState.DONE, JobState.FAILED)
        ]
        if done:
            assert done[0].state is JobState.DONE, done[0].error
            return time.perf_counter() - began
        await trio.sleep(0.01)


async def bench_transfer(
    tmp: Path, big_mb: int, files: int, file_mb: int, protocol: str
) -> dict[str, Any]:
    seed = tmp / "seed"
    if not (seed / "files").exists():
        await trio.to_thread.run_sync(make_payloads, seed, big_mb, files, file_mb)
    big = seed / "files" / "Big Payload (bench).bin"
    folder = seed / "files" / "Season (bench)"
    tmp = tmp / protocol
    tmp.mkdir()
    connect = ssh_connect_program(tmp)
    sets = f'set sftp:connect-program "{connect}"; ' if protocol == "sftp" else ""
    opener = open_sftp if protocol == "sftp" else open_ftp
    threads, segments = 4, 4
    ref_file: list[float] = []
    ref_dir: list[float] = []
    ours_file: list[float] = []
    ours_dir: list[float] = []
    async with open_mosquitto(tmp / "mq2") as broker, opener(seed) as server:
        for rep in range(REPEATS):
            ref = tmp / f"ref{rep}"
            ref.mkdir()
            ref_file.append(
                await lftp_by_hand(
                    server.url,
                    f'pget -n {segments} "/files/{big.name}" -o "{ref}/{big.name}"',
                    ref,
                    sets,
                )
            )
            ref_dir.append(
                await lftp_by_hand(
                    server.url,
                    f"mirror --parallel={threads} --use-pget-n={segments} --no-perms "
                    f'"/files/{folder.name}" "{ref}/{folder.name}"',
                    ref,
                    sets,
                )
            )
        config = structure(
            {
                "mqtt": {"port": broker.port, "client_id": "bench-hathd-x"},
                "q4d": {
                    "enabled": True,
                    "host": server.url,
                    "user": USER,
                    "password": PASSWORD,
                    "threads": threads,
                    "segments": segments,
                    "net_timeout": NET_TIMEOUT,
                    "sftp_connect_program": connect,
                    "download_root": str(tmp / "media"),
                    "type_map": {f"R{rep}": f"r{rep}" for rep in range(REPEATS)},
                },
            }
        )
        async with open_runtime(config, tmp / "state2") as rt, running_engine(rt) as engine:
            plugin = Q4dPlugin()
            await plugin.setup(rt)
            (spec,) = plugin.services(rt)
            async with trio.open_nursery() as nursery:
                await nursery.start(spec.serve)
                for rep in range(REPEATS):
                    code = f"R{rep}"
                    ours_file.append(
                        await hathd_transfer(engine, broker.port, big.name, code, f"F{rep}")
                    )
                    ours_dir.append(
                        await hathd_transfer(engine, broker.port, folder.name, code, f"D{rep}")
                    )
                nursery.cancel_scope.cancel()
    file_mb_total = big.stat().st_size / 1e6
    dir_mb_total = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
    return {
        "file": {
            "mb": file_mb_total,
            "hathd": file_mb_total / min(ours_file),
            "reference": file_mb_total / min(ref_file),
        },
        "dir": {
            "mb": dir_mb_total,
            "hathd": dir_mb_total / min(ours_dir),
            "reference": dir_mb_total / min(ref_dir),
        },
        "runs": {"file": (ours_file, ref_file), "dir": (ours_dir, ref_dir)},
    }


async def main(quick: bool) -> None:
    events = 2000 if quick else 10_000
    big_mb, files, file_mb = (64, 8, 4) if quick else (256, 16, 8)
    tmp = Path(tempfile.mkdtemp(prefix="bench-q4d-"))
    try:
        ingest = await bench_ingest(tmp, events)
        transfers = {
            protocol: await bench_transfer(tmp, big_mb, files, file_mb, protocol)
            for protocol in ("sftp", "ftp")
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    cmd = "bench/bench_q4d.py" + (" --quick" if quick else "")
    version = await trio.run_process(["lftp", "--version"], capture_stdout=True)
    lftp_version = version.stdout.decode().split()[3]
    print(f"# bench_q4d ({cmd}); {os.cpu_count()} CPUs; lftp {lftp_version}")
    print()
    print("| measure | hathd | reference | ratio |")
    print("|---|---|---|---|")
    print(
        f"| ingest: {events} Down events → durable jobs (events/s) vs bare paho subscriber "
        f"| {ingest['hathd']:,.0f} | {ingest['reference']:,.0f} "
        f"| {ingest['hathd'] / ingest['reference']:.2f} |"
    )
    for protocol, transfer in transfers.items():
        for key, label in (
            ("file", f"file {transfer['file']['mb']:.0f} MB, pget -n 4"),
            ("dir", f"folder {transfer['dir']['mb']:.0f} MB, mirror --parallel=4"),
        ):
            row = transfer[key]
            print(
                f"| {protocol} {label} (MB/s) vs lftp by hand | {row['hathd']:.1f} "
                f"| {row['reference']:.1f} | {row['hathd'] / row['reference']:.2f} |"
            )
    print()
    for protocol, transfer in transfers.items():
        for key, (ours, ref) in transfer["runs"].items():
            ours_s = ", ".join(f"{t:.2f}" for t in ours)
            ref_s = ", ".join(f"{t:.2f}" for t in ref)
            print(f"- {protocol} {key} runs (s): hathd {ours_s}; lftp by hand {ref_s}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (CI smoke run)")
    args = parser.parse_args()
    trio.run(main, args.quick)
