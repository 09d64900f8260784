"""Upload throughput of the recipe runner against curl, and request pacing per service.

Part 1 — throughput. One fake IMX.to host (``tests/fakes/imagehost_serve.py``: quart-trio on
hypercorn, 127.0.0.1, in its own process so it shares no event loop with the client) receives
the same multipart POSTs (API-key header, ``image`` file part, two text fields) from:

* **hathd**: :class:`hathd.recipes.runner.ServiceSession` with the built-in ``imx.to``
  recipe, limits off: template rendering, streamed multipart body from disk (256 KiB reads),
  retry bookkeeping, JSON reply parsing with the recipe's extractors;
* **curl**: one ``curl`` process given every transfer (``--next``; ``--parallel`` when the
  concurrency is above 1), connection reuse on: the reference.

Reported: uploads/s and MB/s of each and the ratio hathd/curl, sequential (1) and parallel
(4); each the median of ``--repeat`` alternating rounds (default 3), as a shared machine is
noisy.

Part 2 — politeness. Each built-in recipe, pointed at its in-process fake, uploads files with
the recipe's configured rate and burst (defaults: 2 req/s, burst 5), all files submitted at
once. A token bucket admits at most ``burst + rate × t`` requests in ``t`` seconds, so the
fake's arrival times give the measured rate ``(requests - burst) / (last - first arrival)``,
compared with the configured rate (the first arrivals are a few ms late — connection set-up —
which shortens the span and inflates short runs slightly).

Usage::

    .venv/bin/python bench/bench_recipes.py --quick    # 40 x 256 KiB; pacing at 20 req/s
    .venv/bin/python bench/bench_recipes.py            # 200 x 1 MiB; pacing at the defaults
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import attrs
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fakes.imagehost_setup import BAM_EMAIL, BAM_PASS, IMX_KEY, VIPR_PASS, VIPR_USER
from fakes.imagehosts import FakeHost, FakeImageBam, FakeImx, FakePixhost, FakeTurbo, FakeVipr
from fakes.imagehosts import running as running_fake
from hathd.recipes.config import RecipesConfig, ServiceConfig
from hathd.recipes.loader import configured_recipes
from hathd.recipes.uploader import Uploader

ROOT = Path(__file__).resolve().parent.parent


@attrs.frozen
class Run:
    """One measured run: ``files`` uploads of ``size`` bytes in ``seconds``."""

    files: int
    size: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.files / self.seconds

    @property
    def mb_per_second(self) -> float:
        return self.files * self.size / self.seconds / 1e6


def median(runs: list[Run]) -> Run:
    """The run with the median duration."""
    return sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]


def make_files(folder: Path, count: int, size: int) -> list[Path]:
    block = bytes(range(256)) * (size // 256 + 1)
    out = []
    for i in range(count):
        path = folder / f"img{i:04d}.jpg"
        path.write_bytes(i.to_bytes(4, "big") + block[: size - 4])
        out.append(path)
    return out


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests/fakes/imagehost_serve.py"), "imx", IMX_KEY],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        raise SystemExit(f"fake host did not start: {url!r}")
    return proc, url


def curl_run(url: str, files: list[Path], parallel: int) -> Run:
    argv = ["curl", "-sS", "--fail", "--no-progress-meter"]
    if parallel > 1:
        argv += ["--parallel", "--parallel-max", str(parallel)]
    for i, path in enumerate(files):
        if i:
            argv.append("--next")
        argv += [
            "-o", "/dev/null",
            "-H", f"X-API-KEY: {IMX_KEY}",
            "-F", f"image=@{path};type=image/jpeg",
            "-F", "format=json",
            "-F", "thumbnail_size=2",
            f"{url}/v1/upload.php",
        ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(argv, check=True)
    return Run(len(files), files[0].stat().st_size, time.perf_counter() - start)


async def hathd_run(url: str, files: list[Path], parallel: int) -> Run:
    config = RecipesConfig(
        services={
            "imx.to": ServiceConfig(
                base_url=url, credentials={"api_key": IMX_KEY}, rate=0.0, concurrency=parallel
            )
        },
        global_rate=0.0,
    )
    up = Uploader(configured_recipes(config), config)
    session = up.session("imx.to")
    send, receive = trio.open_memory_channel[Path](0)

    async def worker(rx: trio.MemoryReceiveChannel[Path]) -> None:
        async with rx:
            async for path in rx:
                result = await session.upload(path)
                assert result.url.startswith("https://imx.to/i/")

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        async with receive:
            for _ in range(parallel):
                nursery.start_soon(worker, receive.clone())
        async with send:
            for path in files:
                await send.send(path)
    seconds = time.perf_counter() - start
    await up.aclose()
    return Run(len(files), files[0].stat().st_size, seconds)


async def pacing(service: str, host: FakeHost, files: list[Path], rate: float, burst: int) -> str:
    creds = {
        "imx.to": {"api_key": IMX_KEY},
        "vipr.im": {"username": VIPR_USER, "password": VIPR_PASS},
        "imagebam": {"email": BAM_EMAIL, "password": BAM_PASS},
    }.get(service, {})
    async with running_fake(host):
        config = RecipesConfig(
            services={
                service: ServiceConfig(
                    base_url=host.base_url, credentials=creds, rate=rate, burst=burst
                )
            },
            global_rate=0.0,
        )
        up = Uploader(configured_recipes(config), config)
        session = up.session(service)
        async with trio.open_nursery() as nursery:
            for path in files:
                nursery.start_soon(session.upload, path)
        await up.aclose()
    times = host.times
    # a token bucket admits at most burst + rate × t requests in t seconds
    span = times[-1] - times[0]
    measured = (len(times) - burst) / span if span > 0 else float("nan")
    return (
        f"| {service} | {len(times)} | {rate:g} / {burst} | {measured:.2f} |"
        f" {measured / rate:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run (CI smoke)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="alternating rounds per side (median kept)"
    )
    args = parser.parse_args()
    count, size = (40, 256 * 1024) if args.quick else (200, 1024 * 1024)
    rate, burst, per_service = (20.0, 5, 12) if args.quick else (2.0, 5, 12)
    with tempfile.TemporaryDirectory(prefix="bench-recipes-") as tmp:
        files = make_files(Path(tmp), count, size)
        proc, url = start_server()
        try:
            print(
                f"## Upload throughput: {count} files x {size // 1024} KiB, fake imx.to,"
                f" median of {args.repeat} alternating rounds\n"
            )
            print(
                "| concurrency | curl uploads/s | curl MB/s | hathd uploads/s | hathd MB/s"
                " | hathd/curl |"
            )
            print("|---|---|---|---|---|---|")
            for parallel in (1, 4):
                curl_run(url, files[:5], parallel)  # warm-up
                refs, ours = [], []
                for _ in range(args.repeat):  # alternate, keep the medians
                    refs.append(curl_run(url, files, parallel))
                    ours.append(trio.run(hathd_run, url, files, parallel))
                ref = median(refs)
                mine = median(ours)
                print(
                    f"| {parallel} | {ref.per_second:.1f} | {ref.mb_per_second:.1f} |"
                    f" {mine.per_second:.1f} | {mine.mb_per_second:.1f} |"
                    f" {mine.per_second / ref.per_second:.2f} |"
                )
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=10)
        print(f"\n## Request pacing: {per_service} files per service, all submitted at once\n")
        print(
            "| service | requests | configured rate (req/s) / burst | measured"
            " (requests - burst) / span, req/s | measured/configured |"
        )
        print("|---|---|---|---|---|")
        small = files[:per_service]
        hosts: list[tuple[str, FakeHost]] = [
            ("imx.to", FakeImx(IMX_KEY)),
            ("pixhost.to", FakePixhost()),
            ("vipr.im", FakeVipr(VIPR_USER, VIPR_PASS)),
            ("turboimagehost", FakeTurbo()),
            ("imagebam", FakeImageBam(BAM_EMAIL, BAM_PASS)),
        ]
        for service, host in hosts:
            host.keep_file_data = False
            print(trio.run(pacing, service, host, small, rate, burst))
    print(f"\nCommand: .venv/bin/python bench/bench_recipes.py{' --quick' if args.quick else ''}")


if __name__ == "__main__":
    main()
