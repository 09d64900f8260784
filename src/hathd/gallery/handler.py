"""The ``gallery`` job handler: one gallery from its metadata to verified files on disk.

Steps (``docs/hath-protocol.md`` §6; decisions in :mod:`hathd.gallery.plan`):

1. the directory ``<root>/<title> [<gid><xresTitle>]`` (cleaned, capped, never outside the
   root, ``<gid><xresTitle>`` as fallback); a gallery whose ``.zip`` already exists is skipped;
2. passes over the file list: a file already on disk and verified is kept; otherwise
   ``dlfetch`` → GET into ``.<name>.part`` → SHA-1 check → rename; each download host is paced
   through :class:`~hathd.gallery.hosts.HostGates`; progress counts verified files;
3. on success ``galleryinfo.txt`` (the INFORMATION text), then the archive as configured;
4. the outcome (and the ``dlfails`` keys) is recorded in the ``gallery_runs`` table for the
   downloader, which reports failures and marks the gallery done with ``fetchqueue``.

Errors: metadata that does not validate → :class:`~hathd.errors.PermanentError`; files still
missing after every pass → ``PermanentError`` (the gallery is "permanently failed", as the
reference says, and the queue moves on); the control server unreachable or the download root
unusable → :class:`~hathd.errors.RetryableError` (verified files are kept for the next try).
"""

from __future__ import annotations

import json
import logging
import re
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import httpx
import trio

from hathd.engine.api import JobContext
from hathd.errors import PermanentError, RetryableError
from hathd.excgroups import leaves
from hathd.gallery import archive, storage
from hathd.gallery.config import GalleryConfig
from hathd.gallery.fetch import FetchError, fetch_to_file
from hathd.gallery.hosts import HostGates
from hathd.gallery.naming import fallback_dir_name, file_names, gallery_dir_name
from hathd.gallery.plan import (
    GalleryPlan,
    Outcome,
    accept_digest,
    dlfetch_add,
    failure_key,
    low_disk,
)
from hathd.gallery.rpc import DownloaderRpc, OpenRpc, RpcUnavailable
from hathd.hath.gallery_meta import GalleryFile, GalleryMeta
from hathd.store import Store

log = logging.getLogger(__name__)

KIND = "gallery"
"""The job kind."""

DOMAIN = "hath-gallery"
"""The engine lane of gallery jobs: one gallery at a time, as the reference downloads them."""

_HOST_RE = re.compile(r"[A-Za-z0-9._:\[\]-]+")

DISK_CHECK_EVERY = 1.0
"""Seconds a good free-space reading is trusted before the disk is checked again."""

MIGRATIONS = [
    """
    CREATE TABLE gallery_runs (
        gid INTEGER NOT NULL,
        minxres TEXT NOT NULL,
        job_id TEXT,
        status TEXT NOT NULL,
        directory TEXT,
        archive TEXT,
        files INTEGER NOT NULL DEFAULT 0,
        failures TEXT NOT NULL DEFAULT '[]',
        updated_at REAL NOT NULL,
        PRIMARY KEY (gid, minxres)
    );
    CREATE INDEX gallery_runs_job ON gallery_runs(job_id);
    """
]
"""Schema of the ``gallery`` store component."""


def meta_to_params(meta: GalleryMeta) -> dict[str, Any]:
    """The JSON-ready job params of a gallery."""
    return {
        "gid": meta.gid,
        "filecount": meta.filecount,
        "minxres": meta.minxres,
        "title": meta.title,
        "information": meta.information,
        "files": [
            [f.page, f.fileindex, f.xres, f.sha1, f.filetype, f.filename] for f in meta.files
        ],
    }


