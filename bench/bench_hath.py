"""Benchmarks of the H@H image node; results go to docs/perf-hath.md.

1. ``/h/`` throughput, H@H-shaped: a new TLS connection per request (``Connection: close``),
   keystamped URLs, two loads — 60 KB files and a 50 KB–2 MB mix (log-uniform) — against the
   hathd node (own process, :file:`bench/hath_node.py`) and nginx (one worker) serving the same
   cache directory with the same certificate, same run: req/s, MB/s, p50/p99, non-2xx and
   socket errors per round; medians over the rounds (3; 1 with ``--quick``) and the
   hathd/nginx ratios of the medians (load: ``wrk -t1 -c32``).
2. Start-up with N indexed files (1 000 000; 100 000 with ``--quick``) of H@H sizes
   (50 KB–2 MB): ``Cache.open`` time against a reference that reads every index row (what a
   full in-memory index would cost). The throughput node then starts on that same index with
   a disk limit one byte under its size (a full cache: the pruner runs at start), so its
   resident size (RSS, summed over the node's processes) is reported idle with N indexed files
   and at its peak under load.
3. Time to first byte of a proxied miss vs fetching the same upstream file directly, and the
   floor a miss cannot beat by protocol: that direct GET + an RPC round trip + a TLS hit.

Every figure is printed with the load average (``os.getloadavg()``) at the time it was taken.

Run: ``.venv/bin/python bench/bench_hath.py [--quick] [--serving-processes N]`` (needs
``nginx`` and ``wrk``).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fakes.hath_control import FakeControlServer, open_fake_control  # noqa: E402
from hathd.hath import protocol as p  # noqa: E402
from hathd.hath.cache import Cache  # noqa: E402
from hathd.store import open_store  # noqa: E402

CREDS = p.Credentials(424242, "BenchKey0123456789ab")


LOADS = ("60k", "mix")
"""The two loads: every file 60,000 bytes, and 50 KB–2 MB log-uniform (issue 16's table)."""


def load_avg() -> str:
    """The 1/5/15-minute load averages, printed with every figure."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}/{fifteen:.2f}"


def make_files(cache: Path, count: int, rng: random.Random, load: str) -> list[str]:
    """Write ``count`` random files into ``cache`` (60,000 bytes each for ``60k``, 50 KB..2 MB
    log-uniform for ``mix``); return their fileids."""
    fids = []
    for _ in range(count):
        if load == "60k":
            size = 60_000
        else:
            size = int(math.exp(rng.uniform(math.log(50_000), math.log(2_000_000))))
        data = rng.randbytes(size)
        fid = f"{hashlib.sha1(data).hexdigest()}-{size}-1280-1800-jpg"
        path = cache / fid[:2] / fid[2:4] / fid
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        fids.append(fid)
    return fids


def _pids(pid: int) -> list[int]:
    """``pid`` and all its live descendants (Linux ``/proc``)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def _proc_kb(pid: int, name: str, field: str) -> int:
    try:
        text = Path(f"/proc/{pid}/{name}").read_text()
    except OSError:
        return 0
    m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) * 1024 if m else 0


def tree_rss(pid: int) -> int:
    """Resident size in bytes of ``pid`` and its descendants, summed (pages shared between
    the processes count once per process)."""
    return sum(_proc_kb(x, "status", "VmRSS") for x in _pids(pid))


def tree_pss(pid: int) -> int:
    """Proportional set size in bytes of ``pid`` and its descendants: shared pages are split
    between the processes that map them, so the sum is the tree's real footprint."""
    return sum(_proc_kb(x, "smaps_rollup", "Pss") for x in _pids(pid))


NGINX_CONF = """
worker_processes 1;
daemon off;
{user}
pid {d}/nginx.pid;
error_log {d}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/ngx-body;
  proxy_temp_path {d}/ngx-proxy;
  fastcgi_temp_path {d}/ngx-fcgi;
  uwsgi_temp_path {d}/ngx-uwsgi;
  scgi_temp_path {d}/ngx-scgi;
  keepalive_timeout 0;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {pem};
    ssl_certificate_key {pem};
    root {cache};
    location /h/ {{
      rewrite "^/h/(([0-9a-f]{{2}})([0-9a-f]{{2}})[^/]*)/.*$" /$2/$3/$1 break;
      default_type image/jpeg;
    }}
  }}
}}
"""

