"""Shared fixtures: a real ``hathd run`` subprocess in a temporary state directory.

``start_daemon`` is a factory::

    handle = await start_daemon(config_toml_text="[engine]\\nworkers = 2\\n", env={...})
    async with handle.admin() as admin:
        status = await admin.get("/api/v1/status")
    await handle.stop()            # SIGTERM, then wait for exit (returns the exit code)

Passing ``state_dir=`` reuses a directory (restart tests). Every daemon still running at the
end of the test is killed. The daemon's output goes to ``handle.log_path``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import attrs
import pytest
import trio

from hathd.client import AdminClient, DaemonNotRunning


@attrs.define
class DaemonHandle:
    """A ``hathd run`` subprocess and the paths of its state directory."""

    proc: trio.Process
    state_dir: Path
    config_path: Path
    env: dict[str, str]
    log_path: Path

    @property
    def socket(self) -> Path:
        return self.state_dir / "admin.sock"

    @property
    def token(self) -> str:
        return (self.state_dir / "admin.token").read_text().strip()

    @property
    def tcp_url(self) -> str:
        return (self.state_dir / "admin.url").read_text().strip()

    def admin(self) -> AdminClient:
        return AdminClient(self.socket)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_ready(self, timeout: float = 60.0) -> None:
        with trio.fail_after(timeout):
            while True:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"hathd exited with {self.proc.returncode}:\n{self.log()}")
                if self.socket.exists() and (self.state_dir / "admin.url").exists():
                    try:
                        async with self.admin() as admin:
                            await admin.get("/healthz")
                        return
                    except DaemonNotRunning:
                        pass
                await trio.sleep(0.05)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        with trio.fail_after(timeout):
            return await self.proc.wait()

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


StartDaemon = Callable[..., Awaitable[DaemonHandle]]


def daemon_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a test daemon: no systemd variables, admin TCP port 0."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("HATHD_", "NOTIFY_SOCKET", "WATCHDOG_", "STATE_DIRECTORY", "CONFIGURATION_DIRECTORY")
        )
    }
    env["HATHD_ADMIN__PORT"] = "0"
    env.update(extra or {})
    return env


@pytest.fixture
async def start_daemon(tmp_path: Path) -> AsyncIterator[StartDaemon]:
    handles: list[DaemonHandle] = []
    counter = 0

    async def start(
        config_toml_text: str = "",
        env: dict[str, str] | None = None,
        state_dir: Path | None = None,
        wait: bool = True,
        args: tuple[str, ...] = (),
        bare: bool = False,
    ) -> DaemonHandle:
        """``bare``: no ``--state-dir`` and no ``--config`` (the daemon finds its defaults;
        ``state_dir`` then only tells the handle where to look)."""
        nonlocal counter
        counter += 1
        state = state_dir or tmp_path / f"state{counter}"
        config_path = tmp_path / f"hathd{counter}.toml"
        config_path.write_text(config_toml_text)
        log_path = tmp_path / f"hathd{counter}.log"
        full_env = daemon_env(env)
        with log_path.open("wb") as log:
            proc = await trio.lowlevel.open_process(
                [
                    sys.executable,
                    "-m",
                    "hathd",
                    *(() if bare else ("--state-dir", str(state), "--config", str(config_path))),
                    *args,
                    "run",
                ],
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        handle = DaemonHandle(proc, state, config_path, full_env, log_path)
        handles.append(handle)
        if wait:
            await handle.wait_ready()
        return handle

    yield start
    for handle in handles:
        handle.kill()
        with trio.move_on_after(10):
            await handle.proc.wait()


async def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m hathd ARGS`` as a real process; returns its completed result."""
    with trio.fail_after(timeout):
        return await trio.run_process(
            [sys.executable, "-m", "hathd", *args],
            env=daemon_env(env),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


@pytest.fixture
def cli_runner() -> Callable[..., Awaitable[subprocess.CompletedProcess[bytes]]]:
    """``await cli_runner("status", "--json", env=...)``: the CLI as a real process."""
    return run_cli
