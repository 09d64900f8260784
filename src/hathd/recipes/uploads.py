"""Upload jobs on the engine: submit a batch, run one ``upload`` job per file, finalize the
gallery when the batch has ended, summarize it.

Job kind ``upload``; ``target`` is the file's absolute path; ``domain`` is the service id (the
engine lane that carries the recipe's concurrency and rate); ``params`` =
``{"service", "path", "batch", "index", "gallery": {…} | None}``; the result is
``{"service", "file", "size", "url", "thumb", "delete"}``. A file is de-duplicated by
``dedupe_key = "<service>:<gallery name>:<path>"`` while its job is active, so submitting the
same folder twice does not upload twice.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from hathd.engine.api import ACTIVE_STATES, EngineAPI, Job, JobContext, JobSpec
from hathd.errors import HathdError, PermanentError
from hathd.recipes import batches
from hathd.recipes.uploader import UnknownServiceError, Uploader
from hathd.store import Store

log = logging.getLogger(__name__)

KIND = "upload"


class UploadRequestError(HathdError):
    """A submission is invalid (unknown service, missing file, no gallery support…);
    ``status`` is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@attrs.frozen
class Submission:
    """What :meth:`Uploads.submit` returns (JSON-ready through :meth:`to_json`)."""

    batch: str
    service: str
    jobs: list[dict[str, Any]]
    gallery: dict[str, str] | None

    def to_json(self) -> dict[str, Any]:
        """The API reply body."""
        return {
            "batch": self.batch,
            "service": self.service,
            "jobs": self.jobs,
            "gallery": self.gallery,
        }


def expand_paths(paths: Sequence[str], extensions: Sequence[str]) -> list[Path]:
    """Absolute files from ``paths``: a file as is; a folder as its direct, non-hidden files
    (sorted by name; only ``extensions`` when the recipe lists some).

    :raises UploadRequestError: a relative, missing or unreadable path, a file with an
        extension the recipe refuses, or nothing to upload.
    """
    allowed = {e.lower().lstrip(".") for e in extensions}
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_absolute():
            raise UploadRequestError(f"{raw!r}: paths must be absolute")
        if path.is_dir():
            try:
                entries = sorted(path.iterdir(), key=lambda p: p.name)
            except OSError as exc:
                raise UploadRequestError(f"{raw!r}: cannot list: {exc.strerror}") from None
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_file():
                    continue
                if allowed and entry.suffix.lower().lstrip(".") not in allowed:
                    continue
                out.append(entry)
        elif path.is_file():
            if allowed and path.suffix.lower().lstrip(".") not in allowed:
                raise UploadRequestError(
                    f"{raw!r}: the service accepts only {', '.join(sorted(allowed))}"
                )
            if not os.access(path, os.R_OK):
                raise UploadRequestError(f"{raw!r}: not readable")
            out.append(path)
        else:
            raise UploadRequestError(f"{raw!r}: no such file or folder")
    if not out:
        raise UploadRequestError("nothing to upload")
    return out


