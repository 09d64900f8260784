"""Gallery downloader throughput against curl, on one local fake image server, in one run.

Both sides fetch the same gallery files from the fake control server's image route
(``tests/fakes/hath_dl.py``, hypercorn on 127.0.0.1, run in its own process so that it does not
share an event loop with the client under test), into fresh directories on the same disk:

* **hathd**: the ``gallery`` job handler (:func:`hathd.gallery.handler.run_gallery`) with
  pacing off, i.e. per file a ``dlfetch`` RPC, a streamed GET, SHA-1 verification, fsync and
  rename, then ``galleryinfo.txt``;
* **curl**: one ``curl`` process given the whole URL list (``--parallel`` for concurrency > 1),
  connection reuse on, no verification: the reference.

Reported: files/s and MB/s of each and the ratio hathd/curl, for sequential (1) and parallel
(4) downloads. Usage::

    .venv/bin/python bench/bench_gallery.py --quick     # 150 files x 64 KiB
    .venv/bin/python bench/bench_gallery.py             # 400 files x 256 KiB
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import attrs
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fakes.hath_control import open_fake_control
from fakes.hath_dl import FakeGallery, GalleryQueue
from gallery.helpers import FAST, StubContext, make_job
from hathd.gallery.handler import MIGRATIONS, GalleryDeps, meta_to_params, run_gallery
from hathd.gallery.hosts import HostGates
from hathd.gallery.rpc import RpcTarget, standalone_rpc
from hathd.hath.gallery_meta import GalleryMeta, parse_queue_reply
from hathd.hath.protocol import Credentials, ServerClock
from hathd.store import open_store

CREDS = Credentials(4242, "abcdefghij0123456789")
GID = 900


@attrs.frozen
class Result:
    name: str
    files: int
    bytes: int
    seconds: float

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6


async def serve(files: int, size: int) -> None:
    """Child process: run the fake with one gallery; print the port; stop when stdin closes."""
    async with open_fake_control(CREDS) as fake:
        GalleryQueue.attach(fake).add(FakeGallery.build(GID, "Bench", [size] * files))
        print(fake.port, flush=True)
        stdin = trio.lowlevel.FdStream(os.dup(0))
        while await stdin.receive_some():
            pass


async def fetch_meta(target: RpcTarget) -> GalleryMeta:
    async with standalone_rpc(target, lambda: CREDS, ServerClock())() as rpc:
        reply = parse_queue_reply(await rpc.fetchqueue())
    assert isinstance(reply, GalleryMeta), reply
    return reply


async def bench_hathd(target: RpcTarget, meta: GalleryMeta, work: Path, concurrency: int) -> Result:
    config = attrs.evolve(FAST, concurrency=concurrency, host_concurrency=concurrency)
    async with open_store(work / "state.sqlite3") as store:
        await store.migrate("gallery", MIGRATIONS)
        deps = GalleryDeps(
            config,
            work / "download",
            store,
            HostGates(concurrency),
            standalone_rpc(target, lambda: CREDS, ServerClock()),
        )
        ctx = StubContext(make_job(meta_to_params(meta)), work)
        start = time.perf_counter()
        result = await run_gallery(deps, ctx)
        elapsed = time.perf_counter() - start
    assert result["downloaded"] == meta.filecount, result
    size = sum(p.stat().st_size for p in Path(result["directory"]).glob("*.jpg"))  # noqa: ASYNC240
    return Result(f"hathd (concurrency {concurrency})", meta.filecount, size, elapsed)


async def bench_curl(base_url: str, meta: GalleryMeta, work: Path, concurrency: int) -> Result:
    work.mkdir(parents=True)  # noqa: ASYNC240
    lines = []
    for f in meta.files:
        lines.append(f'url = "{base_url}/gfile/{meta.gid}/{f.page}"')
        lines.append(f'output = "{work / f.name}"')
    config = work / "curl.cfg"
    config.write_text("\n".join(lines) + "\n")
    argv = ["curl", "--silent", "--show-error", "--fail", "--no-progress-meter"]
    argv += ["--config", str(config)]
    if concurrency > 1:
        argv += ["--parallel", "--parallel-max", str(concurrency)]
    start = time.perf_counter()
    await trio.run_process(argv)
    elapsed = time.perf_counter() - start
    size = sum((work / f.name).stat().st_size for f in meta.files)
    return Result(f"curl (parallel {concurrency})", meta.filecount, size, elapsed)


async def main(files: int, size: int, rounds: int) -> None:
    if shutil.which("curl") is None:
        raise SystemExit("curl is required (apt-get install curl)")
    rows: list[tuple[Result, Result]] = []
    argv = [sys.executable, __file__, "--serve", "--files", str(files), "--size", str(size)]
    async with trio.open_nursery() as nursery:
        proc: trio.Process = await nursery.start(
            partial(trio.run_process, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        )
        assert proc.stdout is not None
        assert proc.stdin is not None
        port = int((await proc.stdout.receive_some()).decode().strip())
        target = RpcTarget("127.0.0.1", port)
        meta = await fetch_meta(target)
        with tempfile.TemporaryDirectory(prefix="bench-gallery-") as tmp:
            base = Path(tmp)
            n = 0
            for concurrency in (1, 4):
                best_h: Result | None = None
                best_c: Result | None = None
                for _ in range(rounds):
                    n += 1
                    c = await bench_curl(
                        f"http://127.0.0.1:{port}", meta, base / f"curl{n}", concurrency
                    )
                    h = await bench_hathd(target, meta, base / f"hathd{n}", concurrency)
                    assert h.bytes == c.bytes == files * size, (h, c)
                    best_c = c if best_c is None or c.seconds < best_c.seconds else best_c
                    best_h = h if best_h is None or h.seconds < best_h.seconds else best_h
                assert best_h is not None
                assert best_c is not None
                rows.append((best_h, best_c))
        await proc.stdin.aclose()
    print(f"gallery of {files} files x {size} bytes, best of {rounds} round(s) each")
    print()
    print("| run | files/s | MB/s | curl files/s | curl MB/s | ratio hathd/curl |")
    print("|---|---:|---:|---:|---:|---:|")
    for h, c in rows:
        print(
            f"| {h.name} vs {c.name} | {h.files_per_s:.0f} | {h.mb_per_s:.1f} | "
            f"{c.files_per_s:.0f} | {c.mb_per_s:.1f} | {c.seconds / h.seconds:.2f} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="150 files x 64 KiB, 1 round")
    parser.add_argument("--files", type=int, default=None)
    parser.add_argument("--size", type=int, default=None, help="bytes per file")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    files = args.files or (150 if args.quick else 400)
    size = args.size or (64 * 1024 if args.quick else 256 * 1024)
    rounds = args.rounds or (1 if args.quick else 3)
    if args.serve:
        trio.run(serve, files, size)
    else:
        trio.run(main, files, size, rounds)
