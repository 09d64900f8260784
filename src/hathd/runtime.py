"""What every component is handed: configuration, paths, store, bus, supervisor, engine.

Subsystems plug in through a :class:`Plugin` object; :func:`hathd.daemon.default_plugins`
builds one of each, in start order (the engine before the pipelines that register job
handlers on it), and hands each what it needs from the others as typed constructor
arguments (docs/architecture.md, "Wiring").
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import attrs
import trio

from hathd.config import Config
from hathd.errors import StateDirInUse
from hathd.events import EventBus
from hathd.programs import ProgramTable
from hathd.store import Store, open_store
from hathd.supervisor import ServiceSpec, Supervisor

if TYPE_CHECKING:
    import asyncclick as click
    from quart import Blueprint

    from hathd.engine.core import Engine

log = logging.getLogger(__name__)


def default_state_dir(environ: dict[str, str] | None = None) -> Path:
    """``$STATE_DIRECTORY`` (systemd; first entry) else ``$XDG_STATE_HOME/hathd`` else
    ``~/.local/state/hathd``."""
    env = dict(os.environ) if environ is None else environ
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "hathd"


@attrs.frozen
class Paths:
    """The files and folders under the state directory."""

    state_dir: Path

    @property
    def database(self) -> Path:
        """The SQLite database (WAL)."""
        return self.state_dir / "hathd.sqlite3"

    @property
    def token_file(self) -> Path:
        """The admin bearer token, mode 0600."""
        return self.state_dir / "admin.token"

    @property
    def lock(self) -> Path:
        """The lock file one daemon holds (``flock``) while it uses the directory; holds its pid."""
        return self.state_dir / "hathd.lock"

    @property
    def socket(self) -> Path:
        """The admin unix socket, mode 0600."""
        return self.state_dir / "admin.sock"

    @property
    def tmp(self) -> Path:
        """Per-job temporary directories."""
        return self.state_dir / "tmp"

    @property
    def downloads(self) -> Path:
        """The default download root."""
        return self.state_dir / "download"

    @property
    def data(self) -> Path:
        """H@H ``data/`` (client_login, certificates)."""
        return self.state_dir / "data"

    @property
    def cache(self) -> Path:
        """H@H ``cache/``."""
        return self.state_dir / "cache"


@attrs.define
class Runtime:
    """The shared parts of a running daemon (or of a test that assembles one)."""

    config: Config
    paths: Paths
    store: Store
    bus: EventBus
    supervisor: Supervisor
    engine: Engine | None = None
    """Set by the engine plugin's ``setup``; pipelines use it through
    :class:`~hathd.engine.api.EngineAPI`."""
    stopping: trio.Event = attrs.field(factory=trio.Event)
    """Set when shutdown begins: stop taking new work (the engine stops dispatching)."""
    programs: ProgramTable = attrs.field(factory=ProgramTable)
    """External programs resolved by the subsystems at start (``hathd status`` shows them)."""
    restart_pending: list[str] = attrs.field(factory=list)
    """Configuration keys changed by a reload that take effect only after a restart."""


class Plugin(Protocol):
    """A subsystem of the daemon.

    ``setup`` runs before any service starts (schema migrations, handler registration);
    ``services`` lists what to supervise; ``blueprint`` adds admin API routes;
    ``cli`` adds commands to the ``hathd`` CLI; ``reconfigure`` applies a configuration
    reloaded on SIGHUP to what is running.
    """

    name: str

    def enabled(self, config: Config) -> bool: ...

    def off_reason(self, config: Config) -> str | None: ...

    async def setup(self, rt: Runtime) -> None: ...

    def services(self, rt: Runtime) -> Sequence[ServiceSpec]: ...

    def blueprint(self, rt: Runtime) -> Blueprint | None: ...

    def cli(self) -> Sequence[click.Command]: ...

    def reconfigure(self, rt: Runtime, config: Config) -> None: ...


class BasePlugin:
    """Defaults for a :class:`Plugin`: always enabled, nothing to set up, serve, route or add."""

    name = "base"

    def enabled(self, config: Config) -> bool:
        """Whether the subsystem runs with this configuration."""
        return True

    def off_reason(self, config: Config) -> str | None:
        """Why the subsystem is off (shown by the admin status), or ``None`` for the generic
        wording."""
        return None

    async def setup(self, rt: Runtime) -> None:
        """Migrations and handler registration; runs before services start."""

    def services(self, rt: Runtime) -> Sequence[ServiceSpec]:
        """The services to supervise."""
        return ()

    def blueprint(self, rt: Runtime) -> Blueprint | None:
        """Admin API routes of the subsystem."""
        return None

    def cli(self) -> Sequence[click.Command]:
        """CLI commands of the subsystem."""
        return ()

    def reconfigure(self, rt: Runtime, config: Config) -> None:
        """Apply a reloaded configuration (already checked) to the running subsystem; called
        on the Trio thread after ``rt.config`` is set. The default changes nothing: the
        subsystem reads ``rt.config`` where it can and the rest waits for a restart."""


STATE_DIR_MODE = 0o700
"""The state directory's mode: it holds the database, the token and the admin socket."""


def _make_dirs(paths: Paths) -> None:
    paths.state_dir.mkdir(parents=True, exist_ok=True, mode=STATE_DIR_MODE)
    mode = stat.S_IMODE(paths.state_dir.stat().st_mode)
    if mode != STATE_DIR_MODE:
        os.chmod(paths.state_dir, STATE_DIR_MODE)
        log.warning(
            "state directory %s had mode %04o; set to %04o",
            paths.state_dir,
            mode,
            STATE_DIR_MODE,
        )
    for folder in (paths.tmp, paths.downloads):
        folder.mkdir(parents=True, exist_ok=True)


def lock_state_dir(paths: Paths) -> int:
    """Take the exclusive ``flock`` on ``paths.lock`` and write our pid into it; returns the
    file descriptor, which holds the lock until it is closed (or the process dies).

    :raises StateDirInUse: another process holds the lock.
    :raises OSError: the lock file cannot be opened.
    """
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        raise StateDirInUse(str(paths.state_dir), int(text) if text.isdigit() else None) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


@asynccontextmanager
async def open_runtime(config: Config, state_dir: Path) -> AsyncIterator[Runtime]:
    """Create the state directory (mode 0700), open the store, make the bus and supervisor.

    One runtime at a time may use a state directory: the exclusive lock on
    ``<state_dir>/hathd.lock`` is held until the runtime closes. The engine is attached later by
    the engine plugin's ``setup``. Tests use this to assemble a daemon's parts in-process.

    :raises StateDirInUse: another process (or runtime) uses the state directory.
    :raises StoreError: the database cannot be opened or migrated.
    """
    paths = Paths(state_dir)
    await trio.to_thread.run_sync(_make_dirs, paths)
    lock_fd = await trio.to_thread.run_sync(lock_state_dir, paths)
    try:
        bus = EventBus()
        supervisor = Supervisor(bus, backoff_max=config.daemon.restart_backoff_max)
        async with open_store(paths.database) as store:
            yield Runtime(config, paths, store, bus, supervisor)
    finally:
        os.close(lock_fd)