class Uploads:
    """The upload pipeline of one daemon: the recipes' sessions, the engine, the store."""

    def __init__(
        self,
        uploader: Uploader,
        engine: EngineAPI,
        store: Store,
        *,
        templates: dict[str, str] | None = None,
    ) -> None:
        self.uploader = uploader
        self.engine = engine
        self.store = store
        self.templates = dict(templates or {})
        self._final_lock = trio.Lock()

    def register(self) -> None:
        """Register the ``upload`` handler and one engine lane per service."""
        self.engine.register(KIND, self.handle, on_final=self.on_final)
        for rid, recipe in sorted(self.uploader.recipes.items()):
            self.engine.add_lane(
                rid,
                concurrency=recipe.limits.concurrency,
                rate=recipe.limits.rate,
                burst=recipe.limits.burst,
            )

    async def submit(
        self,
        paths: Sequence[str],
        service: str,
        *,
        gallery: str | None = None,
        priority: int = 0,
    ) -> Submission:
        """Create a batch: the gallery (when asked, right away), then one job per file.

        :raises UploadRequestError: bad input (400), or the gallery could not be created (502).
        """
        try:
            recipe = self.uploader.recipe(service)
        except UnknownServiceError as exc:
            raise UploadRequestError(str(exc)) from None
        if gallery is not None and (recipe.gallery is None or not gallery.strip()):
            raise UploadRequestError(
                f"service {service!r} does not support galleries"
                if recipe.gallery is None
                else "the gallery name must not be empty"
            )
        files = await trio.to_thread.run_sync(expand_paths, list(paths), recipe.extensions)
        batch_id = uuid.uuid4().hex[:12]
        gallery_values: dict[str, str] | None = None
        if gallery is not None:
            try:
                gallery_values = await self.uploader.session(service).create_gallery(
                    gallery, {"batch": batch_id}
                )
            except HathdError as exc:
                raise UploadRequestError(f"creating the gallery failed: {exc}", 502) from None
        specs = [
            JobSpec(
                kind=KIND,
                target=str(path),
                domain=service,
                params={
                    "service": service,
                    "path": str(path),
                    "batch": batch_id,
                    "index": index,
                    "gallery": gallery_values,
                },
                priority=priority,
                source="api",
                source_id=f"{batch_id}/{index}",
                dedupe_key=f"{service}:{gallery or ''}:{path}",
            )
            for index, path in enumerate(files)
        ]
        submitted = await self.engine.submit_many(specs)
        items = [
            batches.Item(index, sub.job.id, str(path))
            for index, (path, sub) in enumerate(zip(files, submitted, strict=True))
        ]
        await batches.insert_batch(self.store, batch_id, service, gallery, gallery_values, items)
        jobs = [
            {"index": it.index, "path": it.path, "job": it.job_id, "created": sub.created}
            for it, sub in zip(items, submitted, strict=True)
        ]
        return Submission(batch_id, service, jobs, gallery_values)

    async def handle(self, ctx: JobContext) -> dict[str, Any]:
        """The ``upload`` job handler: upload ``params.path`` with ``params.service``.

        :raises PermanentError: bad params, an unknown service, or see
            :meth:`~hathd.recipes.runner.ServiceSession.upload`.
        :raises RetryableError | RateLimitedError: transient trouble.
        """
        params = ctx.job.params
        try:
            service = str(params["service"])
            path = Path(str(params["path"]))
        except KeyError as exc:
            raise PermanentError(f"upload job without {exc.args[0]!r}") from None
        if not path.is_absolute():
            raise PermanentError(f"{str(path)!r}: the job's path must be absolute")
        try:
            session = self.uploader.session(service)
        except UnknownServiceError as exc:
            raise PermanentError(str(exc)) from None
        extra = {"batch": str(params.get("batch", "")), "index": str(params.get("index", 0))}
        gallery = params.get("gallery")
        if isinstance(gallery, dict):
            extra.update({str(k): str(v) for k, v in gallery.items()})

        def progress(done: int, total: int) -> None:
            ctx.progress(done, total)

        result = await session.upload(path, extra=extra, progress=progress)
        return result.to_json()

    async def on_final(self, job: Job) -> None:
        """After each upload job ends: when it was the last active job of a batch, run the
        gallery's finalize steps (if any) and mark the batch finalized, exactly once.

        Calls are serialized and re-read the batch, so two jobs ending together cannot both
        finalize, nor both miss it. Finalize errors are recorded on the batch, not raised.
        """
        batch_id = job.params.get("batch")
        if not isinstance(batch_id, str):
            return
        async with self._final_lock:
            found = await batches.get_batch(self.store, batch_id)
            if found is None:
                return
            batch, items = found
            if batch.finalized_at is not None:
                return
            for item in items:
                other = job if item.job_id == job.id else await self.engine.get(item.job_id)
                if other is not None and other.state in ACTIVE_STATES:
                    return
            error: str | None = None
            if batch.gallery is not None:
                try:
                    await self.uploader.session(batch.service).finalize_gallery(batch.gallery)
                except HathdError as exc:
                    error = str(exc)
                    log.warning("finalizing gallery of batch %s failed: %s", batch_id, exc)
            await batches.mark_finalized(self.store, batch_id, error)

    async def summary(self, batch_id: str) -> dict[str, Any] | None:
        """The batch summary (see :func:`hathd.recipes.batches.summarize`), or ``None``."""
        found = await batches.get_batch(self.store, batch_id)
        if found is None:
            return None
        batch, items = found
        return await batches.summarize(self.engine, batch, items, self.templates)

    async def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest batches (id, service, gallery name, created/finalized times)."""
        return [
            {
                "batch": b.id,
                "service": b.service,
                "gallery": b.gallery_name,
                "created_at": b.created_at,
                "finalized_at": b.finalized_at,
            }
            for b in await batches.recent_batches(self.store, limit)
        ]