WRK_LUA = """
local paths = {{}}
for line in io.lines("{paths}") do paths[#paths + 1] = line end
math.randomseed({seed})
request = function()
  return wrk.format("GET", paths[math.random(#paths)], {{["Connection"] = "close"}})
end
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    assert m, value
    factor = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]
    return float(m.group(1)) * factor


def _mb(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(B|KB|MB|GB)", value)
    assert m, value
    factor = {"B": 1e-6, "KB": 1.024e-3, "MB": 1.048576, "GB": 1073.741824}[m.group(2)]
    return float(m.group(1)) * factor


def _find(pattern: str, text: str) -> str:
    m = re.search(pattern, text)
    if m is None:
        raise RuntimeError(f"wrk output lacks {pattern!r}:\n{text}")
    return m.group(1)


def run_wrk(url: str, lua: Path, duration: int, conns: int) -> dict[str, float]:
    done = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", "-s", str(lua), url],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr}{done.stdout}")
    out = done.stdout
    rps = float(_find(r"Requests/sec:\s+([\d.]+)", out))
    requests = float(_find(r"(\d+) requests in", out))
    mbs = _mb(_find(r"Transfer/sec:\s+(\S+)", out))
    p50 = _ms(_find(r"(?m)^\s+50%\s+(\S+)", out))
    p99 = _ms(_find(r"(?m)^\s+99%\s+(\S+)", out))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    sock_err = 0.0
    if socket_errors:
        sock_err = float(sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1))))
    return {
        "rps": rps,
        "mbs": mbs,
        "p50": p50,
        "p99": p99,
        "non2xx": float(errors.group(1)) if errors else 0.0,
        "sockerr": sock_err,
        "requests": requests,
    }


async def start_node(
    fake: FakeControlServer, state: Path, serving_processes: int | None = None
) -> tuple[trio.Process, int]:
    """Start ``bench/hath_node.py`` against ``fake``; returns the process and its HTTPS port
    (read from the ``port N`` line it prints once listening)."""
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "hath_node.py"),
        "--rpc",
        fake.rpc_host,
        "--state",
        str(state),
        "--cid",
        str(CREDS.client_id),
        "--key",
        CREDS.client_key,
    ]
    if serving_processes is not None:
        cmd += ["--serving-processes", str(serving_processes)]
    node = await trio.lowlevel.open_process(cmd, stdout=subprocess.PIPE)
    assert node.stdout is not None
    line = b""
    with trio.fail_after(120):
        while not line.endswith(b"\n"):
            line += await node.stdout.receive_some(1)
    return node, int(line.split()[1])


async def _wait_ready(c: httpx.AsyncClient, port: int, path: str, fid: str) -> None:
    with trio.fail_after(30):
        while True:
            try:
                r = await c.get(f"https://127.0.0.1:{port}{path}")
                break
            except httpx.ConnectError:
                await trio.sleep(0.1)
    assert r.status_code == 200, r.status_code
    assert hashlib.sha1(r.content).hexdigest() == fid[:40]


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its live descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return total


async def _sample_rss(pid: int, peak: list[int]) -> None:
    """Keep ``peak`` = [highest summed RSS, highest PSS] of the node's processes."""
    while True:
        peak[0] = max(peak[0], tree_rss(pid))
        peak[1] = max(peak[1], tree_pss(pid))
        await trio.sleep(0.25)


