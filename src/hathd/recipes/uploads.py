"""Upload jobs on the engine: submit a batch, run one ``upload`` job per file, finalize the
gallery when the batch has ended, summarize it.

Job kind ``upload``; ``target`` is the file's absolute path; ``domain`` is the service id (the
engine lane that carries the recipe's concurrency and rate); ``params`` =
``{"service", "path", "batch", "index", "gallery": {…} | None}``; the result is
``{"service", "file", "size", "url", "thumb", "delete"}``. A file is de-duplicated by
``dedupe_key = "<service>:<gallery name>:<path>"`` while its job is active, so submitting the
same folder twice does not upload twice: the later batch's item then points at the earlier
batch's job (and the file lands in the earlier batch's gallery). A batch is finalized once
none of its items' jobs is active, whichever batch those jobs were submitted for.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from hathd.engine.api import ACTIVE_STATES, EngineAPI, Job, JobContext, JobSpec
from hathd.errors import HathdError, PermanentError
from hathd.recipes import batches
from hathd.recipes.posts import Post, PostRequestError, Posts, PostTarget
from hathd.recipes.uploader import UnknownServiceError, Uploader
from hathd.recipes.user_templates import UserTemplates
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
    """What :meth:`Uploads.submit` returns (JSON-ready through :meth:`to_json`).

    ``skipped`` lists the files of the given folders that were left out, each as
    ``{"path", "reason"}`` (see :func:`expand_paths`)."""

    batch: str
    service: str
    jobs: list[dict[str, Any]]
    gallery: dict[str, str] | None
    skipped: list[dict[str, str]] = attrs.field(factory=list)

    def to_json(self) -> dict[str, Any]:
        """The API reply body."""
        return {
            "batch": self.batch,
            "service": self.service,
            "jobs": self.jobs,
            "gallery": self.gallery,
            "skipped": self.skipped,
        }


@attrs.frozen
class Expanded:
    """The files to upload, and the folder entries left out as ``(shown path, reason)``."""

    files: list[Path]
    skipped: list[tuple[str, str]]


def shown(path: str | Path) -> str:
    """``path`` as text that is always valid UTF-8: bytes of a name that are not UTF-8 (held
    by Python as lone surrogates) appear as ``\\xff`` escapes; other lone surrogates (a JSON
    ``\\ud800`` escape) as ``\\ud800``."""
    try:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return str(path).encode("utf-8", "backslashreplace").decode("utf-8")


def utf8_name(path: str | Path) -> bool:
    """Whether ``path`` is valid UTF-8 (and so can be stored, logged and sent as text)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def resolve_roots(roots: Sequence[str]) -> list[Path]:
    """The configured upload roots as real absolute paths (``~`` expanded to the daemon
    user's home, symbolic links resolved)."""
    return [Path(os.path.realpath(os.path.expanduser(r))) for r in roots]


def confined(path: str | Path, roots: Sequence[Path]) -> Path:
    """The real path of ``path`` (symbolic links resolved) when it lies inside one of
    ``roots`` (real paths, see :func:`resolve_roots`).

    :raises UploadRequestError: the path names ``..``, or it (or the file a symbolic link
        names) is outside every root.
    """
    if ".." in Path(path).parts:
        raise UploadRequestError(f"'{shown(path)}': a path with '..' is refused")
    real = Path(os.path.realpath(path))
    for root in roots:
        if real == root or real.is_relative_to(root):
            return real
    where = ", ".join(str(r) for r in roots) or "none configured"
    raise UploadRequestError(
        f"'{shown(path)}' is outside the upload roots ({where}); see [recipes] roots", 403
    )


def expand_paths(
    paths: Sequence[str], extensions: Sequence[str], roots: Sequence[Path] | None = None
) -> Expanded:
    """Absolute files from ``paths``: a file as is; a folder as its direct, non-hidden regular
    files (sorted by name; only ``extensions`` when the recipe lists some).

    With ``roots`` (real paths), every path must lie inside one of them (:func:`confined`),
    checked before anything else. A folder's entries that are symbolic links (which could
    lead anywhere outside it) or whose names are not valid UTF-8 are skipped and reported; a
    symbolic link named directly is followed when it stays inside the roots.

    :raises UploadRequestError: a relative, missing or unreadable path, a path that is not
        valid UTF-8 (named with ``\\xNN`` escapes), a path outside the roots or naming
        ``..`` (status 403 / 400), a file with an extension the recipe refuses, or nothing to
        upload.
    """
    allowed = {e.lower().lstrip(".") for e in extensions}
    out: list[Path] = []
    skipped: list[tuple[str, str]] = []
    for raw in paths:
        if not utf8_name(raw):
            raise UploadRequestError(
                f"'{shown(raw)}': the name is not valid UTF-8; rename it to upload it"
            )
        if not Path(raw).is_absolute():
            raise UploadRequestError(f"{raw!r}: paths must be absolute")
        if roots is not None:
            confined(raw, roots)
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            try:
                entries = sorted(path.iterdir(), key=lambda p: p.name)
            except OSError as exc:
                raise UploadRequestError(f"{raw!r}: cannot list: {exc.strerror}") from None
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if allowed and entry.suffix.lower().lstrip(".") not in allowed:
                    continue
                if entry.is_symlink():
                    skipped.append((shown(entry), "symbolic link"))
                    continue
                if not entry.is_file():
                    continue
                if not utf8_name(entry):
                    skipped.append((shown(entry), "name is not valid UTF-8"))
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
        detail = "; ".join(f"{p}: {why}" for p, why in skipped)
        raise UploadRequestError("nothing to upload" + (f" (skipped {detail})" if detail else ""))
    return Expanded(out, skipped)


