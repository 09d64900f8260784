"""The gallery downloader service: ``fetchqueue`` until the queue is empty, one job per gallery.

Triggered by the servercmd ``start_downloader`` (the daemon hands the image node
:meth:`~hathd.gallery.plugin.GalleryPlugin.trigger`) or by hand (``POST /api/v1/hath/download``);
one run at a time (``docs/hath-protocol.md`` §6, J162 ``GalleryDownloader``). A run:

1. ``fetchqueue`` with ``add`` = ``""`` (first) or ``<gid>;<minxres>`` of the gallery just
   finished, which marks it done on the server;
2. the raw reply is parsed by :func:`hathd.hath.gallery_meta.parse_queue_reply`:
   ``NO_PENDING_DOWNLOADS`` ends the run, ``INVALID_REQUEST`` is logged and ends it, a
   malformed reply is logged and counted (``malformed_replies``) and ends it, never a crash;
3. a gallery becomes a ``gallery`` job on the engine (de-duplicated by ``<gid>;<minxres>``, so
   a gallery still queued from before a restart is reused); the run waits until the job is
   final (``done``/``failed``, through the engine's final hook, or ``cancelled``/removed,
   noticed by polling every ``poll_interval`` seconds);
4. the failures recorded by the handler are reported with ``dlfails`` (at most 50) before the
   next ``fetchqueue`` (J162 order), and the gallery counts as finished either way
   ("permanently failed, then move on").
"""

from __future__ import annotations

import json
import logging
from typing import Any

import attrs
import trio

from hathd.engine.api import EngineAPI, Job, JobSpec, JobState
from hathd.errors import HathdError
from hathd.gallery.handler import DOMAIN, KIND, meta_to_params
from hathd.gallery.plan import dlfails_add
from hathd.gallery.rpc import OpenRpc
from hathd.hath.gallery_meta import (
    GalleryMeta,
    GalleryMetaError,
    InvalidRequest,
    NoPendingDownloads,
    parse_queue_reply,
)
from hathd.store import Store

log = logging.getLogger(__name__)

FINAL_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})


@attrs.define
class DownloaderStatistics:
    """Counters of the downloader (for ``hathd status`` and the admin API)."""

    running: bool = False
    pending: bool = False
    runs: int = 0
    galleries: int = 0
    galleries_failed: int = 0
    malformed_replies: int = 0
    invalid_requests: int = 0
    dlfails_reports: int = 0
    dlfails_keys: int = 0
    run_errors: int = 0
    last_error: str | None = None
    current_gid: int | None = None
    current_job: str | None = None


