"""A serving process: one more :class:`~hathd.hath.server.ImageServer` on the node's port.

Started by :class:`hathd.hath.workers.ServingProcesses` as ``python -m hathd.hath.worker``
(docs/hath.md, "Serving processes"). It binds the node's port with ``SO_REUSEPORT``, so the
kernel hands it a share of the new connections, and answers ``/h/`` hits from the cache
directory itself: TLS, admission, keystamp and path checks, the hit rule and SHA-1
verification run here exactly as in the owner. Whatever needs the cache index or the control
server — misses (``srfetch``), ``/servercmd/``, ``/t/`` and every other route — is forwarded
over a unix socket to the owner, which answers it as if the client had connected to it, and
the response is relayed. A corrupt file is deleted by the owner, which owns the index, before
the request is forwarded (``DELETE`` on the same socket, waited for); touching an old file is
queued for the owner with the next report.

Pipes (JSON, one object per line):

- stdin, owner → worker: first the setup (``host``, ``port``, ``cache_root``, ``data_dir``,
  ``client_id``, ``client_key``, ``forward``: the owner's unix socket, ``share``: the number of
  processes the connection cap is split over), then state pushes ``{"seq", "policy",
  "throttle", "clock", "cert"}``, each acknowledged with ``{"ack": seq}``. End of file ends
  the process: the owner closes the pipe to stop it, and the kernel closes it when the owner
  dies in any way, SIGKILL included. (``PR_SET_PDEATHSIG`` is not used: it fires when the
  *thread* that forked exits, and Trio starts processes from its worker threads, which end
  after 10 s idle — measured: the serving process got SIGTERM seconds after start.)
- stdout, worker → owner: ``{"ready": port}`` once listening, then every
  :data:`REPORT_INTERVAL` seconds ``{"stats", "observe", "delete", "touch"}``.

The client key travels over the pipe, never on the command line.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio

from hathd.hath import protocol as p
from hathd.hath.limits import UploadThrottle
from hathd.hath.pruning import LruTable, needs_touch
from hathd.hath.server import ImageServer, ServerPolicy
from hathd.hath.tls import load_context
from hathd.hath.tlssock import TLSSocketStream

log = logging.getLogger("hathd.hath.worker")

REPORT_INTERVAL = 0.5
"""Seconds between reports to the owner (counters, metrics, delete and touch requests)."""
POLICY_FIELDS = (
    "rpc_ips",
    "own_host",
    "ip_origin_check",
    "flood_control",
    "local_exempt",
    "max_connections",
    "verify_on_serve",
    "request_timeout",
    "startup_only",
)
"""The :class:`ServerPolicy` fields the owner pushes."""


class WorkerCache:
    """The :class:`~hathd.hath.server.HitCache` of a serving process: reads the cache
    directory, keeps its own LRU marks (official ``markRecentlyAccessed``, §4.3), and queues
    deletes and touches for the owner."""

    def __init__(self, root: Path, forward_path: str) -> None:
        self.root = root
        self._root_text = os.fspath(root)
        self.forward_path = forward_path
        self.lru = LruTable()
        self._verify_cooldown_until = 0.0
        self.deletes: list[tuple[list[str], str]] = []
        self.touches: list[tuple[str, float]] = []

    def path_of(self, fid: p.FileId) -> Path:
        return self.root / fid.relpath

    def hit_path(self, fid: p.FileId) -> str:
        return f"{self._root_text}/{fid.relpath}"

    def stat_hit(self, fid: p.FileId) -> os.stat_result | None:
        try:
            st = os.stat(self.path_of(fid))
        except OSError:
            return None
        return st if st.st_size == fid.size else None

    def mark_accessed(self, fid: p.FileId, now: float) -> tuple[bool, bool]:
        index, bit = fid.lru_slot
        newly = self.lru.mark(index, bit)
        verify = False
        if newly and now >= self._verify_cooldown_until:
            self._verify_cooldown_until = now + 2.0
            verify = True
        return newly, verify

    async def delete(self, fileids: list[str], *, reason: str = "delete") -> int:
        """Have the owner delete the files (disk and index) and wait until it has, so that a
        request forwarded next finds them gone. Returns how many the owner removed. If the
        owner cannot be reached, the files are unlinked here and the index update is queued
        for the next report.
        """
        names = [str(f) for f in map(p.FileId.try_parse, fileids) if f is not None]
        if not names:
            return 0
        try:
            return await owner_delete(self.forward_path, names, reason)
        except (OSError, trio.BrokenResourceError, ValueError):
            pass
        paths = [self.root / p.FileId.parse(n).relpath for n in names]

        def unlink() -> int:
            gone = 0
            for path in paths:
                try:
                    path.unlink()
                    gone += 1
                except OSError:
                    pass
            return gone

        gone = await trio.to_thread.run_sync(unlink)
        self.deletes.append((names, reason))
        return gone

    async def touch_if_old(self, fid: p.FileId, mtime: float) -> None:
        if needs_touch(mtime, time.time()):
            self.touches.append((str(fid), mtime))
        await trio.lowlevel.checkpoint()


async def _connect(path: str) -> trio.SocketStream:
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await sock.connect(path)
    except OSError as exc:
        sock.close()
        raise trio.BrokenResourceError(f"owner unreachable: {exc}") from exc
    return trio.SocketStream(sock)


async def owner_delete(path: str, fileids: list[str], reason: str) -> int:
    """Ask the owner, over its unix socket, to delete ``fileids`` (a line
    ``DELETE <reason> <fileid>…``; the reply is ``OK <removed>``) and wait for it.

    :raises trio.BrokenResourceError: the owner cannot be reached.
    :raises ValueError: the reply is not ``OK <n>``.
    """
    async with await _connect(path) as owner:
        await owner.send_all(f"DELETE {reason} {' '.join(fileids)}\n".encode("ascii"))
        reply = b""
        while not reply.endswith(b"\n"):
            data = await owner.receive_some(100)
            if not data:
                break
            reply += data
    word, _, count = reply.decode("ascii", "replace").strip().partition(" ")
    if word != "OK":
        raise ValueError(f"owner refused the delete: {reply!r}")
    return int(count)


async def forward(
    path: str, stream: TLSSocketStream, raw_head: bytes, ip: str, metered: bool
) -> None:
    """Hand one request to the owner over its unix socket (a line ``<ip> <metered>``, then the
    request head) and relay the response to the client until the owner closes.

    :raises trio.BrokenResourceError: the owner cannot be reached or the client is gone.
    """
    async with await _connect(path) as owner:
        await owner.send_all(f"{ip} {int(metered)}\n".encode("ascii") + raw_head)
        while True:
            data = await owner.receive_some(256 * 1024)
            if not data:
                return
            await stream.send_all(data)


class Worker:
    """The serving process's state: its server, certificate and pipes."""

    def __init__(self, setup: dict[str, Any]) -> None:
        self.setup = setup
        self.share = max(1, int(setup.get("share", 1)))
        self.data_dir = Path(setup["data_dir"])
        self.creds = p.Credentials(int(setup["client_id"]), str(setup["client_key"]))
        self.cache = WorkerCache(Path(setup["cache_root"]), str(setup["forward"]))
        self.policy = ServerPolicy()
        self.throttle = UploadThrottle(0)
        self.clock = p.ServerClock()
        self.context = load_context(
            (self.data_dir / "hathcert.p12").read_bytes(), self.creds.client_key, self.data_dir
        )
        self.cert = setup.get("cert")
        self.server = ImageServer(
            creds=self.creds,
            clock=self.clock,
            cache=self.cache,
            proxy=None,
            tls_context=lambda: self.context.context,
            policy=self.policy,
            throttle=self.throttle,
            forward=partial(forward, str(setup["forward"])),
        )
        self.observed: list[tuple[str, float, int]] = []
        self.server.observe = lambda route, seconds, sent: self.observed.append(
            (route, round(seconds, 6), sent)
        )

    async def apply(self, state: dict[str, Any]) -> None:
        """Take a state push from the owner."""
        for name in POLICY_FIELDS:
            if name in state.get("policy", {}):
                value = state["policy"][name]
                if name == "rpc_ips":
                    value = set(value)
                elif name == "max_connections":
                    value = max(1, -(-int(value) // self.share))  # this process's share
                setattr(self.policy, name, value)
        if "throttle" in state:  # the upload cap is split like the connections
            rate = int(state["throttle"])
            self.throttle.set_rate(rate // self.share if rate else 0)
        if "clock" in state:
            self.clock.offset = int(state["clock"])
        if state.get("cert") is not None and state["cert"] != self.cert:
            data = await trio.to_thread.run_sync((self.data_dir / "hathcert.p12").read_bytes)
            self.context = await trio.to_thread.run_sync(
                load_context, data, self.creds.client_key, self.data_dir
            )
            self.cert = state["cert"]

    def report(self) -> dict[str, Any]:
        """Counters since start, and the metrics, deletes and touches since the last report."""
        stats = attrs.asdict(self.server.own_statistics())
        stats["statuses"] = {str(k): v for k, v in stats["statuses"].items()}
        msg = {
            "stats": stats,
            "observe": self.observed,
            "delete": self.cache.deletes,
            "touch": self.cache.touches,
        }
        self.observed, self.cache.deletes, self.cache.touches = [], [], []
        return msg


async def json_lines(stream: trio.abc.ReceiveStream) -> AsyncIterator[Any]:
    """The JSON objects of a pipe, one per line, until end of file (or a broken pipe).

    :raises json.JSONDecodeError: a line is not JSON (the peer is not what it should be).
    """
    buf = bytearray()
    while True:
        nl = buf.find(b"\n")
        if nl >= 0:
            line = bytes(buf[:nl])
            del buf[: nl + 1]
            yield json.loads(line)
            continue
        try:
            data = await stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        if not data:
            return
        buf += data


async def main() -> None:
    """Run one serving process on the pipes described in the module docstring."""
    stdin = trio.lowlevel.FdStream(os.dup(0))
    stdout = trio.lowlevel.FdStream(os.dup(1))
    lines = json_lines(stdin)
    setup = await anext(lines)
    worker = Worker(setup)
    await worker.apply(setup)

    lock = trio.Lock()  # reports and acknowledgements come from two tasks

    async def send(msg: dict[str, Any]) -> None:
        async with lock:
            await stdout.send_all(json.dumps(msg, separators=(",", ":")).encode() + b"\n")

    async def report_loop() -> None:
        while True:
            await trio.sleep(REPORT_INTERVAL)
            await send(worker.report())

    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            partial(worker.server.serve, str(setup["host"]), int(setup["port"]), reuse_port=True)
        )
        await send({"ready": port, "pid": os.getpid()})
        nursery.start_soon(report_loop)
        async for state in lines:
            await worker.apply(state)
            await send({"ack": state.get("seq", 0)})
        nursery.cancel_scope.cancel()  # the owner closed our stdin: it is gone or stopping


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        trio.run(main)
    except KeyboardInterrupt:
        pass
