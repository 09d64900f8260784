"""A batch at the recipe's rate, and local thumbnails against Pillow's own loop.

Part 1 — pacing of a whole batch. The full pipeline (engine, the service's lane, the recipes
plugin, :class:`~hathd.recipes.runner.ServiceSession`) uploads a batch of small files to an
in-process fake Pixhost.to (quart-trio on hypercorn, 127.0.0.1) with the built-in recipe's
limits (2 requests/s, burst 5; one request per file). The politeness limit is meant to be the
bottleneck, so the wall time from submission to the last job's end should be
``files ÷ rate`` (the burst lets the first files go at once: ``(files - burst) ÷ rate`` is
the floor; with 200 files it is 2.5 % below ``files ÷ rate``, with the 20 of ``--quick``
25 %). Reported: wall time, both expectations and wall ÷ each; the target is wall ÷ (files ÷
rate) within 5 % for the 200-file batch.

Part 2 — thumbnails. ``count`` JPEGs of 4 MP (2312 × 1736) are made once; then, alternating
rounds, the reference — Pillow's ``Image.thumbnail()`` in a plain loop (open, thumbnail to
180 px, save as JPEG quality 85), one file after another — and hathd's
:class:`~hathd.recipes.thumbnails.Thumbnailer` (the same Pillow calls in worker threads behind
its ``CapacityLimiter``, every file submitted at once from Trio) make thumbnails of the same
files. Reported: thumbnails/s of each (median of ``--repeat`` rounds) and the ratio
hathd/Pillow; the target is at least 0.5.

Every figure is printed with the load average (``os.getloadavg()``): on a loaded machine they
are smoke only.

Usage::

    .venv/bin/python bench/bench_recipes_batch.py --quick   # 20 files; 20 JPEGs
    .venv/bin/python bench/bench_recipes_batch.py           # 200 files; 200 JPEGs
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fakes.imagehost_stack import upload_stack
from fakes.imagehosts import FakePixhost, running
from hathd.engine.api import ACTIVE_STATES
from hathd.recipes.config import RecipesConfig, ServiceConfig
from hathd.recipes.loader import builtin_recipes
from hathd.recipes.model import Recipe, ThumbnailSpec
from hathd.recipes.thumbnails import Thumbnailer

FOUR_MP = (2312, 1736)
THUMB = ThumbnailSpec(size=180, format="JPEG", quality=85)


def load() -> str:
    """The load average as ``load 1.23/0.98/0.75``."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}/{fifteen:.2f}"


def make_files(folder: Path, count: int, size: int) -> list[Path]:
    out = []
    for i in range(count):
        path = folder / f"img{i:04d}.jpg"
        path.write_bytes(i.to_bytes(4, "big") + bytes(size - 4))
        out.append(path)
    return out


async def batch_wall(folder: Path, count: int) -> tuple[float, float, int]:
    """Upload ``count`` files through the pipeline; return (wall seconds, rate, burst)."""
    recipe = builtin_recipes()["pixhost.to"]
    assert isinstance(recipe, Recipe)
    rate, burst = recipe.limits.rate, recipe.limits.burst
    make_files(folder, count, 20_000)
    host = FakePixhost()
    host.keep_file_data = False
    async with running(host):
        config = RecipesConfig(
            services={"pixhost.to": ServiceConfig(base_url=host.base_url)},
            roots=[str(folder)],
        )
        async with upload_stack(config, workers=8) as stack:
            start = trio.current_time()
            sub = await stack.uploads.submit([str(folder)], "pixhost.to")
            for job in sub.jobs:
                final = await stack.engine.wait_final(job["job"], timeout=4 * count / rate + 60)
                assert final.state not in ACTIVE_STATES
                assert final.result is not None, final.error
            wall = trio.current_time() - start
    assert len(host.requests) == count
    return wall, rate, burst


def make_jpegs(folder: Path, count: int) -> list[Path]:
    """``count`` distinct 4 MP JPEGs (a gradient with a varying pattern, quality 90)."""
    base = Image.linear_gradient("L").resize(FOUR_MP)
    out = []
    for i in range(count):
        red = base.point(lambda v, i=i: (v + 7 * i) % 256)
        blue = base.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        image = Image.merge("RGB", (red, base, blue))
        path = folder / f"photo{i:04d}.jpg"
        image.save(path, "JPEG", quality=90)
        out.append(path)
    return out


def pillow_loop(files: list[Path], out: Path) -> float:
    """The reference: Pillow's ``thumbnail()`` in a plain loop; seconds."""
    start = time.perf_counter()
    for i, path in enumerate(files):
        with Image.open(path) as image:
            image.thumbnail((THUMB.size, THUMB.size))
            image.save(out / f"ref{i}.jpg", "JPEG", quality=THUMB.quality)
    return time.perf_counter() - start


async def hathd_thumbnails(files: list[Path]) -> float:
    """hathd's Thumbnailer, every file at once; seconds."""
    maker = Thumbnailer()
    try:
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for path in files:

                async def one(path: Path = path) -> None:
                    thumb = await maker.make(path, THUMB)
                    assert max(thumb.width, thumb.height) == THUMB.size
                    Thumbnailer.discard(thumb)

                nursery.start_soon(one)
        return time.perf_counter() - start
    finally:
        maker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run (smoke)")
    parser.add_argument("--repeat", type=int, default=3, help="thumbnail rounds (median kept)")
    args = parser.parse_args()
    files, jpegs = (20, 20) if args.quick else (200, 200)
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        folder = Path(tmp) / "batch"
        folder.mkdir()
        wall, rate, burst = trio.run(batch_wall, folder, files)
        expected = files / rate
        print(f"## Batch pacing: {files} files to fake pixhost.to, recipe limits\n")
        print(
            "| files | rate (req/s) / burst | wall (s) | files ÷ rate (s)"
            " | (files - burst) ÷ rate (s) | wall ÷ (files ÷ rate) | wall ÷ ((files - burst)"
            " ÷ rate) | load |"
        )
        print("|---|---|---|---|---|---|---|---|")
        floor = (files - burst) / rate
        print(
            f"| {files} | {rate:g} / {burst} | {wall:.2f} | {expected:.2f} |"
            f" {floor:.2f} | {wall / expected:.3f} | {wall / floor:.3f} | {load()} |"
        )
        pics = Path(tmp) / "jpegs"
        pics.mkdir()
        out = Path(tmp) / "ref"
        out.mkdir()
        sources = make_jpegs(pics, jpegs)
        refs, ours = [], []
        for _ in range(args.repeat):  # alternate, keep the medians
            refs.append(pillow_loop(sources, out))
            ours.append(trio.run(hathd_thumbnails, sources))
        ref, mine = statistics.median(refs), statistics.median(ours)
        print(
            f"\n## Thumbnails: {jpegs} JPEGs of {FOUR_MP[0]}x{FOUR_MP[1]} → {THUMB.size} px,"
            f" median of {args.repeat} alternating rounds, {os.cpu_count()} CPUs\n"
        )
        print("| Pillow loop thumbs/s | hathd thumbs/s | hathd ÷ Pillow | load |")
        print("|---|---|---|---|")
        print(f"| {jpegs / ref:.1f} | {jpegs / mine:.1f} | {ref / mine:.2f} | {load()} |")
    quick = " --quick" if args.quick else ""
    print(f"\nCommand: .venv/bin/python bench/bench_recipes_batch.py{quick}")


if __name__ == "__main__":
    main()