class Downloader:
    """Runs the queue on demand.

    ``open_rpc`` gives the control-server client for a run (the plugin uses the image node's
    RPC client when the node runs, else its own; entering it raises
    :class:`~hathd.errors.HathdError` when no credentials are configured). ``poll_interval``
    (seconds) bounds how long a job that ended without a final hook (cancelled, removed) is
    waited for.
    """

    def __init__(
        self,
        engine: EngineAPI,
        store: Store,
        open_rpc: OpenRpc,
        *,
        poll_interval: float = 5.0,
    ) -> None:
        self.engine = engine
        self.store = store
        self._open_rpc = open_rpc
        self.poll_interval = poll_interval
        self.stats = DownloaderStatistics()
        self._wanted = trio.Event()
        self._finals: dict[str, trio.Event] = {}
        self._idle = trio.Event()
        self._idle.set()
        self._again = False

    # -- triggering ----------------------------------------------------------------------

    def trigger(self) -> bool:
        """Ask for a run (sync, never blocks). Returns ``True`` if the downloader was idle and
        will start, ``False`` if a run is already going. In that case one more ``fetchqueue``
        follows the current run, so a gallery queued just as the run ended is not missed."""
        if self._wanted.is_set():
            return False
        if self.stats.running:
            self._again = True
            return False
        self._wanted.set()
        self._idle = trio.Event()
        return True

    async def wait_idle(self) -> None:
        """Return once no run is wanted or going."""
        await self._idle.wait()

    async def on_final(self, job: Job) -> None:
        """The engine's final hook for ``gallery`` jobs: wakes the run waiting for ``job``."""
        event = self._finals.get(job.id)
        if event is not None:
            event.set()

    def statistics(self) -> DownloaderStatistics:
        """A copy of the counters; ``pending``: a run is asked for and not yet begun."""
        return attrs.evolve(self.stats, pending=self._wanted.is_set() or self._again)

    # -- the service ---------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Wait for triggers and run the queue each time; ready at once."""
        task_status.started()
        while True:
            await self._wanted.wait()
            self.stats.running = True
            self._wanted = trio.Event()
            self.stats.runs += 1
            try:
                await self.run_queue()
            except HathdError as exc:
                self.stats.run_errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("gallery downloader stopped: %s", exc)
            except Exception as exc:
                # A bug must not take the service (and the next trigger) down with it.
                self.stats.run_errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("gallery downloader run failed")
            finally:
                self.stats.running = False
                self.stats.current_gid = None
                self.stats.current_job = None
                if self._again:
                    self._again = False
                    self._wanted.set()
                if not self._wanted.is_set():
                    self._idle.set()

    async def run_queue(self) -> int:
        """One run: galleries until the queue is empty. Returns how many galleries it handled.

        :raises HathdError: no credentials, or the control server unreachable (RpcUnavailable).
        """
        handled = 0
        async with self._open_rpc() as rpc:
            add = ""
            while True:
                body = await rpc.fetchqueue(add)
                try:
                    reply = parse_queue_reply(body)
                except GalleryMetaError as exc:
                    self.stats.malformed_replies += 1
                    log.error(
                        "malformed fetchqueue reply (%d bytes, starting %r): %s",
                        len(body),
                        body[:120],
                        exc,
                    )
                    return handled
                if isinstance(reply, NoPendingDownloads):
                    log.info("gallery queue empty after %d galleries", handled)
                    return handled
                if isinstance(reply, InvalidRequest):
                    self.stats.invalid_requests += 1
                    log.warning("fetchqueue: the server rejected the request (INVALID_REQUEST)")
                    return handled
                await self.download_one(reply)
                handled += 1
                failures = await self._failures(reply)
                report = dlfails_add(failures)
                if report is not None:
                    self.stats.dlfails_reports += 1
                    self.stats.dlfails_keys += report.count(";") + 1
                    await rpc.dlfails(report)
                add = reply.queue_add

    async def download_one(self, meta: GalleryMeta) -> Job | None:
        """Submit ``meta`` as a ``gallery`` job and wait until it is final."""
        spec = JobSpec(
            kind=KIND,
            target=f"gallery {meta.gid} [{meta.minxres}] {meta.title[:120]}",
            domain=DOMAIN,
            params=meta_to_params(meta),
            source="hath",
            source_id=meta.queue_add,
            dedupe_key=meta.queue_add,
        )
        submitted = await self.engine.submit(spec)
        job = submitted.job
        self.stats.current_gid = meta.gid
        self.stats.current_job = job.id
        log.info("gallery %d queued as job %s (new: %s)", meta.gid, job.id, submitted.created)
        final = await self._wait_final(job.id)
        self.stats.galleries += 1
        if final is None or final.state is not JobState.DONE:
            self.stats.galleries_failed += 1
        return final

    async def _wait_final(self, job_id: str) -> Job | None:
        event = self._finals.setdefault(job_id, trio.Event())
        try:
            while True:
                job = await self.engine.get(job_id)
                if job is None or job.state in FINAL_STATES:
                    return job
                with trio.move_on_after(self.poll_interval):
                    await event.wait()
        finally:
            self._finals.pop(job_id, None)

    async def _failures(self, meta: GalleryMeta) -> list[str]:
        rows = await self.store.query(
            "SELECT failures FROM gallery_runs WHERE gid = ? AND minxres = ?",
            (meta.gid, meta.minxres),
        )
        if not rows:
            return []
        try:
            value: Any = json.loads(rows[0]["failures"])
        except (TypeError, ValueError):
            return []
        return [str(v) for v in value] if isinstance(value, list) else []
