"""The thin Trio/httpx shell that runs a recipe: login chain, prepare chain, upload, retries.

One :class:`ServiceSession` per service holds one httpx cookie jar. Its login (the recipe's
``login`` chain) is shared by every upload until ``session.ttl`` seconds pass or a reply shows
it expired (a ``relogin_status`` or a redirect to ``relogin_url``); then it logs in again once
and repeats the request. Uploads are streamed from disk in 256 KiB chunks with an exact
``Content-Length``, reporting progress (bytes) through a callback.

Outcomes map onto the engine's classified errors (:mod:`hathd.errors`):

- 429/5xx/408 (the recipe's ``retryable_codes``) and network errors are retried inside the
  try as the recipe's :class:`~hathd.recipes.model.RetryPolicy` says; once retries are spent,
  a 429 becomes ``RateLimitedError(retry_after)`` and the rest ``RetryableError``; a
  ``Retry-After`` longer than ``max_retry_after`` ends the try at once with
  ``RateLimitedError``.
- a refused login step (401/403 or any other 4xx), a value a step could not extract, a file
  field that names another file (refused before any request), a missing credential, an
  upload the host rejected: ``PermanentError``.

Every message passes through :func:`hathd.recipes.redact.redact`: secrets never appear.
"""

from __future__ import annotations

import hashlib
import random
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from hathd.errors import PermanentError, RateLimitedError, RetryableError
from hathd.recipes import multipart
from hathd.recipes.extract import (
    ExtractionError,
    ExtractorSyntaxError,
    ResponseView,
    bind_extractor,
    extract_all,
    try_extract,
)
from hathd.recipes.model import Recipe, Site, Step
from hathd.recipes.plan import (
    RequestPlan,
    check_file_fields,
    file_values,
    parse_upload,
    plan_step,
    plan_upload,
    render_links,
)
from hathd.recipes.ratelimit import Limiter, new_bucket
from hathd.recipes.redact import install_log_filter, redact, register
from hathd.recipes.retry import Verdict, backoff, classify
from hathd.recipes.template import TemplateError, placeholders, render
from hathd.recipes.thumbnails import Thumbnail, Thumbnailer
from hathd.retryafter import parse_retry_after
from hathd.tokenbucket import TokenBucket

CHUNK = 256 * 1024
MAX_REDIRECTS = 10
MAX_REPLY = 4 * 1024 * 1024
"""Replies are read up to this many bytes (login pages and JSON answers are far smaller)."""

Progress = Callable[[int, int], None]
"""``progress(done_bytes, total_bytes)``."""

RANDOM_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
RANDOM_ID_LENGTH = 20


def random_id() -> str:
    """The ``{random_id}`` template value: 20 random characters of ``[0-9a-z]``, new for each
    upload and each gallery (the ``upload_id`` a TurboImageHost client picks itself,
    twwat/bbdrop ``src/network/turbo_image_host_client.py``)."""
    return "".join(secrets.choice(RANDOM_ID_ALPHABET) for _ in range(RANDOM_ID_LENGTH))


def _walk(steps: Sequence[Step]) -> list[Step]:
    out: list[Step] = []
    for step in steps:
        out.append(step)
        out.extend(_walk(step.then))
    return out


class _Relogin(Exception):
    """The session expired: log in again and repeat."""


class _FileChanged(Exception):
    """The file shrank while it was being sent."""


@attrs.frozen
class UploadResult:
    """One uploaded file: its links, the file name and size (bytes), and the values the
    reply yielded."""

    service: str
    file: str
    size: int
    url: str
    thumb: str = ""
    delete: str = ""
    values: dict[str, str] = attrs.field(factory=dict)
    thumb_width: int = 0
    """Width in pixels of the local thumbnail (0: none was made)."""
    thumb_height: int = 0

    def to_json(self) -> dict[str, Any]:
        """The result as stored in the job record (``thumb_width``/``thumb_height`` only
        when a local thumbnail was made)."""
        out: dict[str, Any] = {
            "service": self.service,
            "file": self.file,
            "size": self.size,
            "url": self.url,
            "thumb": self.thumb,
            "delete": self.delete,
        }
        if self.thumb_width:
            out.update(thumb_width=self.thumb_width, thumb_height=self.thumb_height)
        return out