def _folders(paths: Sequence[str]) -> list[str]:
    return [p for p in paths if utf8_name(p) and os.path.isdir(p)]


class Uploads:
    """The upload pipeline of one daemon: the recipes' sessions, the engine, the store."""

    def __init__(
        self,
        uploader: Uploader,
        engine: EngineAPI,
        store: Store,
        *,
        templates: dict[str, str] | None = None,
        roots: Sequence[str] | None = None,
        user_templates: UserTemplates | None = None,
    ) -> None:
        self.uploader = uploader
        self.roots = resolve_roots(uploader.config.roots if roots is None else roots)
        """The real folders uploads may read from (``[recipes] roots``)."""
        self.engine = engine
        self.store = store
        self.templates = dict(templates or {})
        self._final_lock = trio.Lock()
        self.on_batch_final: Callable[[str], Awaitable[object]] | None = None
        """Called with a batch id after the batch is finalized."""
        self.user_templates = user_templates
        """The Jinja2 output templates of the configuration (``None``: none)."""
        self.posts = Posts(uploader, engine, store)
        """The forum posts that wait on batches (see :mod:`hathd.recipes.posts`)."""
        self.posts.templates = self.templates
        self.posts.user_templates = user_templates

    def register(self) -> None:
        """Register the ``upload`` and ``forum-post`` handlers and one engine lane per image
        host and per forum."""
        self.engine.register(KIND, self.handle, on_final=self.on_final, validate=self.validate)
        self.posts.register()
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

        Folder entries left out (symbolic links, names that are not UTF-8; see
        :func:`expand_paths`) are logged and listed in :attr:`Submission.skipped`.

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
        expanded = await trio.to_thread.run_sync(
            expand_paths, list(paths), recipe.extensions, self.roots
        )
        files = expanded.files
        for path, reason in expanded.skipped:
            log.warning("upload to %s: skipping %s: %s", service, path, reason)
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
        # every job may have ended (deduplicated into jobs that finished meanwhile) before
        # the batch existed for their on_final to see; checked without the finalize lock
        # first, so a submission does not wait behind another batch's finalize
        if not await self._any_active(it.job_id for it in items):
            await self._finalize_if_done(batch_id)
        jobs = [
            {"index": it.index, "path": it.path, "job": it.job_id, "created": sub.created}
            for it, sub in zip(items, submitted, strict=True)
        ]
        skipped = [{"path": path, "reason": reason} for path, reason in expanded.skipped]
        return Submission(batch_id, service, jobs, gallery_values, skipped)

    async def submit_sets(
        self,
        paths: Sequence[str],
        service: str,
        *,
        per_folder: bool = False,
        gallery: str | None = None,
        priority: int = 0,
        post: PostTarget | None = None,
        fmt: str = "bbcode",
    ) -> tuple[list[Submission], Post | None]:
        """Submit ``paths`` as one batch, or with ``per_folder`` one batch per folder named
        (its gallery named after the folder, when the service has galleries) plus one batch
        of the files named directly (with ``gallery``, if given); then, with ``post``, the
        forum post of all those batches in output format ``fmt``, sent once they are
        finalized.

        Everything is checked before the first batch is created (paths, service, forum,
        thread, format), so a bad request creates nothing.

        :raises UploadRequestError: as :meth:`submit`; ``per_folder`` with ``gallery`` for
            folders (each folder names its own gallery); a bad post target or format.
        """
        if post is not None:
            try:
                self.posts.check(post)
            except PostRequestError as exc:
                raise UploadRequestError(str(exc)) from None
            known = {"bbcode", "html", "markdown", "links", *self.templates}
            if self.user_templates is not None:
                known.update(self.user_templates.formats)
            if fmt not in known:
                raise UploadRequestError(
                    f"unknown format {fmt!r}; known: {', '.join(sorted(known))}"
                )
        subs = await self._submit_sets(paths, service, per_folder, gallery, priority)
        if post is None:
            return subs, None
        try:
            created = await self.posts.create(post, [sub.batch for sub in subs], fmt)
        except PostRequestError as exc:
            raise UploadRequestError(str(exc)) from None
        return subs, created

    async def _submit_sets(
        self,
        paths: Sequence[str],
        service: str,
        per_folder: bool,
        gallery: str | None,
        priority: int,
    ) -> list[Submission]:
        if not per_folder:
            return [await self.submit(paths, service, gallery=gallery, priority=priority)]
        try:
            recipe = self.uploader.recipe(service)
        except UnknownServiceError as exc:
            raise UploadRequestError(str(exc)) from None
        folders = await trio.to_thread.run_sync(_folders, list(paths))
        files = [p for p in paths if p not in folders]
        if folders and gallery is not None:
            raise UploadRequestError("one gallery per folder: each folder names its own gallery")
        # check every path first: expand_paths raises on the first bad one
        await trio.to_thread.run_sync(expand_paths, list(paths), recipe.extensions, self.roots)
        out: list[Submission] = []
        for folder in folders:
            name = Path(folder).name if recipe.gallery is not None else None
            out.append(await self.submit([folder], service, gallery=name, priority=priority))
        if files:
            out.append(await self.submit(files, service, gallery=gallery, priority=priority))
        return out

    def validate(self, spec: JobSpec) -> None:
        """Check an ``upload`` job submitted directly (the admin API's ``POST /api/v1/jobs``,
        not ``POST /api/v1/uploads``): ``service`` names a recipe, ``path`` is an absolute,
        valid UTF-8 path of a regular file with an extension the recipe accepts (as
        :func:`expand_paths` requires of a named file).

        :raises ValueError: naming the field (``service``, ``path``).
        """
        service, raw = spec.params.get("service"), spec.params.get("path")
        if not isinstance(service, str):
            raise ValueError("service: must name a recipe")
        try:
            recipe = self.uploader.recipe(service)
        except UnknownServiceError as exc:
            raise ValueError(f"service: {exc}") from None
        if not isinstance(raw, str) or "\x00" in raw or not utf8_name(raw):
            raise ValueError("path: must be a valid UTF-8 path")
        try:
            expand_paths([raw], recipe.extensions, self.roots)
        except UploadRequestError as exc:
            raise ValueError(f"path: {exc}") from None
        if not Path(raw).is_file():
            raise ValueError(f"path: {raw!r} is not a file")

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
            # checked again when the job runs: the roots may have changed, or a folder on
            # the way may have been replaced by a symbolic link since the submission
            await trio.to_thread.run_sync(confined, path, self.roots)
        except UploadRequestError as exc:
            raise PermanentError(str(exc)) from None
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
        """After each upload job ends: for every batch with an item on this job (its own, and
        later batches whose same file was deduplicated into it), when no job of the batch is
        active any more, run the gallery's finalize, rename and result steps (if any), keep
        the values the result steps read (the gallery's link) and mark the batch
        finalized, exactly once.

        Calls are serialized and re-read the batch, so two jobs ending together cannot both
        finalize, nor both miss it. Finalize errors are recorded on the batch, not raised.
        """
        ids = await batches.batches_of_job(self.store, job.id)
        own = job.params.get("batch")
        if isinstance(own, str) and own not in ids:
            ids.insert(0, own)
        for batch_id in ids:
            await self._finalize_if_done(batch_id, ended=job)

    async def _any_active(self, job_ids: Iterable[str]) -> bool:
        for job_id in job_ids:
            job = await self.engine.get(job_id)
            if job is not None and job.state in ACTIVE_STATES:
                return True
        return False

    async def _finalize_if_done(self, batch_id: str, *, ended: Job | None = None) -> None:
        """Finalize ``batch_id`` unless it is unknown, already finalized, or has an active
        job (``ended`` is the job whose end triggered the check, as the engine reported it)."""
        async with self._final_lock:
            found = await batches.get_batch(self.store, batch_id)
            if found is None:
                return
            batch, items = found
            if batch.finalized_at is not None:
                return
            for item in items:
                if ended is not None and item.job_id == ended.id:
                    other: Job | None = ended
                else:
                    other = await self.engine.get(item.job_id)
                if other is not None and other.state in ACTIVE_STATES:
                    return
            error: str | None = None
            gallery: dict[str, str] | None = None
            if batch.gallery is not None:
                try:
                    read = await self.uploader.session(batch.service).finalize_gallery(
                        batch.gallery
                    )
                except HathdError as exc:
                    error = str(exc)
                    log.warning("finalizing gallery of batch %s failed: %s", batch_id, exc)
                else:
                    if read:
                        gallery = {**batch.gallery, **read}
            await batches.mark_finalized(self.store, batch_id, error, gallery)
        await self.posts.release_ready()
        if self.on_batch_final is not None:
            await self.on_batch_final(batch_id)

    async def summary(self, batch_id: str) -> dict[str, Any] | None:
        """The batch summary (see :func:`hathd.recipes.batches.summarize`), or ``None``."""
        found = await batches.get_batch(self.store, batch_id)
        if found is None:
            return None
        batch, items = found
        return await batches.summarize(
            self.engine, batch, items, self.templates, self.user_templates
        )

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