async def bench_throughput(
    work: Path, quick: bool, rounds: int, serving_processes: int | None, disk_limit: int
) -> dict[str, Any]:
    """Both loads, ``rounds`` rounds each of hathd then nginx; per-round rows, idle and peak
    RSS of the node, and the TTFB figures (key ``_ttfb``). The node's disk limit is
    ``disk_limit`` bytes (its index is full: it prunes at start)."""
    rng = random.Random(1)
    state = work / "node"
    cache = state / "cache"
    fids = {
        "60k": make_files(cache, 40 if quick else 100, rng, "60k"),
        "mix": make_files(cache, 40 if quick else 200, rng, "mix"),
    }
    rows: list[dict[str, object]] = []
    out: dict[str, Any] = {"rows": rows}
    async with open_fake_control(CREDS) as fake:
        fake.settings["disklimit_bytes"] = str(disk_limit)
        pem = work / "cert.pem"
        fake.leaf.private_key_and_cert_chain_pem.write_to_path(str(pem))
        node, node_port = await start_node(fake, state, serving_processes)
        nginx_port = free_port()
        conf = work / "nginx.conf"
        user = "user root;" if os.geteuid() == 0 else ""
        conf.write_text(NGINX_CONF.format(user=user, d=work, port=nginx_port, pem=pem, cache=cache))
        nginx = await trio.lowlevel.open_process(["nginx", "-c", str(conf), "-p", str(work)])
        try:
            await trio.sleep(2)
            out["rss_idle"] = tree_rss(node.pid)
            out["pss_idle"] = tree_pss(node.pid)
            out["rss_idle_load"] = load_avg()
            print(
                f"node RSS idle {out['rss_idle'] / 2**20:.1f} MB, PSS "
                f"{out['pss_idle'] / 2**20:.1f} MB ({load_avg()})",
                flush=True,
            )
            luas = {}
            for load in LOADS:
                paths_file = work / f"paths-{load}.txt"
                # keystamps stay valid for 900 s: generate them right before the runs
                paths_file.write_text("\n".join(fake.keystamped_path(f) for f in fids[load]) + "\n")
                luas[load] = work / f"paths-{load}.lua"
                luas[load].write_text(WRK_LUA.format(paths=paths_file, seed=7))
            async with httpx.AsyncClient(verify=fake.ca_context()) as c:
                for port in (node_port, nginx_port):
                    fid = fids["mix"][0]
                    await _wait_ready(c, port, fake.keystamped_path(fid), fid)
            duration = 4 if quick else 10
            conns = 16 if quick else 32
            peak = [0, 0]
            for load in LOADS:
                for rnd in range(rounds):
                    for name, port in (("hathd", node_port), ("nginx", nginx_port)):
                        pid = node.pid if name == "hathd" else nginx.pid
                        cpu0 = tree_cpu(pid)
                        async with trio.open_nursery() as sampler:
                            if name == "hathd":
                                sampler.start_soon(_sample_rss, node.pid, peak)
                            res = await trio.to_thread.run_sync(
                                run_wrk, f"https://127.0.0.1:{port}", luas[load], duration, conns
                            )
                            sampler.cancel_scope.cancel()
                        cpu = tree_cpu(pid) - cpu0
                        row: dict[str, object] = {
                            "load": load,
                            "round": rnd,
                            "server": name,
                            "la": load_avg(),
                            "cpu_us": cpu / max(res["requests"], 1.0) * 1e6,
                            **res,
                        }
                        rows.append(row)
                        print(row, flush=True)
            out["rss_peak"], out["pss_peak"] = peak
            out["rss_peak_load"] = load_avg()
            print(
                f"node RSS peak under load {peak[0] / 2**20:.1f} MB, PSS "
                f"{peak[1] / 2**20:.1f} MB ({load_avg()})",
                flush=True,
            )
        finally:
            nginx.terminate()
            node.terminate()
            with trio.move_on_after(10):
                await nginx.wait()
                await node.wait()
        out["_ttfb"] = await bench_ttfb(fake, quick=quick, work=work)
    return out


async def bench_ttfb(fake: FakeControlServer, quick: bool, work: Path) -> dict[str, Any]:
    """Median TTFB (ms) of a proxied miss vs a direct upstream GET of the same file size, and
    of what a miss must do on top of that by protocol: an RPC round trip (``server_stat``,
    plain HTTP with ``Connection: close`` as the node sends ``srfetch``) and the client's TLS
    connection (the same file as a hit). ``floor_ms`` = direct + RPC + hit."""
    state = work / "node2"
    node, port = await start_node(fake, state)
    direct: list[float] = []
    proxied: list[float] = []
    hit: list[float] = []
    rpc: list[float] = []
    rpc_url = p.server_stat_url(fake.rpc_host)
    try:
        async with httpx.AsyncClient(verify=fake.ca_context(), timeout=30) as c:
            for _ in range(5 if quick else 20):
                a = fake.add_file(os.urandom(500_000))
                b = fake.add_file(os.urandom(500_000))
                for target, url in (
                    (direct, f"{fake.url}/image/{a}"),
                    (proxied, f"https://127.0.0.1:{port}{fake.keystamped_path(b)}"),
                    (hit, f"https://127.0.0.1:{port}{fake.keystamped_path(b)}"),
                    (rpc, rpc_url),
                ):
                    began = time.perf_counter()
                    first: float | None = None
                    async with c.stream("GET", url, headers={"Connection": "close"}) as r:
                        async for _chunk in r.aiter_raw():
                            if first is None:
                                first = (time.perf_counter() - began) * 1000
                    assert r.status_code == 200
                    assert first is not None
                    target.append(first)
    finally:
        node.terminate()
        with trio.move_on_after(10):
            await node.wait()
    return {
        "direct_ms": statistics.median(direct),
        "proxied_ms": statistics.median(proxied),
        "hit_ms": statistics.median(hit),
        "rpc_ms": statistics.median(rpc),
        "floor_ms": statistics.median(d + r + h for d, r, h in zip(direct, rpc, hit, strict=True)),
        "la": load_avg(),
    }


