"""Anime library scan speed against ``find -printf`` over the same generated tree.

Run: ``.venv/bin/python bench/bench_anime.py [--series 2000] [--files 50000] [--rounds 3]
[--quick]``

A tree of N series folders (``<Series> (<year>)/Season 0S/<Series> - S0SE0E - Title.mp4``, the
files spread evenly, each a few bytes; one ``key`` file per series) is generated in a temporary
folder. With the page cache warm (one untimed walk of each kind first), measured per round:

- reference: ``find ROOT -printf '%p %s\\n'``: one process; per folder ``openat`` +
  ``getdents64``, per entry one ``fstatat`` (for ``%s``) and one output line, read by this
  script through a pipe (process start included);
- "walk": :func:`hathd.anime.scan.scan_library` alone: per folder ``openat`` (relative to the
  root's descriptor, ``O_NOFOLLOW``) + ``getdents64`` (:func:`os.listdir` on the descriptor),
  one pattern pass over the folder's joined names (episode names and ``SxxEyy``), per entry one
  ``fstatat`` relative to its folder (size and type), the ``key`` files read and each folder's
  digest — the same system calls as find, plus the name parsing;
- "first scan": :meth:`hathd.anime.library.AnimeLibrary.scan` end to end into an empty
  library: the walk in a worker thread, a ``scan-progress`` event per folder, every folder
  matched to its series (key file) and every file recorded in SQLite through the store's
  writer thread (batched ``executemany``, one transaction per batch), durable when it returns;
- "rescan": the same scan again (the periodic case: the walk and the matching again, every
  series' file digest unchanged, so nothing is written).

Printed as a markdown table: files/s of each, and speed ratio = reference time / hathd time
(1.0 = as fast as find; the target is >= 0.5 for the scans); the CPU seconds of each (find's
from ``RUSAGE_CHILDREN``, hathd's this process's, all threads) and their ratio, which a loaded
machine moves far less than the wall-clock times; with the load average (1, 5, 15 min) at the
start and at the end. Figures on a loaded machine are smoke only.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from hathd.anime.config import AnimeConfig
from hathd.anime.fetch import ProviderFetcher
from hathd.anime.gate import DomainGate
from hathd.anime.library import AnimeLibrary
from hathd.anime.providers.aniworld import aniworld
from hathd.anime.scan import scan_library
from hathd.anime.store import AnimeStore
from hathd.events import EventBus
from hathd.store import open_store


def make_tree(root: Path, series: int, files: int) -> None:
    """``series`` folders holding ``files`` episode files in total."""
    per = max(1, files // series)
    for s in range(series):
        name = f"Series {s:05d}"
        folder = root / f"{name} (2020)"
        folder.mkdir()
        (folder / "key").write_text(f"aniworld.to series-{s:05d}\n")
        for i in range(per):
            season, ep = divmod(i, 24)
            sub = folder / f"Season {season + 1:02d}"
            sub.mkdir(exist_ok=True)
            (sub / f"{name} - S{season + 1:02d}E{ep + 1:02d} - Title {ep + 1}.mp4").write_bytes(
                b"\0" * 8
            )


CPU: dict[str, list[float]] = {"find": [], "walk": [], "first": [], "rescan": []}
"""CPU seconds (user + system) of each timed run: find's from ``RUSAGE_CHILDREN``, hathd's
this process's (all threads)."""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_find(root: Path) -> float:
    cpu = _children_cpu()
    t0 = time.perf_counter()
    out = subprocess.run(
        ["find", str(root), "-printf", "%p %s\\n"], check=True, stdout=subprocess.PIPE
    ).stdout
    elapsed = time.perf_counter() - t0
    CPU["find"].append(_children_cpu() - cpu)
    assert out
    return elapsed


def run_walk(root: Path) -> tuple[float, int]:
    cpu = time.process_time()
    t0 = time.perf_counter()
    n = sum(len(r.files) for r in scan_library(str(root)))
    elapsed = time.perf_counter() - t0
    CPU["walk"].append(time.process_time() - cpu)
    return elapsed, n


async def run_scan(root: Path, db_path: Path) -> tuple[float, float, int]:
    async with open_store(db_path) as store:
        db = AnimeStore(store)
        await db.migrate()
        fetcher = ProviderFetcher(DomainGate())
        lib = AnimeLibrary(
            config=AnimeConfig(),
            root=root,
            db=db,
            providers=[aniworld()],
            fetcher=fetcher,
            engine=None,
            bus=EventBus(),
        )
        cpu = time.process_time()
        t0 = time.perf_counter()
        summary = await lib.scan()
        first = time.perf_counter() - t0
        CPU["first"].append(time.process_time() - cpu)
        cpu = time.process_time()
        t0 = time.perf_counter()
        await lib.scan()
        again = time.perf_counter() - t0
        CPU["rescan"].append(time.process_time() - cpu)
        await fetcher.aclose()
        rows = await store.query(
            "SELECT count(*) AS n FROM anime_episodes WHERE file_path IS NOT NULL"
        )
        assert summary["matched"] == summary["folders"]
        return first, again, int(rows[0]["n"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small smoke run (100 / 2,500, 1)")
    args = parser.parse_args()
    if args.quick:
        args.series, args.files, args.rounds = 100, 2500, 1
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-anime-") as tmp:
        root = Path(tmp) / "library"
        root.mkdir()
        make_tree(root, args.series, args.files)
        run_find(root)
        run_walk(root)
        finds, walks, scans, rescans = [], [], [], []
        count = 0
        for r in range(args.rounds):
            finds.append(run_find(root))
            elapsed, count = run_walk(root)
            walks.append(elapsed)
            first, again, stored = trio.run(run_scan, root, Path(tmp) / f"db{r}.sqlite3")
            assert stored == count, (stored, count)
            scans.append(first)
            rescans.append(again)
        f, w, s, rs = (statistics.median(x) for x in (finds, walks, scans, rescans))
        load_end = os.getloadavg()
        print(f"{args.series} series, {count} episode files, {args.rounds} round(s), medians")
        print(
            "load average (1, 5, 15 min): "
            f"start {' '.join(f'{x:.2f}' for x in load_start)}, "
            f"end {' '.join(f'{x:.2f}' for x in load_end)}"
        )
        print()
        # the warm-up runs are not timed: drop their CPU figures
        del CPU["find"][0], CPU["walk"][0]
        cf, cw, cs, cr = (statistics.median(CPU[k]) for k in ("find", "walk", "first", "rescan"))
        print("| what | time (s) | files/s | speed ÷ find | CPU (s) | CPU of find ÷ CPU |")
        print("|---|---|---|---|---|---|")
        print(f"| find -printf (reference) | {f:.3f} | {count / f:,.0f} | 1.00 | {cf:.3f} | 1.00 |")
        for label, t, c in (
            ("walk (scan_library)", w, cw),
            ("first scan (empty library)", s, cs),
            ("rescan (nothing changed)", rs, cr),
        ):
            print(
                f"| {label} | {t:.3f} | {count / t:,.0f} | {f / t:.2f} | {c:.3f} | {cf / c:.2f} |"
            )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
