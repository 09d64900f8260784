"""Direct anime episode download through the job engine against curl, on one local fake hoster.

A fake provider and Vidoza-style hoster (``tests/fakes/anime_hosters.py``, raw Trio HTTP/1.1 on
127.0.0.1, run in its own process so that it does not share the client's event loop) serves a
real MP4 made by ffmpeg and padded with an ISO BMFF ``free`` box to the wanted size.

* **curl**: ``curl -sS -o <file> <media URL>`` (the file only, no redirect or page).
* **hathd**: one ``anime-episode`` job through the real engine (store, coordinator, worker):
  provider redirect, hoster page, resolution, then the ranged downloader into the part file,
  fsync and atomic placement; timed from submission to ``done``.
* **download kind**: one job of the engine's generic ``download`` kind for the media URL
  (``engine/download.py``: ranged GET, SHA-256 of the body, fsync, atomic placement).

Reported: MB/s of each (best of the rounds) and the ratio hathd/curl (target >= 0.7), also
against curl followed by an ``fsync`` of its file (the job fsyncs before placing its file);
the CPU seconds each side spent per GiB (curl: ``RUSAGE_CHILDREN`` around its run; hathd: this
process's CPU time during the job, all threads — the fake hoster runs in another process and
is in neither), which move far less than the wall-clock figures on a loaded machine; and the
load average (1, 5, 15 min) at the start and at the end. Figures on a loaded machine are
smoke only.

Usage::

    .venv/bin/python bench/bench_anime_download.py            # full: 1 GiB, 3 rounds
    .venv/bin/python bench/bench_anime_download.py --quick    # smoke run: 64 MiB, 1 round
    .venv/bin/python bench/bench_anime_download.py --mib 256 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from anime.hoster_fixtures import make_media, vidoza_page
from fakes.anime_hosters import open_fake_anime_site
from hathd.anime.episode import KIND, EpisodeLanded, make_episode_handler
from hathd.anime.gate import DomainGate
from hathd.anime.health import HosterHealth
from hathd.config import Config
from hathd.engine import running_engine
from hathd.engine.api import JobSpec, JobState
from hathd.engine.config import EngineConfig
from hathd.engine.download import download_spec
from hathd.engine.lanes import LaneSettings
from hathd.runtime import open_runtime


def padded_mp4(work: Path, size: int) -> Path:
    """A real MP4 followed by a ``free`` box (ISO/IEC 14496-12 §8.1.2) up to ``size`` bytes."""
    media = make_media(work / "media", seconds=2)
    pad = max(8, size - len(media.mp4))
    path = work / "episode.mp4"
    with path.open("wb") as fh:
        fh.write(media.mp4)
        fh.write(struct.pack(">I", pad) + b"free")
        block = b"\0" * (1 << 20)
        left = pad - 8
        while left > 0:
            fh.write(block[: min(left, len(block))])
            left -= len(block)
    return path


async def serve(media_path: Path, port_file: Path) -> None:
    """Serve ``/media/ep.mp4``, a Vidoza page for it and ``/redirect/1``; write the port."""
    data = await trio.Path(media_path).read_bytes()
    async with open_fake_anime_site() as site:
        site.media("/media/ep.mp4", data)
        site.page("/vidoza/embed-1.html", vidoza_page(site.url("/media/ep.mp4")))
        site.redirect("/redirect/1", site.url("/vidoza/embed-1.html"))
        await trio.Path(port_file).write_text(str(site.port))
        await trio.sleep_forever()


async def wait_port(port_file: Path) -> str:
    """The port the server process writes to ``port_file`` (waits up to 60 s)."""
    path = trio.Path(port_file)
    with trio.fail_after(60):
        for _ in range(1200):
            if await path.exists() and (text := await path.read_text()):
                return text
            await trio.sleep(0.05)
    raise SystemExit("the fake hoster did not start")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


CURL_CPU: list[float] = []
"""CPU seconds of each curl run (user + system)."""


def bench_curl(url: str, out: Path) -> tuple[float, float]:
    """Seconds of ``curl -o out url``, and of the same followed by an ``fsync`` of ``out``
    (the durability the episode job gives its file)."""
    curl = shutil.which("curl")
    if curl is None:
        raise SystemExit("curl is required (scripts/system-packages)")
    out.unlink(missing_ok=True)
    cpu = _children_cpu()
    start = time.perf_counter()
    subprocess.run([curl, "-sS", "-o", str(out), url], check=True)
    fetched = time.perf_counter()
    CURL_CPU.append(_children_cpu() - cpu)
    fd = os.open(out, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return fetched - start, time.perf_counter() - start


HATHD_CPU: list[float] = []
"""CPU seconds of this process during each episode job (all threads)."""


async def bench_hathd(work: Path, base: str, round_no: int) -> tuple[float, int]:
    root = work / f"library-{round_no}"
    root.mkdir()

    async def on_landed(event: EpisodeLanded) -> None:
        pass

    config = Config(engine=EngineConfig(workers=2))
    async with (
        open_runtime(config, work / f"state-{round_no}") as rt,
        running_engine(rt) as engine,
    ):
        handler = make_episode_handler(
            root=root,
            health=HosterHealth(),
            on_landed=on_landed,
            gate=DomainGate(default=LaneSettings(concurrency=4, rate=0.0, burst=1)),
            save_checkpoint=engine.save_checkpoint,
        )
        engine.register(KIND, handler)
        spec = JobSpec(
            kind=KIND,
            target=f"{base}/anime/stream/bench/staffel-1/episode-1",
            domain="127.0.0.1",
            params={
                "series_key": "bench",
                "season": 1,
                "episode": 1,
                "dest": "Bench (2024)/Season 01/Bench - S01E01 - One",
                "candidates": [
                    {"hoster": "vidoza", "language": "de-dub", "url": f"{base}/redirect/1"}
                ],
            },
        )
        cpu = time.process_time()
        start = time.perf_counter()
        submitted = await engine.submit(spec)
        job = await engine.wait_final(submitted.job.id, timeout=600)
        elapsed = time.perf_counter() - start
        HATHD_CPU.append(time.process_time() - cpu)
    if job.state is not JobState.DONE or job.result is None:
        raise SystemExit(f"the episode job failed: {job.error}")
    size = int(job.result["size"])
    await trio.Path(job.result["path"]).unlink()
    return elapsed, size


ENGINE_CPU: list[float] = []
"""CPU seconds of this process during each ``download`` job (all threads)."""


async def bench_engine_download(work: Path, url: str, round_no: int) -> tuple[float, int]:
    """One job of the engine's generic ``download`` kind (ranged GET, SHA-256 of the body,
    fsync, atomic placement) for ``url``; timed from submission to ``done``."""
    config = Config(engine=EngineConfig(workers=2))
    async with (
        open_runtime(config, work / f"state-dl-{round_no}") as rt,
        running_engine(rt) as engine,
    ):
        cpu = time.process_time()
        start = time.perf_counter()
        submitted = await engine.submit(download_spec(url, filename=f"dl-{round_no}.mp4"))
        job = await engine.wait_final(submitted.job.id, timeout=600)
        elapsed = time.perf_counter() - start
        ENGINE_CPU.append(time.process_time() - cpu)
    if job.state is not JobState.DONE or job.result is None:
        raise SystemExit(f"the download job failed: {job.error}")
    await trio.Path(job.result["path"]).unlink()
    return elapsed, int(job.result["size"])


async def main(quick: bool, mib: int | None, rounds_arg: int | None) -> dict[str, Any]:
    size, rounds = (64 * 2**20, 1) if quick else (2**30, 3)
    if mib is not None:
        size = mib * 2**20
    if rounds_arg is not None:
        rounds = rounds_arg
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="hathd-bench-anime-") as name:
        work = Path(name)
        media = await trio.to_thread.run_sync(padded_mp4, work, size)
        port_file = work / "port"
        server = await trio.lowlevel.open_process(
            [sys.executable, __file__, "--serve", str(media), str(port_file)]
        )
        try:
            base = f"http://127.0.0.1:{await wait_port(port_file)}"
            curl_s: list[float] = []
            curl_sync_s: list[float] = []
            hathd_s: list[float] = []
            engine_s: list[float] = []
            for n in range(rounds):
                fetched, synced = await trio.to_thread.run_sync(
                    bench_curl, f"{base}/media/ep.mp4", work / "curl.mp4"
                )
                curl_s.append(fetched)
                curl_sync_s.append(synced)
                elapsed, got = await bench_hathd(work, base, n)
                if got != media.stat().st_size:
                    raise SystemExit(f"hathd got {got} bytes of {media.stat().st_size}")
                hathd_s.append(elapsed)
                elapsed, got = await bench_engine_download(work, f"{base}/media/ep.mp4", n)
                if got != media.stat().st_size:
                    raise SystemExit(f"download got {got} bytes of {media.stat().st_size}")
                engine_s.append(elapsed)
        finally:
            server.kill()
            await server.wait()
    load_end = os.getloadavg()
    mb = size / 1e6
    gib = size / 2**30
    curl_rate = mb / min(curl_s)
    curl_sync_rate = mb / min(curl_sync_s)
    hathd_rate = mb / min(hathd_s)
    engine_rate = mb / min(engine_s)
    return {
        "quick": quick,
        "bytes": size,
        "rounds": rounds,
        "curl_mb_per_s": round(curl_rate, 1),
        "curl_fsync_mb_per_s": round(curl_sync_rate, 1),
        "hathd_mb_per_s": round(hathd_rate, 1),
        "ratio_hathd_to_curl": round(hathd_rate / curl_rate, 3),
        "ratio_hathd_to_curl_fsync": round(hathd_rate / curl_sync_rate, 3),
        "target_ratio": 0.7,
        "download_kind_mb_per_s": round(engine_rate, 1),
        "ratio_download_kind_to_curl": round(engine_rate / curl_rate, 3),
        "curl_cpu_s_per_gib": round(min(CURL_CPU) / gib, 3),
        "hathd_cpu_s_per_gib": round(min(HATHD_CPU) / gib, 3),
        "download_kind_cpu_s_per_gib": round(min(ENGINE_CPU) / gib, 3),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in load_end],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--mib", type=int, help="file size in MiB (default 1024, --quick 64)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3, --quick 1)")
    parser.add_argument("--serve", nargs=2, metavar=("FILE", "PORT_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        trio.run(serve, Path(args.serve[0]), Path(args.serve[1]))
        raise SystemExit(0)
    report = trio.run(main, args.quick, args.mib, args.rounds)
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