def _read_all_rows(conn: sqlite3.Connection) -> int:
    cur = conn.cursor()
    cur.row_factory = None
    cur.execute("SELECT fileid, size, mtime FROM hath_files")
    index = {r[0]: (r[1], r[2]) for r in cur}
    return len(index)


async def bench_startup(work: Path, n: int) -> dict[str, float]:
    """Build an index of ``n`` files in the throughput node's store and time ``Cache.open``."""
    db = work / "node" / "hathd.sqlite3"
    db.parent.mkdir(parents=True, exist_ok=True)
    async with open_store(db) as store:
        await Cache.open(store, work / "node" / "cache")
    rng = random.Random(2)
    conn = sqlite3.connect(db)
    now = int(time.time())
    rows = []
    for _ in range(n):
        h = f"{rng.getrandbits(160):040x}"
        size = rng.randrange(50_000, 2_000_000)  # H@H-sized: the index holds ~1 TB
        rows.append((f"{h}-{size}-1280-1800-jpg", h[:4], size, now - rng.randrange(10**7)))
    began = time.perf_counter()
    with conn:
        conn.executemany("INSERT INTO hath_files VALUES (?,?,?,?)", rows)
        conn.execute(
            "INSERT INTO hath_ranges SELECT srange, count(*), sum(size), min(mtime) "
            "FROM hath_files GROUP BY srange"
        )
    build = time.perf_counter() - began
    total = conn.execute("SELECT sum(size) FROM hath_files").fetchone()[0]
    conn.close()
    del rows
    timings_open: list[float] = []
    timings_ref: list[float] = []
    for _ in range(3):
        async with open_store(db) as store:
            t0 = time.perf_counter()
            cache = await Cache.open(store, work / "node" / "cache")
            timings_open.append(time.perf_counter() - t0)
            assert cache.count == n
            t0 = time.perf_counter()
            count = await store.read(_read_all_rows)
            timings_ref.append(time.perf_counter() - t0)
            assert count == n
    return {
        "files": n,
        "build_s": build,
        "open_s": min(timings_open),
        "ref_s": min(timings_ref),
        # the disk limit the node gets: one byte under the index's size, so the cache is full
        # and the node's pruner runs on the whole index at start (~100 MiB evicted)
        "disk_limit": total + n * 4096 // 2 - 1,
    }


