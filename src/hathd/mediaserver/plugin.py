"""Media-server refresh as a daemon part.

- ``enabled`` when ``[media_servers.servers]`` names at least one server.
- ``setup``: reads each server's token (a missing ``token_file`` stops the start with a
  :class:`~hathd.errors.ConfigError`), registers the ``media-refresh`` job kind with its
  retry preset (``retry_delays``) and one politeness lane per server (domain
  ``media-server:<name>``, one request at a time, ``rate`` per second).
- ``services``: ``media-servers`` watches the ``jobs`` room of the bus: a ``done`` job of
  one of ``job_kinds`` whose result names a landed file (``path``, or ``dest`` of a
  transfer) adds its folder to the :class:`~hathd.mediaserver.batcher.RefreshBatcher`; when
  the folder is due, one ``media-refresh`` job per server that covers it is submitted. The
  triggering job is already ``done``: a failed refresh never touches it. A refresh that
  fails after its retries is a failed ``media-refresh`` job and the server's ``last_error``
  on the overview page.
- admin API: ``GET /api/v1/media-servers/status`` → ``{"pending", "submitted", "servers":
  {name: {"kind", "refreshed", "failed", "last_error", "last_ok", "last_folder"}}}``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import attrs
import httpx
import trio

from hathd.config import Config
from hathd.engine.api import EngineAPI, Job, JobContext, JobSpec, JobState
from hathd.engine.retry import RetryPreset
from hathd.errors import PermanentError
from hathd.events import EventBus
from hathd.mediaserver.batcher import RefreshBatcher
from hathd.mediaserver.clients import jellyfin_refresh, plex_refresh
from hathd.mediaserver.config import MediaServerConfig, MediaServersConfig
from hathd.runtime import BasePlugin, Runtime
from hathd.supervisor import ServiceSpec, to_plain

if TYPE_CHECKING:
    from quart import Blueprint

log = logging.getLogger(__name__)

KIND = "media-refresh"
"""The engine job kind of one refresh on one server."""
RETRY_PRESET = "media-refresh"


def lane_domain(name: str) -> str:
    """The engine domain (and politeness lane) of server ``name``."""
    return f"media-server:{name}"


@attrs.define
class ServerStatus:
    """What the overview shows of one server."""

    kind: str
    refreshed: int = 0
    failed: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_ok: float | None = None
    last_folder: str | None = None


def landed_folder(job: dict[str, Any]) -> str | None:
    """The folder a ``done`` job's result put something new in, or ``None`` (nothing new:
    the file was already there, or the result names no absolute path)."""
    result = job.get("result")
    if not isinstance(result, dict):
        return None
    if result.get("already_present") or result.get("skipped"):
        return None
    path = result.get("path") or result.get("dest")
    if not isinstance(path, str) or not path.startswith("/"):
        return None
    p = PurePosixPath(path)
    return str(p) if result.get("kind") == "dir" else str(p.parent)


class MediaRefresher:
    """Watches finished jobs, batches folders, submits and runs refreshes."""

    def __init__(
        self,
        config: MediaServersConfig,
        tokens: dict[str, str],
        engine: EngineAPI,
        bus: EventBus,
    ) -> None:
        self.config = config
        self.tokens = tokens
        self.engine = engine
        self.bus = bus
        self.batcher = RefreshBatcher(config.debounce)
        self.submitted = 0
        self.servers = {n: ServerStatus(s.kind) for n, s in config.servers.items()}
        self._wake = trio.Event()

    # -- the job kind --------------------------------------------------------------------

    async def handle(self, ctx: JobContext) -> dict[str, Any]:
        """Run one refresh: ``params`` ``{"server", "path"}`` (the folder as the server sees
        it). Raises the classified errors of :mod:`hathd.mediaserver.clients`."""
        params = ctx.job.params
        name = params.get("server")
        path = params.get("path")
        server = self.config.servers.get(name) if isinstance(name, str) else None
        if server is None or not isinstance(path, str):
            raise PermanentError(f"no media server named {name!r} is configured")
        token = self.tokens.get(str(name), "")
        async with httpx.AsyncClient(
            timeout=server.timeout, verify=server.verify, follow_redirects=False
        ) as client:
            if server.kind == "plex":
                section = await plex_refresh(client, server.url, token, path)
                return {"server": name, "path": path, "section": section}
            await jellyfin_refresh(client, server.url, token, path)
            return {"server": name, "path": path}

    async def on_final(self, job: Job) -> None:
        """Count the outcome of a refresh job for the overview."""
        status = self.servers.get(str(job.params.get("server")))
        if status is None:
            return
        if job.state is JobState.DONE:
            status.refreshed += 1
            status.last_ok = time.time()
            status.last_folder = job.target
        elif job.state is JobState.FAILED:
            status.failed += 1
            status.last_error = job.error or "failed"
            status.last_error_at = time.time()
            log.warning("media refresh of %s failed for good: %s", job.target, job.error)

    # -- batching ------------------------------------------------------------------------

    def landed(self, folder: str) -> None:
        """A file landed in ``folder`` (absolute, local)."""
        self.batcher.add(folder, trio.current_time())
        self._wake.set()

    async def submit_due(self) -> int:
        """Submit the refreshes of every due folder; returns how many jobs were submitted."""
        count = 0
        for folder, files in self.batcher.pop_due(trio.current_time()):
            for name, server in self.config.servers.items():
                if not server.covers(folder):
                    continue
                count += await self._submit(name, server, folder, files)
        return count

    async def _submit(self, name: str, server: MediaServerConfig, folder: str, files: int) -> int:
        spec = JobSpec(
            KIND,
            folder,
            lane_domain(name),
            params={"server": name, "path": server.server_path(folder), "files": files},
            source="media-servers",
            dedupe_key=f"{name}:{folder}",
            retry_preset=RETRY_PRESET,
        )
        try:
            await self.engine.submit(spec)
        except Exception as exc:  # the store refused it: logged, the next file tries again
            log.warning("media refresh of %s not queued: %s", folder, exc)
            return 0
        self.submitted += 1
        return 1

    async def _flush_loop(self) -> None:
        while True:
            due = self.batcher.next_due()
            if due is None:
                await self._wake.wait()
                self._wake = trio.Event()
                continue
            with trio.move_on_at(due):
                await self._wake.wait()
            self._wake = trio.Event()
            await self.submit_due()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch the ``jobs`` room and submit batched refreshes until cancelled."""
        kinds = set(self.config.job_kinds)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._flush_loop)
            started = False
            while True:
                async with self.bus.subscribe(["jobs"], buffer=1024) as sub:
                    if not started:
                        task_status.started()
                        started = True
                    async for event in sub:
                        if event.type == "lagged":
                            log.warning("media refresh: the event bus dropped events")
                            continue  # the last event: the iterator ends after it
                        if event.type != "done" or event.data.get("kind") not in kinds:
                            continue
                        folder = landed_folder(event.data)
                        if folder is not None:
                            self.landed(folder)

    def statistics(self) -> dict[str, Any]:
        """Pending folders, submitted jobs, and each server's status."""
        return {
            "pending": len(self.batcher),
            "submitted": self.submitted,
            "servers": {n: to_plain(s) for n, s in self.servers.items()},
        }