@attrs.define
class SessionStatistics:
    """Counters of one service session."""

    requests: int = 0
    logins: int = 0
    retries: int = 0
    uploads: int = 0
    failures: int = 0
    bytes_sent: int = 0


class ServiceSession:
    """A logged-in (or anonymous) session with one image host.

    ``credentials`` fill the recipe's credential names; ``global_bucket`` is shared by all
    services; ``thumbnailer`` makes the local thumbnails of a recipe with ``[thumbnail]``
    (one is made on first use otherwise); ``transport`` (tests) replaces httpx's network
    transport; ``timeout`` is
    seconds for connect, and for each read/write (ConniesUploader settled on 180 s/60 s after
    a 10 s timeout broke large uploads, its architecture notes v2.1).
    """

    def __init__(
        self,
        recipe: Site,
        credentials: Mapping[str, str],
        *,
        global_bucket: TokenBucket | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        timeout: float = 180.0,
        thumbnailer: Thumbnailer | None = None,
    ) -> None:
        self.recipe = recipe
        self._thumbnailer = thumbnailer
        self._credentials = dict(credentials)
        self._secrets = [v for k, v in self._credentials.items() if k in recipe.secrets and v]
        self._derived = self._derive()
        register(self._secrets)
        install_log_filter()
        limits = httpx.Timeout(timeout, connect=min(timeout, 30.0))
        self._client = httpx.AsyncClient(transport=transport, timeout=limits)
        self._plain = httpx.AsyncClient(transport=transport, timeout=limits)
        buckets = [new_bucket(recipe.limits.rate, recipe.limits.burst)]
        if global_bucket is not None:
            buckets.append(global_bucket)
        self.limiter = Limiter(buckets)
        self._rng = rng or random.Random()
        self._login_lock = trio.Lock()
        self._login_values: dict[str, str] | None = None
        self._login_at = 0.0
        self._generation = 0
        self._relogin_re = (
            re.compile(recipe.session.relogin_url) if recipe.session.relogin_url else None
        )
        self.stats = SessionStatistics()
        self._inflight = 0
        self._close_requested = False
        self._closed = False
        self._gallery_names: set[str] = set()
        if isinstance(recipe, Recipe) and recipe.gallery is not None:
            for step in _walk(recipe.gallery.create):
                self._gallery_names.update(step.extract)

    def _derive(self) -> dict[str, str]:
        """The recipe's ``derive`` values (hex digests); a digest of a template that names a
        secret is itself a secret (redacted like the credential)."""
        values = {c.name: self._credentials.get(c.name, "") for c in self.recipe.credentials}
        values.update(self.recipe.options)
        out: dict[str, str] = {}
        for name, spec in self.recipe.derive.items():
            func, _sep, template = spec.partition(":")
            try:
                text = render(template, values)
            except TemplateError:
                continue  # a missing credential is reported by _base_values
            digest = hashlib.new(func, text.encode("utf-8")).hexdigest()
            out[name] = digest
            if any(("{" + secret + "}") in template for secret in self.recipe.secrets) and text:
                self._secrets.append(digest)
        return out

    @property
    def _host(self) -> Recipe:
        if not isinstance(self.recipe, Recipe):
            raise PermanentError(f"service {self.recipe.id!r} is not an image host")
        return self.recipe

    @property
    def cookies(self) -> httpx.Cookies:
        """The session's cookie jar."""
        return self._client.cookies

    @property
    def closed(self) -> bool:
        """Whether the HTTP clients are closed."""
        return self._closed

    async def aclose(self) -> None:
        """Close the HTTP clients now (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await self._client.aclose()
        await self._plain.aclose()

    async def close_when_idle(self) -> None:
        """Close at once when no operation is running, else when the last one ends (so a
        shutdown does not pull the connection from under an upload the engine is still
        winding down)."""
        self._close_requested = True
        if self._inflight == 0:
            await self.aclose()

    @asynccontextmanager
    async def _operation(self) -> AsyncIterator[None]:
        if self._closed:
            raise RetryableError(f"{self.recipe.id}: the uploader is shutting down")
        self._inflight += 1
        try:
            yield
        finally:
            self._inflight -= 1
            if self._close_requested and self._inflight == 0:
                with trio.CancelScope(shield=True):
                    await self.aclose()

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def _base_values(self) -> dict[str, str]:
        missing = [
            c.name
            for c in self.recipe.credentials
            if c.required and not self._credentials.get(c.name)
        ]
        if missing:
            keys = ", ".join(missing)
            raise PermanentError(
                f"service {self.recipe.id!r} needs credential(s) {keys}: set"
                f' [recipes.services."{self.recipe.id}"].credentials'
            )
        values = {c.name: self._credentials.get(c.name, "") for c in self.recipe.credentials}
        values.update(self.recipe.options)
        values.update(self._derived)
        values.update(dict.fromkeys(self._gallery_names, ""))
        values.update(
            base_url=self.recipe.base_url.rstrip("/"),
            service=self.recipe.id,
            gallery_id="",
            gallery_name="",
            batch="",
            index="0",
            thumb_filename="",
            thumb_mime="",
            random_id="",
        )
        return values

    # -- sending -------------------------------------------------------------------------

    async def _body(
        self, segments: Sequence[multipart.Segment], total: int, progress: Progress | None
    ) -> AsyncIterator[bytes]:
        """Yield the multipart body: file bytes read in ``CHUNK`` pieces, the small text
        segments joined to the neighbouring file chunks (fewer, fuller TCP writes)."""
        done = 0
        pending = b""
        for position, segment in enumerate(segments):
            if isinstance(segment, bytes):
                pending += segment
                continue
            rest = segments[position + 1 :]
            tail = b"".join(t for t in rest if isinstance(t, bytes))
            last_file = len(tail) == sum(len(t) if isinstance(t, bytes) else -1 for t in rest)
            remaining = segment.size
            async with await trio.open_file(segment.path, "rb") as f:
                while remaining:
                    chunk = await f.read(min(CHUNK, remaining))
                    if not chunk:
                        raise _FileChanged(str(segment.path))
                    remaining -= len(chunk)
                    self.stats.bytes_sent += len(chunk)
                    out, pending = pending + chunk, b""
                    if not remaining and last_file:
                        out += tail
                    done += len(out)
                    if progress is not None:
                        progress(done, total)
                    yield out
            if last_file:
                if segment.size == 0:  # an empty file: the rest still has to go
                    out, pending = pending + tail, b""
                    done += len(out)
                    yield out
                break
        if pending:
            done += len(pending)
            yield pending
        if progress is not None:
            progress(done, total)

    def _build(
        self,
        client: httpx.AsyncClient,
        plan: RequestPlan,
        method: str,
        url: str,
        progress: Progress | None,
        *,
        with_body: bool = True,
    ) -> httpx.Request:
        headers = dict(plan.headers)
        kwargs: dict[str, Any] = {}
        if with_body and plan.parts is not None:
            boundary = multipart.new_boundary()
            segments, length = multipart.encode(plan.parts, boundary)
            headers["Content-Type"] = multipart.content_type(boundary)
            headers["Content-Length"] = str(length)
            kwargs["content"] = self._body(segments, length, progress)
        elif with_body and plan.form is not None:
            kwargs["data"] = plan.form
        params = plan.query or None if url == plan.url else None
        return client.build_request(method, url, headers=headers, params=params, **kwargs)

    async def _send(self, plan: RequestPlan, progress: Progress | None) -> ResponseView:
        """Send ``plan``, following redirects (when the plan says so) hop by hop so that
        every hop takes a token from the rate limiter and its cookies land in the jar."""
        client = self._client if plan.cookies else self._plain
        request = self._build(client, plan, plan.method, plan.url, progress)
        try:
            for _hop in range(MAX_REDIRECTS + 1):
                await self.limiter.acquire()
                self.stats.requests += 1
                reply = await client.send(request, stream=True, follow_redirects=False)
                try:
                    body = bytearray()
                    async for chunk in reply.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_REPLY:
                            break
                finally:
                    await reply.aclose()
                following = reply.next_request if plan.follow_redirects else None
                if following is None:
                    return ResponseView(
                        reply.status_code,
                        dict(reply.headers),
                        str(reply.url),
                        bytes(body[:MAX_REPLY]),
                        reply.encoding or "utf-8",
                    )
                if reply.status_code in (307, 308) and plan.parts is not None:
                    # the streamed body is spent: build it again for the new location
                    request = self._build(
                        client, plan, following.method, str(following.url), progress
                    )
                else:
                    request = following
        finally:
            if not plan.cookies:
                self._plain.cookies.clear()
        raise PermanentError(
            f"{self.recipe.id}: step {plan.step!r}: more than {MAX_REDIRECTS} redirects"
        )

    async def _request(
        self, plan: RequestPlan, *, session_check: bool, progress: Progress | None = None
    ) -> ResponseView:
        """Send ``plan`` with the retry policy; return an accepted reply.

        :raises _Relogin: (``session_check``) the reply says the session expired.
        :raises PermanentError | RetryableError | RateLimitedError: see the module docstring.
        """
        policy = self.recipe.retry
        where = f"{self.recipe.id}: step {plan.step!r}"
        retry = 0
        while True:
            try:
                view = await self._send(plan, progress)
            except _FileChanged as exc:
                raise RetryableError(f"{where}: file {exc} changed while being sent") from None
            except httpx.HTTPError as exc:
                if retry >= policy.max_retries:
                    raise RetryableError(
                        self._redact(f"{where}: {type(exc).__name__}: {exc}")
                    ) from None
                retry += 1
                self.stats.retries += 1
                await trio.sleep(backoff(policy, retry, self._rng))
                continue
            at_login = bool(self._relogin_re and self._relogin_re.search(view.url))
            verdict = classify(
                view.status,
                policy=policy,
                expect=plan.expect,
                relogin_status=self.recipe.session.relogin_status if session_check else (),
                final_url_is_login=session_check and at_login,
            )
            if verdict is Verdict.OK:
                return view
            if verdict is Verdict.RELOGIN:
                raise _Relogin()
            if verdict is Verdict.RETRY:
                wait_for = parse_retry_after(view.headers, time.time())
                message = f"{where}: HTTP {view.status}"
                if wait_for is not None and wait_for > policy.max_retry_after:
                    raise RateLimitedError(
                        f"{message}, Retry-After {wait_for:g} s", retry_after=wait_for
                    )
                if retry >= policy.max_retries:
                    if view.status == 429:
                        raise RateLimitedError(
                            f"{message} after {retry} retries", retry_after=wait_for
                        )
                    raise RetryableError(f"{message} after {retry} retries")
                retry += 1
                self.stats.retries += 1
                await trio.sleep(max(backoff(policy, retry, self._rng), wait_for or 0.0))
                continue
            raise self._failure(plan, view)

    def _failure(self, plan: RequestPlan, view: ResponseView) -> Exception:
        where = f"{self.recipe.id}: step {plan.step!r}"
        if view.status >= 500:
            return RetryableError(f"{where}: HTTP {view.status}")
        snippet = self._redact(" ".join(view.text[:200].split()))
        error_spec = self.recipe.upload.response.error if isinstance(self.recipe, Recipe) else None
        if plan.step == "upload" and error_spec is not None:
            snippet = self._redact(try_extract("error", error_spec, view) or snippet)
        if plan.step != "upload" and view.status in (401, 403):
            return PermanentError(
                f"{where}: login refused (HTTP {view.status}); check the credentials of"
                f" service {self.recipe.id!r}" + (f": {snippet}" if snippet else "")
            )
        return PermanentError(
            f"{where}: HTTP {view.status} not accepted" + (f": {snippet}" if snippet else "")
        )

    async def _run_chain(
        self,
        steps: Sequence[Step],
        values: Mapping[str, str],
        *,
        session_check: bool,
        chain: str = "",
    ) -> dict[str, str]:
        """Run ``steps`` in order (children after their parent, seeing its values); return
        every value they extracted. ``chain`` (``upload.result``, ``gallery.result``) names
        follow-up steps in errors: their values are a result's links, not a login's."""
        found: dict[str, str] = {}
        label = f"{chain} step" if chain else "step"
        for step in steps:
            try:
                plan = plan_step(step, values)
            except TemplateError as exc:
                raise PermanentError(
                    self._redact(f"{self.recipe.id}: {label} {step.name!r}: {exc}")
                ) from None
            view = await self._request(plan, session_check=session_check)
            specs = step.extract
            if chain:
                try:
                    specs = {n: bind_extractor(ex, values) for n, ex in specs.items()}
                except (TemplateError, ExtractorSyntaxError) as exc:
                    raise PermanentError(
                        self._redact(f"{self.recipe.id}: {label} {step.name!r}: {exc}")
                    ) from None
            try:
                got = extract_all(specs, view)
            except ExtractionError as exc:
                hint = (
                    "the result page does not hold it (the site changed?)"
                    if chain
                    else "the login may have been refused or the site changed"
                )
                raise PermanentError(
                    f"{self.recipe.id}: {label} {step.name!r} (HTTP {view.status}): field"
                    f" {exc.name!r}: {exc}; {hint}"
                ) from None
            found.update(got)
            if step.then:
                found.update(
                    await self._run_chain(
                        step.then, {**values, **got}, session_check=session_check, chain=chain
                    )
                )
        return found

    # -- login ---------------------------------------------------------------------------

    async def login(self) -> tuple[dict[str, str], int]:
        """The session's values after login (logging in when needed) and its generation."""
        async with self._login_lock:
            now = trio.current_time()
            if self._login_values is not None and now - self._login_at < self.recipe.session.ttl:
                return self._login_values, self._generation
            base = self._base_values()
            self._client.cookies.clear()
            found = await self._run_chain(self.recipe.login, base, session_check=False)
            if self.recipe.login:
                self.stats.logins += 1
            self._login_values = {**base, **found}
            self._login_at = trio.current_time()
            self._generation += 1
            return self._login_values, self._generation

    def _expire(self, generation: int) -> None:
        if generation == self._generation:
            self._login_values = None

    # -- public operations ---------------------------------------------------------------

    async def upload(
        self,
        path: Path,
        *,
        extra: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> UploadResult:
        """Upload the file at ``path`` (absolute; the job's own file).

        ``extra`` adds template values (``batch``, ``index``, ``gallery_id``, ``gallery_name``).

        :raises PermanentError: see the module docstring; also a file the recipe refuses
            (size above ``max_file_size``, extension not in ``extensions``) or that is missing.
        :raises RetryableError | RateLimitedError: transient trouble after the recipe's retries.
        """
        try:
            size = (await trio.Path(path).stat()).st_size
        except OSError as exc:
            raise PermanentError(f"cannot read {str(path)!r}: {exc.strerror}") from None
        self._check_file(path, size)
        async with self._operation():
            try:
                return await self._upload(path, size, dict(extra or {}), progress)
            except (PermanentError, RetryableError):
                self.stats.failures += 1
                raise

    def _check_file(self, path: Path, size: int) -> None:
        recipe = self._host
        check_file_fields(recipe)
        if recipe.max_file_size is not None and size > recipe.max_file_size:
            raise PermanentError(
                f"{path.name}: {size} bytes is above {recipe.id}'s limit of"
                f" {recipe.max_file_size} bytes"
            )
        ext = path.suffix.lstrip(".").lower()
        if recipe.extensions and ext not in {e.lower().lstrip(".") for e in recipe.extensions}:
            raise PermanentError(
                f"{path.name}: {recipe.id} accepts only {', '.join(recipe.extensions)}"
            )

    async def _thumbnail(self, path: Path) -> Thumbnail | None:
        """The local thumbnail of ``path`` when the recipe asks for one."""
        spec = self._host.thumbnail
        if spec is None:
            return None
        if self._thumbnailer is None:
            self._thumbnailer = Thumbnailer()
        return await self._thumbnailer.make(path, spec)

    async def _upload(
        self, path: Path, size: int, extra: dict[str, str], progress: Progress | None
    ) -> UploadResult:
        thumb = await self._thumbnail(path)
        try:
            return await self._upload_with(path, size, extra, progress, thumb)
        finally:
            if thumb is not None:
                Thumbnailer.discard(thumb)

    async def _upload_with(
        self,
        path: Path,
        size: int,
        extra: dict[str, str],
        progress: Progress | None,
        thumb: Thumbnail | None,
    ) -> UploadResult:
        for attempt in range(2):
            values, generation = await self.login()
            values = {**values, **file_values(path, size), "random_id": random_id(), **extra}
            if thumb is not None:
                values.update(
                    thumb_filename=f"{path.stem}_thumb.{thumb.path.suffix.lstrip('.')}",
                    thumb_mime=thumb.mime,
                )
            check = self._session_check(attempt)
            try:
                values.update(
                    await self._run_chain(self._host.prepare, values, session_check=check)
                )
                try:
                    plan = plan_upload(self._host, values, path, thumb)
                except TemplateError as exc:
                    raise PermanentError(f"{self.recipe.id}: upload: {exc}") from None
                view = await self._request(plan, session_check=check, progress=progress)
            except _Relogin:
                self._expire(generation)
                continue
            spec = self._host.upload
            outcome = parse_upload(spec.response, view, values, links=not spec.result)
            if not outcome.ok:
                raise PermanentError(
                    self._redact(
                        f"{self.recipe.id}: upload of {path.name} refused: {outcome.message}"
                    )
                )
            links = (outcome.url, outcome.thumb, outcome.delete)
            found = outcome.values
            if spec.result:
                self._check_handover(path, view, found)
                links, found = await self._upload_result(path, {**values, **found}, found)
            self.stats.uploads += 1
            return UploadResult(
                self.recipe.id,
                path.name,
                size,
                *links,
                found,
                thumb.width if thumb is not None else 0,
                thumb.height if thumb is not None else 0,
            )
        raise PermanentError(
            f"{self.recipe.id}: the session expired again right after logging in; check"
            " session.relogin_status / session.relogin_url of the recipe"
        )

    def _check_handover(self, path: Path, view: ResponseView, found: Mapping[str, str]) -> None:
        """Refuse an upload whose reply lacks a value of ``upload.response.extract`` that the
        first ``[[upload.result]]`` steps need (the result page's address, a file code): the
        host did not take the file, and its ``error`` message (when found) says why.

        :raises PermanentError: such a value is missing.
        """
        response = self._host.upload.response
        needed: list[str] = []
        for step in self._host.upload.result:
            templates = [step.url, *step.headers.values(), *step.query.values()]
            templates += step.form.values()
            for template in templates:
                try:
                    names = placeholders(template)
                except TemplateError:
                    continue  # the loader refuses such recipes; render() reports it
                needed += [n for n in names if n in response.extract and n not in found]
        if not needed:
            return
        message = try_extract("error", response.error, view) if response.error else None
        if not message:
            listed = ", ".join(dict.fromkeys(needed))
            message = f"HTTP {view.status}: no {listed} in reply"
        raise PermanentError(
            self._redact(f"{self.recipe.id}: upload of {path.name} refused: {message}")
        )

    async def _upload_result(
        self, path: Path, values: dict[str, str], found: dict[str, str]
    ) -> tuple[tuple[str, str, str], dict[str, str]]:
        """Run the recipe's ``[[upload.result]]`` steps after an accepted upload reply and
        render the links over everything; return ``(url, thumb, delete)`` and the values
        extracted by the reply and the steps.

        :raises PermanentError: a step's template names a value the reply did not give, a
            step's extraction found nothing (recipe, step and value named), or ``url`` is not
            an ``http(s)://`` URL.
        """
        spec = self._host.upload
        # never a relogin here: the file has gone already and must not be sent twice
        got = await self._run_chain(spec.result, values, session_check=False, chain="upload.result")
        merged = {**values, **got}
        url, thumb, delete, raw_url = render_links(spec.response, merged)
        if not url:
            raise PermanentError(
                self._redact(
                    f"{self.recipe.id}: upload of {path.name}: upload.response.url gave no"
                    f" http(s) URL after the result steps: {raw_url[:80]!r}"
                )
            )
        return (url, thumb, delete), {**found, **got}

    def _session_check(self, attempt: int) -> bool:
        """Whether replies may mean "session expired": only with a login chain, and not
        right after a fresh login (then the status is reported as it is)."""
        return bool(self.recipe.login) and attempt == 0

    async def create_gallery(
        self, name: str, extra: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Run the recipe's ``gallery.create`` chain; return every value it extracted
        (``gallery_id`` among them; ``gallery_url`` extracted, else from the recipe's
        ``[gallery] url``), to be passed to each upload and to the finalize and rename steps.

        :raises PermanentError: the recipe has no gallery steps, a credential named in its
            ``[gallery] credentials`` is missing (before any request), or the host refused.
        :raises RetryableError | RateLimitedError: transient trouble after retries.
        """
        gallery = self._host.gallery
        if gallery is None or not (gallery.create or gallery.id):
            raise PermanentError(f"service {self.recipe.id!r} does not support galleries")
        missing = [n for n in gallery.credentials if not self._credentials.get(n)]
        if missing:
            raise PermanentError(
                f"galleries on {self.recipe.id!r} need credential(s) {', '.join(missing)}: set"
                f' [recipes.services."{self.recipe.id}"].credentials'
            )
        async with self._operation():
            return await self._create_gallery(gallery.create, name, extra)

    async def _create_gallery(
        self, steps: Sequence[Step], name: str, extra: Mapping[str, str] | None
    ) -> dict[str, str]:
        for attempt in range(2):
            values, generation = await self.login()
            values = {
                **values,
                "random_id": random_id(),
                **dict(extra or {}),
                "gallery_name": name,
            }
            check = self._session_check(attempt)
            try:
                found = await self._run_chain(steps, values, session_check=check)
            except _Relogin:
                self._expire(generation)
                continue
            spec = self._host.gallery
            if spec is not None and spec.id and not found.get("gallery_id"):
                try:
                    found["gallery_id"] = render(spec.id, {**values, **found})
                except TemplateError as exc:
                    raise PermanentError(f"{self.recipe.id}: gallery.id: {exc}") from None
            template = spec.url if spec is not None else ""
            if template and not found.get("gallery_url"):
                try:
                    found["gallery_url"] = render(template, {**values, **found})
                except TemplateError as exc:
                    raise PermanentError(f"{self.recipe.id}: gallery.url: {exc}") from None
            return {"gallery_name": name, **found}
        raise PermanentError(f"{self.recipe.id}: the session expired again right after login")

    async def finalize_gallery(self, gallery: Mapping[str, str]) -> dict[str, str]:
        """Run the recipe's ``gallery.finalize`` chain, then ``gallery.rename``, then
        ``gallery.result``, with the values ``create_gallery`` returned; return the values
        the ``result`` chain extracted (``gallery_url`` replacing the link known so far), or
        ``{}`` (nothing happens when the recipe has none of them).

        :raises PermanentError: as for uploads; also a ``gallery.result`` value that was not
            found (recipe, step and value named).
        :raises RetryableError | RateLimitedError: as for uploads.
        """
        spec = self._host.gallery
        if spec is None or not (spec.finalize or spec.rename or spec.result):
            return {}
        found: dict[str, str] = {}
        async with self._operation():
            for steps, chain in (
                (spec.finalize, ""),
                (spec.rename, ""),
                (spec.result, "gallery.result"),
            ):
                if steps:
                    got = await self._finalize_gallery(steps, {**gallery, **found}, chain)
                    if chain:
                        found.update(got)
        return found

    async def _finalize_gallery(
        self, steps: Sequence[Step], gallery: Mapping[str, str], chain: str
    ) -> dict[str, str]:
        for attempt in range(2):
            values, generation = await self.login()
            values = {**values, **dict(gallery)}
            check = self._session_check(attempt)
            try:
                return await self._run_chain(steps, values, session_check=check, chain=chain)
            except _Relogin:
                self._expire(generation)
                continue
        raise PermanentError(f"{self.recipe.id}: the session expired again right after login")

    async def exchange(
        self,
        step: Step,
        extra: Mapping[str, str],
        *,
        expired: Callable[[ResponseView], bool] | None = None,
    ) -> ResponseView:
        """Send one ``step`` (logged in first, when the recipe has a login chain) with the
        session's values plus ``extra``, and return the accepted reply as it is, for the
        caller to interpret (a forum's reply page).

        A reply that shows the session expired (the recipe's ``session`` rules, or
        ``expired(view)``, e.g. a forum's "invalid security token" page) logs in again once
        and repeats the step.

        :raises PermanentError: a template value is missing, the step's reply status is not
            accepted, or the session expired again right after a fresh login.
        :raises RetryableError | RateLimitedError: transient trouble after the retries.
        """
        async with self._operation():
            for attempt in range(2):
                values, generation = await self.login()
                values = {**values, **dict(extra)}
                try:
                    plan = plan_step(step, values)
                except TemplateError as exc:
                    raise PermanentError(f"{self.recipe.id}: step {step.name!r}: {exc}") from None
                try:
                    view = await self._request(plan, session_check=self._session_check(attempt))
                except _Relogin:
                    self._expire(generation)
                    continue
                if expired is not None and expired(view):
                    if attempt == 0 and self.recipe.login:
                        self._expire(generation)
                        continue
                    break
                return view
            raise PermanentError(
                f"{self.recipe.id}: step {step.name!r}: the session expired again right after"
                " logging in"
            )