async def main(args: argparse.Namespace) -> None:
    rounds = args.rounds or (1 if args.quick else 3)
    with tempfile.TemporaryDirectory(prefix="bench-hath-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        startup = await bench_startup(work, 100_000 if args.quick else 1_000_000)
        print("startup", startup, load_avg(), flush=True)
        results = await bench_throughput(
            work, args.quick, rounds, args.serving_processes, int(startup["disk_limit"])
        )
    report(results, startup, args.quick)


def _median(rows: list[dict[str, Any]], load: str, server: str, key: str) -> float:
    values = [float(r[key]) for r in rows if r["load"] == load and r["server"] == server]
    return statistics.median(values)


def _median_ratio(rows: list[dict[str, Any]], load: str, key: str) -> float:
    """Median over the rounds of hathd's ``key`` divided by nginx's in the same round."""
    by_round: dict[int, dict[str, float]] = {}
    for r in rows:
        if r["load"] == load:
            by_round.setdefault(int(r["round"]), {})[str(r["server"])] = float(r[key])
    return statistics.median(v["hathd"] / v["nginx"] for v in by_round.values() if v["nginx"])


def report(results: dict[str, Any], startup: dict[str, float], quick: bool) -> None:
    rows: list[dict[str, Any]] = results["rows"]
    print("\n## /h/ throughput, new TLS connection per request (wrk -t1, Connection: close)\n")
    print(
        "| load | round | server | req/s | MB/s | p50 ms | p99 ms | CPU µs/req | non-2xx "
        "| sock err | load avg |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['load']} | {r['round']} | {r['server']} | {r['rps']:.0f} | {r['mbs']:.1f} | "
            f"{r['p50']:.1f} | {r['p99']:.1f} | {r['cpu_us']:.0f} | {r['non2xx']:.0f} | "
            f"{r['sockerr']:.0f} | "
            f"{r['la']} |"
        )
    print("\n### medians over the rounds\n")
    print(
        "Ratios are hathd / nginx within each round (the two ran back to back), then the "
        "median over the rounds; the absolute columns are medians too.\n"
    )
    print("| load | hathd req/s | nginx req/s | req/s | MB/s | p50 | p99 | CPU/req | target |")
    print("|---|---|---|---|---|---|---|---|---|")
    keys = ("rps", "mbs", "p50", "p99", "cpu_us")
    for load in LOADS:
        h = {k: _median(rows, load, "hathd", k) for k in keys}
        n = {k: _median(rows, load, "nginx", k) for k in keys}
        q = {k: _median_ratio(rows, load, k) for k in keys}
        target = "req/s ≥ 0.30" if load == "60k" else "req/s, MB/s ≥ 0.50"
        print(
            f"| {load} | {h['rps']:.0f} | {n['rps']:.0f} | **{q['rps']:.2f}** | "
            f"{q['mbs']:.2f} | {q['p50']:.2f} | {q['p99']:.2f} "
            f"| {q['cpu_us']:.2f} | {target}; p99 ≤ 2.00 |"
        )
    print("\n## memory of the node (RSS and PSS summed over its processes)\n")
    print(
        f"idle with {startup['files']:.0f} indexed files: RSS "
        f"{results['rss_idle'] / 2**20:.1f} MB, PSS {results['pss_idle'] / 2**20:.1f} MB "
        f"({results['rss_idle_load']}; target ≤ 60 MB)"
    )
    print(
        f"peak under the {16 if quick else 32}-connection load: RSS "
        f"{results['rss_peak'] / 2**20:.1f} MB, PSS {results['pss_peak'] / 2**20:.1f} MB "
        f"({results['rss_peak_load']}; target ≤ 150 MB)"
    )
    print(f"\n## start-up with {startup['files']:.0f} indexed files\n")
    print(
        f"Cache.open {startup['open_s'] * 1000:.1f} ms; reference (read every index row) "
        f"{startup['ref_s'] * 1000:.1f} ms; ratio {startup['open_s'] / startup['ref_s']:.4f}"
    )
    ttfb: dict[str, Any] = results["_ttfb"]
    print("\n## TTFB of a proxied miss (500 KB)\n")
    print(
        f"direct upstream (plain HTTP) {ttfb['direct_ms']:.1f} ms; proxied miss (TLS) "
        f"{ttfb['proxied_ms']:.1f} ms; the same file as a hit (TLS) {ttfb['hit_ms']:.1f} ms; "
        f"extra over direct {ttfb['proxied_ms'] - ttfb['direct_ms']:.1f} ms "
        f"(ratio {ttfb['proxied_ms'] / ttfb['direct_ms']:.2f}; target ≤ 1.20); extra over a hit "
        f"{ttfb['proxied_ms'] - ttfb['hit_ms']:.1f} ms ({ttfb['la']})"
    )
    print(
        f"what a miss must do by protocol: RPC round trip {ttfb['rpc_ms']:.1f} ms + upstream "
        f"GET {ttfb['direct_ms']:.1f} ms + TLS hit {ttfb['hit_ms']:.1f} ms = floor "
        f"{ttfb['floor_ms']:.1f} ms; miss / floor {ttfb['proxied_ms'] / ttfb['floor_ms']:.2f}, "
        f"the node's own extra {ttfb['proxied_ms'] - ttfb['floor_ms']:.1f} ms ({ttfb['la']})"
    )
    if quick:
        print("\n(--quick: shorter runs, fewer files, one round)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (CI smoke)")
    parser.add_argument("--rounds", type=int, default=0, help="rounds per load (3; 1 quick)")
    parser.add_argument(
        "--serving-processes",
        type=int,
        default=None,
        help="the node's serving_processes setting (default: the config default)",
    )
    trio.run(main, parser.parse_args())