class MediaServerPlugin(BasePlugin):
    """Wires media-server refresh into the daemon (see module docstring)."""

    name = "media-servers"

    def __init__(self) -> None:
        self.refresher: MediaRefresher | None = None

    def enabled(self, config: Config) -> bool:
        """On when at least one server is configured."""
        return bool(config.media_servers.servers)

    def off_reason(self, config: Config) -> str | None:
        """Why it is off."""
        return "no [media_servers.servers.<name>] configured"

    async def setup(self, rt: Runtime) -> None:
        """Read the tokens, register the job kind, its preset and the lanes.

        :raises RuntimeError: no engine is attached to the runtime.
        :raises ConfigError: a ``token_file`` cannot be read.
        """
        if rt.engine is None:
            raise RuntimeError("media-server refresh needs the job engine")
        cfg = rt.config.media_servers
        tokens = {name: s.read_token(name) for name, s in cfg.servers.items()}
        refresher = MediaRefresher(cfg, tokens, rt.engine, rt.bus)
        rt.engine.add_retry_preset(
            RETRY_PRESET, RetryPreset(delays=tuple(cfg.retry_delays), jitter=0.2)
        )
        rt.engine.register(
            KIND, refresher.handle, retry_preset=RETRY_PRESET, on_final=refresher.on_final
        )
        for name in cfg.servers:
            rt.engine.add_lane(lane_domain(name), concurrency=1, rate=cfg.rate, burst=1)
        self.refresher = refresher

    def _refresher(self) -> MediaRefresher:
        if self.refresher is None:
            raise RuntimeError("media-servers plugin used before setup()")
        return self.refresher

    def services(self, rt: Runtime) -> Sequence[ServiceSpec]:
        """The bus watcher and batcher."""
        r = self._refresher()
        return [ServiceSpec("media-servers", r.serve, r.statistics)]

    def blueprint(self, rt: Runtime) -> Blueprint | None:
        """``GET /api/v1/media-servers/status``."""
        from quart import Blueprint

        bp = Blueprint("media_servers", __name__)
        r = self._refresher()

        @bp.get("/api/v1/media-servers/status")
        async def media_status() -> Any:
            """Pending folders, submitted refreshes, each server's counters and last error."""
            return r.statistics()

        return bp