def meta_from_params(params: dict[str, Any]) -> GalleryMeta:
    """The gallery of a job's params (the inverse of :func:`meta_to_params`).

    :raises PermanentError: params of another shape.
    """
    try:
        files = tuple(
            GalleryFile(int(p), int(i), str(x), None if s is None else str(s), str(t), str(n))
            for p, i, x, s, t, n in params["files"]
        )
        meta = GalleryMeta(
            int(params["gid"]),
            int(params["filecount"]),
            str(params["minxres"]),
            str(params["title"]),
            files,
            str(params.get("information", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PermanentError(f"gallery job params are malformed: {exc!r}") from None
    if meta.gid <= 0 or meta.filecount != len(files) or not files:
        raise PermanentError("gallery job params are inconsistent")
    return meta


@attrs.define
class GalleryDeps:
    """What the handler needs: settings, download root, store, host gates, and how to get the
    control-server client (entering it may raise :class:`~hathd.errors.HathdError`, e.g. when
    no credentials are configured)."""

    config: GalleryConfig
    root: Path
    store: Store
    gates: HostGates
    open_rpc: OpenRpc
    free_bytes: Callable[[Path], int] = storage.free_bytes
    server_disk_remaining: Callable[[], int] = lambda: 0
    """The server's ``diskremaining_bytes`` (§2) when known; the larger of it and
    ``[gallery] disk_remaining`` is kept free."""


async def record_run(
    store: Store,
    meta: GalleryMeta,
    job_id: str,
    status: str,
    *,
    directory: Path | None,
    archive_file: Path | None = None,
    failures: list[str] | None = None,
) -> None:
    """Upsert the ``gallery_runs`` row of ``meta``."""
    row = (
        meta.gid,
        meta.minxres,
        job_id,
        status,
        None if directory is None else str(directory),
        None if archive_file is None else str(archive_file),
        meta.filecount,
        json.dumps(failures or []),
        time.time(),
    )
    await store.execute(
        "INSERT INTO gallery_runs(gid, minxres, job_id, status, directory, archive, files,"
        " failures, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT(gid, minxres) DO UPDATE SET job_id = excluded.job_id,"
        " status = excluded.status, directory = excluded.directory,"
        " archive = excluded.archive, files = excluded.files, failures = excluded.failures,"
        " updated_at = excluded.updated_at",
        row,
    )


def url_host(url: str) -> str:
    """The host of a ``dlfetch`` URL, for its ``dlfails`` key and its host gate (§6). A URL that
    does not parse (e.g. ``http://[::1/x``) gives its raw authority text (between ``//`` and
    the next ``/``, ``?`` or ``#``); a host that is empty or holds anything but letters,
    digits and ``.-_:[]`` (a ``;`` would split the ``dlfails`` list) gives ``unknown``. Never
    raises."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    if not host:
        authority = url.partition("//")[2]
        for sep in "/?#":
            authority = authority.partition(sep)[0]
        host = authority.rpartition("@")[2]
    return host if _HOST_RE.fullmatch(host) else "unknown"


def _existing_archive(root: Path, names: list[str]) -> Path | None:
    for name in names:
        path = archive.archive_path(root / name)
        try:
            if path.is_file() and path.stat().st_size > 0:
                return path
        except OSError:
            continue
    return None


class _Run:
    """One try of one gallery job."""

    def __init__(self, deps: GalleryDeps, ctx: JobContext, meta: GalleryMeta, gdir: Path) -> None:
        cfg = deps.config
        self.deps = deps
        self.cfg = cfg
        self.ctx = ctx
        self.meta = meta
        self.gdir = gdir
        self.names = file_names([(f.filename, f.filetype, f.page) for f in meta.files])
        self.plan = GalleryPlan(
            meta.filecount,
            tries_per_file=cfg.tries_per_file,
            max_passes=cfg.max_passes,
            success_delay=cfg.success_delay,
            failure_delay=cfg.failure_delay,
        )
        self.fatal: BaseException | None = None
        self.present: set[str] = set()
        self._disk_ok_until = -1.0

    async def wait_for_disk(self) -> None:
        """Return once the disk has room (re-checked at most every :data:`DISK_CHECK_EVERY`
        seconds while it does); wait ``low_disk_delay`` between checks while it does not."""
        while True:
            if trio.current_time() < self._disk_ok_until:
                return
            free = await trio.to_thread.run_sync(self.deps.free_bytes, self.gdir)
            keep = max(self.cfg.disk_remaining, self.deps.server_disk_remaining())
            if not low_disk(free, keep, self.cfg.free_space_margin):
                self._disk_ok_until = trio.current_time() + DISK_CHECK_EVERY
                return
            log.warning(
                "gallery %d: download disk is low (%d bytes free); waiting", self.meta.gid, free
            )
            self.ctx.progress(self.plan.done, self.meta.filecount, message="waiting: disk low")
            await trio.sleep(self.cfg.low_disk_delay)

    async def attempt(self, client: httpx.AsyncClient, rpc: DownloaderRpc, index: int) -> None:
        f = self.meta.files[index]
        name = self.names[index]
        path = self.gdir / name
        await self.wait_for_disk()
        found = None
        if name in self.present:
            found = await trio.to_thread.run_sync(storage.existing_digest, path)
        if found is not None and accept_digest(f.sha1, *found):
            self.plan.record(index, Outcome.KEPT)
            self.ctx.progress(self.plan.done, self.meta.filecount, message=f"kept {name}")
            return
        if found is not None:
            log.info("gallery %d: %s on disk does not verify; fetching again", self.meta.gid, name)
            await trio.to_thread.run_sync(storage.remove_quietly, path)
        attempt = self.plan.begin_try(index)
        add = dlfetch_add(self.meta.gid, f.page, f.fileindex, f.xres, attempt)
        url = await rpc.dlfetch(add)
        if url is None:
            self.plan.record(index, Outcome.FAILED)
            await trio.sleep(self.plan.delay_after(Outcome.FAILED))
            return
        host = url_host(url)
        async with self.deps.gates.slot(host):
            reason = ""
            try:
                got = await fetch_to_file(
                    client,
                    url,
                    path,
                    lambda digest, size: accept_digest(f.sha1, digest, size),
                    connect_timeout=self.cfg.connect_timeout,
                    read_timeout=self.cfg.read_timeout,
                    file_timeout=self.cfg.file_timeout,
                    root=self.deps.root,
                )
            except FetchError as exc:
                ok, reason = False, str(exc)
            else:
                ok = got.accepted
                if not ok:
                    reason = f"SHA-1 {got.sha1} ({got.size} bytes) does not match {f.sha1}"
            outcome = Outcome.DOWNLOADED if ok else Outcome.FAILED
            if not ok:
                log.warning(
                    "gallery %d: %s try %d from %s failed: %s",
                    self.meta.gid,
                    name,
                    attempt,
                    host,
                    reason,
                )
            self.plan.record(index, outcome, None if ok else failure_key(host, f.fileindex, f.xres))
            self.ctx.progress(self.plan.done, self.meta.filecount, message=f"{outcome} {name}")
            await trio.sleep(self.plan.delay_after(outcome))

    async def worker(
        self,
        client: httpx.AsyncClient,
        rpc: DownloaderRpc,
        recv: trio.MemoryReceiveChannel[int],
        scope: trio.CancelScope,
    ) -> None:
        async with recv:
            async for index in recv:
                try:
                    await self.attempt(client, rpc, index)
                except Exception as exc:
                    # The control server or the disk is gone (or a bug): stop this try of the
                    # job; what is verified stays on disk.
                    if not isinstance(exc, RpcUnavailable | OSError):
                        log.exception("gallery %d: unexpected error", self.meta.gid)
                    if self.fatal is None:
                        self.fatal = exc
                    scope.cancel()
                    return

    async def download(self) -> None:
        async with (
            httpx.AsyncClient(
                limits=httpx.Limits(max_connections=max(4, self.cfg.concurrency * 2)),
                follow_redirects=True,
            ) as client,
            self.deps.open_rpc() as rpc,
        ):
            while (batch := self.plan.next_pass()) is not None:
                self.present = await trio.to_thread.run_sync(storage.entry_names, self.gdir)
                await self.run_pass(client, rpc, batch)
                if self.fatal is not None:
                    break

    async def run_pass(
        self, client: httpx.AsyncClient, rpc: DownloaderRpc, batch: list[int]
    ) -> None:
        try:
            async with trio.open_nursery() as nursery:
                send, recv = trio.open_memory_channel[int](0)
                async with recv:
                    for _ in range(min(self.cfg.concurrency, len(batch))):
                        nursery.start_soon(
                            self.worker, client, rpc, recv.clone(), nursery.cancel_scope
                        )
                async with send:
                    for index in batch:
                        await send.send(index)
        except BaseExceptionGroup as group:
            # Workers contain their errors, so only cancellation can arrive here: re-raise one
            # Cancelled rather than a group (no ExceptionGroup leaves the handler).
            cancelled, rest = group.split(trio.Cancelled)
            if rest is None and cancelled is not None:
                raise leaves(cancelled)[0] from None
            raise

    async def write_outputs(self) -> tuple[Path | None, Path | None]:
        """``galleryinfo.txt``, then the archive as configured; returns ``(archive, directory)``
        (``None`` where there is none)."""
        info = self.gdir / archive.INFO_NAME
        data = self.meta.information.encode("utf-8")
        await trio.to_thread.run_sync(archive.write_atomic, self.deps.root, info, data)
        if self.cfg.archive not in ("zip", "zip_delete"):
            return None, self.gdir
        members = [*self.names, archive.INFO_NAME]
        zip_path = await trio.to_thread.run_sync(
            archive.write_archive, self.deps.root, self.gdir, members
        )
        if self.cfg.archive == "zip":
            return zip_path, self.gdir
        await trio.to_thread.run_sync(archive.remove_gallery_dir, self.gdir, self.deps.root)
        return zip_path, None

    async def finish(self) -> dict[str, Any]:
        meta = self.meta
        job_id = self.ctx.job.id
        store = self.deps.store
        if self.fatal is not None:
            await record_run(
                store, meta, job_id, "interrupted", directory=self.gdir, failures=self.plan.failures
            )
            raise RetryableError(f"gallery {meta.gid} interrupted: {self.fatal}")
        if not self.plan.complete:
            missing = [self.names[i] for i in self.plan.given_up()]
            await record_run(
                store, meta, job_id, "incomplete", directory=self.gdir, failures=self.plan.failures
            )
            shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
            raise PermanentError(
                f"gallery {meta.gid}: {len(missing)} of {meta.filecount} files failed after "
                f"{self.plan.passes} passes ({shown})"
            )
        try:
            zip_path, directory = await self.write_outputs()
        except (OSError, zipfile.BadZipFile) as exc:
            await record_run(
                store, meta, job_id, "interrupted", directory=self.gdir, failures=self.plan.failures
            )
            raise RetryableError(f"gallery {meta.gid}: cannot write its outputs: {exc}") from None
        await record_run(
            store,
            meta,
            job_id,
            "complete",
            directory=directory,
            archive_file=zip_path,
            failures=self.plan.failures,
        )
        self.ctx.progress(meta.filecount, meta.filecount, message="complete")
        log.info("gallery %d complete: %s", meta.gid, directory or zip_path)
        return {
            "gid": meta.gid,
            "minxres": meta.minxres,
            "directory": None if directory is None else str(directory),
            "archive": None if zip_path is None else str(zip_path),
            "files": meta.filecount,
            "downloaded": self.plan.downloaded,
            "kept": self.plan.kept,
            "passes": self.plan.passes,
            "failed_tries": self.plan.failed_tries,
        }


async def run_gallery(deps: GalleryDeps, ctx: JobContext) -> dict[str, Any]:
    """Download one gallery job; see the module docstring for the steps and errors.

    :returns: ``{"gid", "minxres", "directory", "archive", "files", "downloaded", "kept",
        "passes", "failed_tries"}`` (paths as text, ``None`` where absent), or
        ``{"gid", "minxres", "skipped": "archive exists", "archive"}``.
    """
    meta = meta_from_params(ctx.job.params)
    cfg = deps.config
    name = gallery_dir_name(meta.title, meta.gid, meta.xres_title, cfg.max_filename_length)
    fallback = fallback_dir_name(meta.gid, meta.xres_title)
    done = await trio.to_thread.run_sync(_existing_archive, deps.root, [name, fallback])
    if done is not None:
        await record_run(
            deps.store, meta, ctx.job.id, "complete", directory=None, archive_file=done
        )
        return {
            "gid": meta.gid,
            "minxres": meta.minxres,
            "skipped": "archive exists",
            "archive": str(done),
        }
    try:
        gdir = await trio.to_thread.run_sync(storage.make_gallery_dir, deps.root, name, fallback)
    except OSError as exc:
        raise RetryableError(
            f"cannot create the gallery directory under {deps.root}: {exc}"
        ) from None
    run = _Run(deps, ctx, meta, gdir)
    ctx.progress(0, meta.filecount, message=f"starting {gdir.name}")
    await run.download()
    return await run.finish()
