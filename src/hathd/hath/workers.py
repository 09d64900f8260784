"""Serving processes (``hath.serving_processes`` > 1): the owner's side.

Why (docs/hath.md, "Serving processes"; docs/perf-hath.md): a Python process serves on one
core, and on the H@H load most of its time is TLS handshakes and encryption, which scale with
processes. The process that owns the cache index (the node: RPC, ``srfetch``, pruning, the
SQLite writer) stays the only one that writes the index or talks to the control server; the
others only read files. So:

- the owner's listener and each serving process's bind the same port with ``SO_REUSEPORT``;
  the kernel spreads new connections over them;
- a serving process answers ``/h/`` hits itself and forwards everything else (misses,
  ``/servercmd/``, ``/t/``, other paths) over a unix socket in a private (0700) temporary
  directory; :meth:`ServingProcesses._handle_forwarded` answers it with the owner's
  :meth:`ImageServer.serve_request <hathd.hath.server.ImageServer.serve_request>`, so it is
  checked and served exactly as a direct request (the client IP comes with it for the
  ``/servercmd/`` origin check);
- the owner pushes the server policy, the throttle, the clock offset and certificate changes
  to every serving process (:meth:`ServingProcesses.sync`, and every second), and sums their
  counters into its own :meth:`ImageServer.statistics
  <hathd.hath.server.ImageServer.statistics>` and its ``/metrics``;
- a serving process dies with the owner (the end of file on its
  stdin); one that dies is started again after a second.

Pipe protocol: :mod:`hathd.hath.worker`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from hathd.hath import protocol as p
from hathd.hath import wire
from hathd.hath.cache import Cache
from hathd.hath.limits import UploadThrottle
from hathd.hath.server import ImageServer, ServerPolicy, ServerStatistics
from hathd.hath.worker import POLICY_FIELDS, json_lines
from hathd.metrics import observe_hath_request

log = logging.getLogger(__name__)

RESTART_DELAY = 1.0
"""Seconds before a serving process that exited is started again."""
PUSH_INTERVAL = 1.0
"""Seconds between state pushes when nothing asked for one sooner."""
READY_TIMEOUT = 30.0
"""Seconds a new serving process has to load its certificate and listen."""


def _zero() -> ServerStatistics:
    return ServerStatistics(0, 0, 0, 0, 0, 0, {}, 0, 0)


@attrs.define
class _Peer:
    index: int
    process: trio.Process | None = None
    stdin: trio.abc.SendStream | None = None
    pid: int = 0
    acked: int = 0
    started: bool = False
    lock: trio.Lock = attrs.field(factory=trio.Lock)
    """Held while writing to ``stdin`` (pushes come from more than one task)."""
    stats: ServerStatistics = attrs.field(factory=_zero)


class ServingProcesses:
    """Runs ``count - 1`` serving processes next to the owner's ``server`` (see the module
    docstring). ``cert_id()`` names the certificate in use (changes on a swap)."""

    def __init__(
        self,
        count: int,
        server: ImageServer,
        cache: Cache,
        *,
        host: str,
        port: int,
        creds: p.Credentials,
        data_dir: Path,
        policy: ServerPolicy,
        throttle: UploadThrottle,
        clock: p.ServerClock,
        cert_id: Callable[[], str | None],
    ) -> None:
        self.count = count
        self.server = server
        self.cache = cache
        self.host = host
        self.port = port
        self.creds = creds
        self.data_dir = data_dir
        self.policy = policy
        self.throttle = throttle
        self.clock = clock
        self.cert_id = cert_id
        self.peers = [_Peer(i) for i in range(count - 1)]
        self.retired = _zero()
        """Counters of serving processes that have exited (kept in the sums)."""
        self.restarts = 0
        self._seq = 0
        self._forward_path = ""
        self._wake = trio.Event()
        self._acked = trio.Event()

    def pids(self) -> list[int]:
        """Process ids of the running serving processes."""
        return [peer.pid for peer in self.peers if peer.process is not None]

    def statistics(self) -> list[ServerStatistics]:
        """The serving processes' latest counters (plus those of exited ones)."""
        return [self.retired, *(peer.stats for peer in self.peers)]

    def _state(self) -> dict[str, Any]:
        policy = {name: getattr(self.policy, name) for name in POLICY_FIELDS}
        policy["rpc_ips"] = sorted(policy["rpc_ips"])
        return {
            "seq": self._seq,
            "policy": policy,
            "throttle": self.throttle.rate,
            "clock": self.clock.offset,
            "cert": self.cert_id(),
        }

    async def sync(self, timeout: float = 5.0) -> None:
        """Push the current state to every serving process and wait (at most ``timeout``
        seconds) until each has applied it."""
        self._seq += 1
        seq = self._seq
        await self._push_all()
        with trio.move_on_after(timeout):
            while True:
                self._acked = event = trio.Event()
                if all(peer.process is None or peer.acked >= seq for peer in self.peers):
                    break
                await event.wait()

    def push_soon(self) -> None:
        """Ask for a state push without waiting for it."""
        self._wake.set()

    async def _push_all(self) -> None:
        line = json.dumps(self._state()).encode() + b"\n"
        for peer in self.peers:
            async with peer.lock:
                if peer.stdin is None:
                    continue
                try:
                    await peer.stdin.send_all(line)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass  # it is exiting; the supervisor starts it again

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the serving processes and the forward socket; report once all listen; run
        until cancelled (the processes are stopped then).

        :raises OSError: the forward socket cannot be created.
        """
        tmp = tempfile.mkdtemp(prefix="hathd-serve-")  # 0700: only this user may forward
        self._forward_path = os.path.join(tmp, "forward")
        listener_sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            await listener_sock.bind(self._forward_path)
            listener_sock.listen(512)
            self.server.peer_statistics = self.statistics
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    trio.serve_listeners,
                    self._handle_forwarded,
                    [trio.SocketListener(listener_sock)],
                )
                for peer in self.peers:
                    await nursery.start(self._supervise, peer)
                nursery.start_soon(self._push_loop)
                task_status.started()
        finally:
            listener_sock.close()
            shutil.rmtree(tmp, ignore_errors=True)

    async def _push_loop(self) -> None:
        while True:
            with trio.move_on_after(PUSH_INTERVAL):
                await self._wake.wait()
            self._wake = trio.Event()
            await self._push_all()

    async def _supervise(
        self, peer: _Peer, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        while True:
            try:
                await self._run_one(peer, task_status)
            except (OSError, trio.BrokenResourceError, ValueError) as exc:
                if not peer.started:
                    raise  # the first start failed: the node cannot run as configured
                log.warning("serving process %d failed: %s", peer.index, exc)
            self.retired = self.retired.plus(attrs.evolve(peer.stats, open_connections=0))
            peer.stats = _zero()
            self.restarts += 1
            await trio.sleep(RESTART_DELAY)

    async def _run_one(self, peer: _Peer, task_status: trio.TaskStatus[None]) -> None:
        setup = {
            **self._state(),
            "host": self.host,
            "port": self.port,
            "cache_root": str(self.cache.root),
            "data_dir": str(self.data_dir),
            "client_id": self.creds.client_id,
            "client_key": self.creds.client_key,
            "forward": self._forward_path,
            "share": self.count,
        }
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "hathd.hath.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            async with peer.lock:
                await process.stdin.send_all(json.dumps(setup).encode() + b"\n")
                peer.process, peer.stdin, peer.pid = process, process.stdin, process.pid
            lines = json_lines(process.stdout)
            with trio.fail_after(READY_TIMEOUT):
                first = await anext(lines, None)
            if first is None or "ready" not in first:
                raise OSError(f"serving process {peer.index} did not start")
            if not peer.started:
                peer.started = True
                task_status.started()
            async for msg in lines:
                await self._take(peer, msg)
            code = await process.wait()
            log.warning("serving process %d (pid %d) exited with %s", peer.index, peer.pid, code)
        finally:
            peer.process = peer.stdin = None
            with trio.CancelScope(shield=True):
                async with peer.lock:
                    await process.stdin.aclose()  # end of file: the process leaves by itself
                with trio.move_on_after(2):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()

    async def _take(self, peer: _Peer, msg: dict[str, Any]) -> None:
        if "ack" in msg:
            peer.acked = int(msg["ack"])
            self._acked.set()
            return
        if "stats" in msg:
            stats = dict(msg["stats"])
            stats["statuses"] = {int(k): int(v) for k, v in stats["statuses"].items()}
            peer.stats = ServerStatistics(**stats)
        for route, seconds, sent in msg.get("observe", ()):
            observe_hath_request(str(route), float(seconds), int(sent))
        try:
            for fileids, reason in msg.get("delete", ()):
                await self.cache.delete([str(f) for f in fileids], reason=str(reason))
            for fileid, mtime in msg.get("touch", ()):
                fid = p.FileId.try_parse(str(fileid))
                if fid is not None:
                    await self.cache.touch_if_old(fid, float(mtime))
        except OSError as exc:  # a cache error must not take the serving processes down
            log.warning("cache request of serving process %d failed: %s", peer.index, exc)

    async def _handle_forwarded(self, stream: trio.SocketStream) -> None:
        """Answer one request a serving process forwarded: ``<ip> <metered>\\n`` then the
        request head; the response goes back on the same socket. Or a ``DELETE <reason>
        <fileid>…\\n`` line (a corrupt file it found): delete, reply ``OK <removed>\\n``."""
        async with stream:
            try:
                with trio.fail_after(self.policy.request_timeout):
                    got = await _read_forwarded(stream)
                if got is None:
                    return
                if isinstance(got, list):
                    reason, *fileids = got
                    removed = await self.cache.delete(fileids, reason=reason)
                    await stream.send_all(f"OK {removed}\n".encode("ascii"))
                    return
                ip, metered, head = got
                await self.server.serve_request(stream, head, ip, metered)
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
                pass
            except wire.HttpError as exc:  # the serving process parsed it: cannot happen
                log.warning("forwarded request refused: %s", exc.status)
            except Exception:
                log.exception("forwarded request failed")


async def _read_forwarded(
    stream: trio.SocketStream,
) -> tuple[str, bool, wire.RequestHead] | list[str] | None:
    """A forwarded request ``(ip, metered, head)``, a delete ``[reason, fileid, …]``, or
    ``None`` if the socket closed first."""
    buf = bytearray()
    while True:
        nl = buf.find(b"\n")
        if nl >= 0 and buf.startswith(b"DELETE "):
            return bytes(buf[7:nl]).decode("ascii").split()
        if nl >= 0:
            end = wire.find_head_end(buf[nl + 1 :])
            if end >= 0:
                ip, _, metered = bytes(buf[:nl]).decode("ascii").partition(" ")
                head = wire.parse_head(bytes(buf[nl + 1 : nl + 1 + end]))
                return ip, metered == "1", head
        if len(buf) > wire.MAX_HEAD_BYTES + 256:
            raise wire.HttpError(400)
        data = await stream.receive_some(16384)
        if not data:
            return None
        buf += data
