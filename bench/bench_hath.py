"""Benchmarks of the H@H image node; results go to docs/perf-hath.md.

1. ``/h/`` throughput, H@H-shaped: a new TLS connection per request (``Connection: close``),
   keystamped URLs, files from 50 KB to 2 MB (log-uniform), against the hathd node (own
   process) and nginx (one worker) serving the same cache directory with the same certificate,
   same run: req/s, MB/s, p50/p99 and hathd/nginx ratios (load: ``wrk``).
2. Start-up with N indexed files (1 000 000; 100 000 with ``--quick``): ``Cache.open`` time
   against a reference that reads every index row (what a full in-memory index would cost).
3. Time to first byte of a proxied miss vs fetching the same upstream file directly.

Run: ``.venv/bin/python bench/bench_hath.py [--quick]`` (needs ``nginx`` and ``wrk``).
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

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fakes.hath_control import FakeControlServer, open_fake_control  # noqa: E402
from hathd.hath import protocol as p  # noqa: E402
from hathd.hath.cache import Cache  # noqa: E402
from hathd.store import open_store  # noqa: E402

CREDS = p.Credentials(424242, "BenchKey0123456789ab")


def make_files(cache: Path, count: int, rng: random.Random) -> list[str]:
    """Write ``count`` random files (50 KB..2 MB, log-uniform) into ``cache``; return fileids."""
    fids = []
    for _ in range(count):
        size = int(math.exp(rng.uniform(math.log(50_000), math.log(2_000_000))))
        data = rng.randbytes(size)
        fid = f"{hashlib.sha1(data).hexdigest()}-{size}-1280-1800-jpg"
        path = cache / fid[:2] / fid[2:4] / fid
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        fids.append(fid)
    return fids


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
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", "-s", str(lua), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(_find(r"Requests/sec:\s+([\d.]+)", out))
    mbs = _mb(_find(r"Transfer/sec:\s+(\S+)", out))
    p50 = _ms(_find(r"50%\s+(\S+)", out))
    p99 = _ms(_find(r"99%\s+(\S+)", out))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if socket_errors:
        print("wrk socket errors:", socket_errors.group(1), flush=True)
    return {
        "rps": rps,
        "mbs": mbs,
        "p50": p50,
        "p99": p99,
        "non2xx": float(errors.group(1)) if errors else 0.0,
    }


async def start_node(fake: FakeControlServer, state: Path) -> tuple[trio.Process, int]:
    """Start ``bench/hath_node.py`` against ``fake``; returns the process and its HTTPS port
    (read from the ``port N`` line it prints once listening)."""
    node = await trio.lowlevel.open_process(
        [
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
        ],
        stdout=subprocess.PIPE,
    )
    assert node.stdout is not None
    line = b""
    with trio.fail_after(60):
        while not line.endswith(b"\n"):
            line += await node.stdout.receive_some(1)
    return node, int(line.split()[1])


async def bench_throughput(work: Path, quick: bool) -> dict[str, dict[str, float]]:
    rng = random.Random(1)
    state = work / "node"
    cache = state / "cache"
    fids = make_files(cache, 40 if quick else 200, rng)
    results: dict[str, dict[str, float]] = {}
    async with open_fake_control(CREDS) as fake:
        pem = work / "cert.pem"
        fake.leaf.private_key_and_cert_chain_pem.write_to_path(str(pem))
        node, node_port = await start_node(fake, state)
        nginx_port = free_port()
        conf = work / "nginx.conf"
        user = "user root;" if os.geteuid() == 0 else ""
        conf.write_text(NGINX_CONF.format(user=user, d=work, port=nginx_port, pem=pem, cache=cache))
        nginx = await trio.lowlevel.open_process(["nginx", "-c", str(conf), "-p", str(work)])
        try:
            paths_file = work / "paths.txt"
            # keystamps stay valid for 900 s: generate them right before the runs
            paths_file.write_text("\n".join(fake.keystamped_path(f) for f in fids) + "\n")
            lua = work / "paths.lua"
            lua.write_text(WRK_LUA.format(paths=paths_file, seed=7))
            async with httpx.AsyncClient(verify=fake.ca_context()) as c:
                for port in (node_port, nginx_port):
                    with trio.fail_after(30):
                        while True:
                            try:
                                r = await c.get(
                                    f"https://127.0.0.1:{port}{fake.keystamped_path(fids[0])}"
                                )
                                break
                            except httpx.ConnectError:
                                await trio.sleep(0.1)
                    assert r.status_code == 200
                    assert hashlib.sha1(r.content).hexdigest() == fids[0][:40]
            duration = 4 if quick else 10
            conns = 16 if quick else 32
            for rep in range(1 if quick else 2):
                for name, port in (("hathd", node_port), ("nginx", nginx_port)):
                    res = await trio.to_thread.run_sync(
                        run_wrk, f"https://127.0.0.1:{port}", lua, duration, conns
                    )
                    key = f"{name}#{rep}"
                    results[key] = res
                    print(key, res, flush=True)
        finally:
            nginx.terminate()
            node.terminate()
            with trio.move_on_after(10):
                await nginx.wait()
                await node.wait()
        results["_ttfb"] = await bench_ttfb(fake, quick=quick, work=work)
    return results


async def bench_ttfb(fake: FakeControlServer, quick: bool, work: Path) -> dict[str, float]:
    """Median TTFB (ms) of a proxied miss vs a direct upstream GET of the same file size."""
    state = work / "node2"
    node, port = await start_node(fake, state)
    direct: list[float] = []
    proxied: list[float] = []
    hit: list[float] = []
    try:
        async with httpx.AsyncClient(verify=fake.ca_context(), timeout=30) as c:
            for _ in range(5 if quick else 20):
                a = fake.add_file(os.urandom(500_000))
                b = fake.add_file(os.urandom(500_000))
                for target, url in (
                    (direct, f"{fake.url}/image/{a}"),
                    (proxied, f"https://127.0.0.1:{port}{fake.keystamped_path(b)}"),
                    (hit, f"https://127.0.0.1:{port}{fake.keystamped_path(b)}"),
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
    }


def _read_all_rows(conn: sqlite3.Connection) -> int:
    cur = conn.cursor()
    cur.row_factory = None
    cur.execute("SELECT fileid, size, mtime FROM hath_files")
    index = {r[0]: (r[1], r[2]) for r in cur}
    return len(index)


async def bench_startup(work: Path, n: int) -> dict[str, float]:
    db = work / "startup.sqlite3"
    async with open_store(db) as store:
        await Cache.open(store, work / "startup-cache")
    rng = random.Random(2)
    conn = sqlite3.connect(db)
    now = int(time.time())
    rows = []
    for _ in range(n):
        h = f"{rng.getrandbits(160):040x}"
        size = rng.randrange(50_000, 2_000_000)
        rows.append((f"{h}-{size}-1280-1800-jpg", h[:4], size, now - rng.randrange(10**7)))
    began = time.perf_counter()
    with conn:
        conn.executemany("INSERT INTO hath_files VALUES (?,?,?,?)", rows)
        conn.execute(
            "INSERT INTO hath_ranges SELECT srange, count(*), sum(size), min(mtime) "
            "FROM hath_files GROUP BY srange"
        )
    build = time.perf_counter() - began
    conn.close()
    del rows
    timings_open: list[float] = []
    timings_ref: list[float] = []
    for _ in range(3):
        async with open_store(db) as store:
            t0 = time.perf_counter()
            cache = await Cache.open(store, work / "startup-cache")
            timings_open.append(time.perf_counter() - t0)
            assert cache.count == n
            t0 = time.perf_counter()
            count = await store.read(_read_all_rows)
            timings_ref.append(time.perf_counter() - t0)
            assert count == n
    return {"files": n, "build_s": build, "open_s": min(timings_open), "ref_s": min(timings_ref)}


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-hath-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        startup = await bench_startup(work, 100_000 if args.quick else 1_000_000)
        print("startup", startup, flush=True)
        results = await bench_throughput(work, args.quick)
        ttfb = results.pop("_ttfb")
    report(results, startup, ttfb, args.quick)


def report(
    results: dict[str, dict[str, float]],
    startup: dict[str, float],
    ttfb: dict[str, float],
    quick: bool,
) -> None:
    print("\n## /h/ throughput, new TLS connection per request\n")
    print("| run | server | req/s | MB/s | p50 ms | p99 ms | non-2xx |")
    print("|---|---|---|---|---|---|---|")
    for key, r in results.items():
        name, rep = key.split("#")
        print(
            f"| {rep} | {name} | {r['rps']:.0f} | {r['mbs']:.1f} | {r['p50']:.1f} | "
            f"{r['p99']:.1f} | {r['non2xx']:.0f} |"
        )
    reps = {k.split("#")[1] for k in results}
    for rep in sorted(reps):
        h, n = results[f"hathd#{rep}"], results[f"nginx#{rep}"]
        print(
            f"\nrun {rep}: hathd/nginx req/s {h['rps'] / n['rps']:.2f}, MB/s "
            f"{h['mbs'] / n['mbs']:.2f}, p50 {h['p50'] / n['p50']:.2f}, "
            f"p99 {h['p99'] / n['p99']:.2f}"
        )
    print(f"\n## start-up with {startup['files']:.0f} indexed files\n")
    print(
        f"Cache.open {startup['open_s'] * 1000:.1f} ms; reference (read every index row) "
        f"{startup['ref_s'] * 1000:.1f} ms; ratio {startup['open_s'] / startup['ref_s']:.4f}"
    )
    print("\n## TTFB of a proxied miss (500 KB)\n")
    print(
        f"direct upstream (plain HTTP) {ttfb['direct_ms']:.1f} ms; proxied miss (TLS) "
        f"{ttfb['proxied_ms']:.1f} ms; the same file as a hit (TLS) {ttfb['hit_ms']:.1f} ms; "
        f"extra over direct {ttfb['proxied_ms'] - ttfb['direct_ms']:.1f} ms "
        f"(ratio {ttfb['proxied_ms'] / ttfb['direct_ms']:.2f}); extra over a hit "
        f"{ttfb['proxied_ms'] - ttfb['hit_ms']:.1f} ms"
    )
    if quick:
        print("\n(--quick: shorter runs, fewer files)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (CI smoke)")
    trio.run(main, parser.parse_args())
