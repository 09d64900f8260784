"""Real servers on 127.0.0.1 for the Queue4Download tests and benchmark.

- mosquitto (the broker) with its configuration written in a temporary directory; ``user root``
  because as root it would otherwise switch to the ``mosquitto`` user; persistence on, so a
  restarted broker keeps the persistent session of hathd's fixed client id.
- pyftpdlib (``python -m pyftpdlib``) and an asyncssh SFTP server (``sftp_server.py``), each in
  its own process, serving a seed tree with spaces and parentheses in names.
- mosquitto_pub / mosquitto_sub: the very clients the seedbox scripts use.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

HERE = Path(__file__).parent
USER = "fear"
PASSWORD = "loathing"


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_port(port: int, timeout: float = 30.0) -> None:
    """Return once something accepts connections on 127.0.0.1:``port``."""
    with trio.fail_after(timeout):
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            return


async def stop_process(proc: trio.Process, timeout: float = 20.0) -> None:
    """SIGTERM, wait up to ``timeout`` s, then SIGKILL."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(timeout):
            await proc.wait()
        if proc.returncode is None:
            print(f"rig: {proc.args!r} ignored SIGTERM for {timeout} s", file=sys.stderr)
            proc.kill()
            await proc.wait()


@attrs.define
class Mosquitto:
    """A mosquitto broker on ``port``; ``restart()`` keeps its port and persistence file."""

    dir: Path
    port: int
    password_file: Path | None = None
    tls: tuple[Path, Path] | None = None
    proc: trio.Process | None = None
    max_inflight: int = 20  # mosquitto's default: unacked QoS>0 messages per client

    def write_config(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            "user root",
            "persistence true",
            f"persistence_location {self.dir}/",
            f"pid_file {self.dir}/mosquitto.pid",
            f"log_dest file {self.dir}/mosquitto.log",
            "max_queued_messages 100000",
            f"max_inflight_messages {self.max_inflight}",
        ]
        if self.password_file is not None:
            lines += ["allow_anonymous false", f"password_file {self.password_file}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls is not None:
            cert, key = self.tls
            lines += [f"certfile {cert}", f"keyfile {key}"]
        conf = self.dir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    async def start(self) -> None:
        conf = self.write_config()
        self.proc = await trio.lowlevel.open_process(
            ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        await wait_port(self.port)  # on failure the caller's stop() still ends the process

    async def stop(self) -> None:
        if self.proc is not None:
            await stop_process(self.proc)
            self.proc = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()


def write_password_file(folder: Path, users: dict[str, str]) -> Path:
    """A mosquitto password file made with ``mosquitto_passwd -b``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "passwd"
    path.write_text("")
    for name, pw in users.items():
        subprocess.run(
            ["mosquitto_passwd", "-b", str(path), name, pw], check=True, capture_output=True
        )
    return path


@asynccontextmanager
async def open_mosquitto(
    folder: Path, *, users: dict[str, str] | None = None, tls: tuple[Path, Path] | None = None
) -> AsyncIterator[Mosquitto]:
    """A running broker (stopped on exit); ``users`` enables password authentication."""
    password_file = None
    if users:
        password_file = await trio.to_thread.run_sync(write_password_file, folder, users)
    broker = Mosquitto(folder, free_port(), password_file, tls)
    try:
        await broker.start()
        yield broker
    finally:
        with trio.CancelScope(shield=True):
            await broker.stop()


async def mosquitto_pub(port: int, topic: str, payload: bytes, *, qos: int = 2) -> None:
    """Publish exactly as Q4D's seedbox script does: ``mosquitto_pub … -q 2``, a new client
    each time, no retain (the payload is fed on stdin with ``-s`` so any bytes can be sent)."""
    argv = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-q", str(qos)]
    await trio.run_process([*argv, "-s"], stdin=payload, capture_stdout=True, capture_stderr=True)


@attrs.define
class LabelWatcher:
    """``mosquitto_sub -t Label`` collecting payloads (one per line; line-buffered by stdbuf)."""

    proc: trio.Process
    labels: list[str] = attrs.field(factory=list)
    changed: trio.Event = attrs.field(factory=trio.Event)

    async def wait_for(self, wanted: set[str], timeout: float = 60.0) -> None:
        with trio.fail_after(timeout):
            while not wanted <= set(self.labels):
                await self.changed.wait()
                self.changed = trio.Event()


@asynccontextmanager
async def watch_labels(
    port: int, topic: str = "Label", *, client_id: str | None = None
) -> AsyncIterator[LabelWatcher]:
    """Subscribe (QoS 2) with mosquitto_sub and collect every label while the block runs;
    with ``client_id`` the session is persistent (``-c -i``), so labels published while the
    watcher is away are delivered when it comes back."""
    argv = ["stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", str(port)]
    argv += ["-t", topic, "-q", "2", "-d"]
    if client_id is not None:
        argv += ["-c", "-i", client_id]
    proc = await trio.lowlevel.open_process(
        [*argv, "-F", "PAYLOAD %p"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    watcher = LabelWatcher(proc)
    subscribed = trio.Event()

    async def read() -> None:
        assert proc.stdout is not None
        buf = b""
        async for chunk in proc.stdout:
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode()
                if "SUBACK" in text:
                    subscribed.set()
                if text.startswith("PAYLOAD "):
                    watcher.labels.append(text[len("PAYLOAD ") :])
                    watcher.changed.set()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            with trio.fail_after(20):
                await subscribed.wait()
            try:
                yield watcher
            finally:
                nursery.cancel_scope.cancel()
    finally:
        # mosquitto_sub sometimes sits out a SIGTERM that lands right after SUBACK.
        with trio.CancelScope(shield=True):
            await stop_process(proc, timeout=2.0)


def make_seed_tree(root: Path, *, big_mb: int = 55) -> dict[str, Path]:
    """Payloads on the "seedbox": a folder with spaces, parentheses and brackets in names, a
    single file, and a file over 50 MB (distinct blocks, so a misplaced segment shows)."""
    files = root / "files"
    movie = files / "My Movie (2024)"
    (movie / "Sub Dir (extras)").mkdir(parents=True, exist_ok=True)
    (movie / "movie part (1).mkv").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (movie / "Sub Dir (extras)" / "notes [x].txt").write_text("notes\n")
    (movie / "empty file").write_bytes(b"")
    single = files / "Single Episode S01E02 (720p).mkv"
    single.write_bytes(os.urandom(1024 * 1024 + 3))
    big = files / "Big Payload (2160p).bin"
    block = os.urandom(1024 * 1024)
    with big.open("wb") as fh:
        for i in range(big_mb):
            fh.write(i.to_bytes(8, "big") + block[8:])
        fh.write(b"tail")
    return {"dir": movie, "file": single, "big": big}


@attrs.define
class FileServer:
    """A seedbox server process: ``url`` is what lftp opens."""

    proc: trio.Process
    url: str
    port: int


@asynccontextmanager
async def open_ftp(root: Path) -> AsyncIterator[FileServer]:
    """pyftpdlib serving ``root`` read-only to fear/loathing."""
    port = free_port()
    argv = [sys.executable, "-m", "pyftpdlib", "-i", "127.0.0.1", "-p", str(port)]
    proc = await trio.lowlevel.open_process(
        [*argv, "-d", str(root), "-u", USER, "-P", PASSWORD],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_port(port)
        yield FileServer(proc, f"ftp://127.0.0.1:{port}", port)
    finally:
        with trio.CancelScope(shield=True):
            await stop_process(proc)


@asynccontextmanager
async def open_sftp(root: Path) -> AsyncIterator[FileServer]:
    """asyncssh serving ``root`` (chroot) over SFTP to fear/loathing (password auth)."""
    argv = [sys.executable, str(HERE / "sftp_server.py"), "0", str(root), USER, PASSWORD]
    proc = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        port = await _read_ready(proc)
        yield FileServer(proc, f"sftp://127.0.0.1:{port}", port)
    finally:
        with trio.CancelScope(shield=True):
            await stop_process(proc)


@asynccontextmanager
async def open_slow_ftp(root: Path, bytes_per_second: int) -> AsyncIterator[FileServer]:
    """pyftpdlib serving ``root`` with every data connection throttled (``ftp_server.py``)."""
    argv = [sys.executable, str(HERE / "ftp_server.py"), "0", str(root), USER, PASSWORD]
    proc = await trio.lowlevel.open_process(
        [*argv, str(bytes_per_second)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        port = await _read_ready(proc)
        yield FileServer(proc, f"ftp://127.0.0.1:{port}", port)
    finally:
        with trio.CancelScope(shield=True):
            await stop_process(proc)


async def _read_ready(proc: trio.Process) -> int:
    """The port of a ``ready <port>`` line on ``proc``'s stdout."""
    assert proc.stdout is not None
    buf = b""
    with trio.fail_after(30):
        while b"\n" not in buf:
            chunk = await proc.stdout.receive_some(1024)
            if not chunk:
                raise RuntimeError("server exited before it was ready")
            buf += chunk
    return int(buf.split()[1])


def ssh_connect_program(folder: Path) -> str:
    """lftp's ``sftp:connect-program`` with a private known_hosts file (the test server makes
    a new host key every run)."""
    return (
        f"ssh -a -x -o UserKnownHostsFile={folder}/known_hosts -o StrictHostKeyChecking=accept-new"
    )
