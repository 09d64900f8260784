"""Posting upload batches to a forum thread: a durable ``forum-post`` job per post, sent once.

A post is asked for with its upload (``hathd upload … --post-to vbulletin:THREAD``). It is
stored at once as ``waiting`` with the ids of its batches; when the last of them is finalized
(every upload ended, galleries finalized) the ``forum-post`` job is submitted (state
``queued``). The job renders the message from the batches' links and sends it through the
forum recipe (:mod:`hathd.recipes.forum`), on the forum's own engine lane (1 request/s,
burst 3, one post at a time, by default).

Never twice: before the request leaves, the post is written ``sending`` (committed). A try
that finds ``sending`` — the daemon died, or the reply was lost, after the request may have
reached the forum — first reads the thread's newest page and looks for a post carrying the
message's first link (unique to the batch); found, the post is recorded and nothing is sent.
A new thread has no page to look at before it exists, so an unknown outcome there fails the
job with a message saying what to check, instead of risking a second thread.

Table ``forum_posts`` (component ``recipes-posts``): ``id, forum, thread_id, forum_id,
subject, batches (JSON list), fmt, state, job_id, marker, post_id, post_url, error,
created_at, updated_at`` — times in seconds since the epoch. States: ``waiting`` → ``queued``
→ ``sending`` → ``posted``; ``failed`` when the job failed for good or was cancelled.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import time
import uuid
from collections.abc import Sequence
from typing import Any

import attrs
import trio

from hathd.engine.api import EngineAPI, Job, JobContext, JobSpec, JobState
from hathd.errors import HathdError, PermanentError, RateLimitedError, RetryableError
from hathd.recipes import batches
from hathd.recipes.forum import find_post, is_expired, marker_of, read_reply
from hathd.recipes.model import ForumRecipe
from hathd.recipes.output import web_url
from hathd.recipes.plan import absolute_url
from hathd.recipes.post_message import TemplateError as MessageError
from hathd.recipes.post_message import render_message
from hathd.recipes.template import TemplateError, render
from hathd.recipes.uploader import UnknownServiceError, Uploader
from hathd.recipes.user_templates import UserTemplates
from hathd.store import Store

log = logging.getLogger(__name__)

KIND = "forum-post"

MIGRATIONS: list[str] = [
    """
    CREATE TABLE forum_posts (
        id TEXT PRIMARY KEY,
        forum TEXT NOT NULL,
        thread_id TEXT,
        forum_id TEXT,
        subject TEXT,
        batches TEXT NOT NULL,
        fmt TEXT NOT NULL,
        state TEXT NOT NULL,
        job_id TEXT,
        marker TEXT,
        post_id TEXT,
        post_url TEXT,
        error TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX forum_posts_state ON forum_posts(state);
    """
]

_ID = re.compile(r"[1-9][0-9]{0,17}")


class PostRequestError(HathdError):
    """A post request is invalid (unknown forum, bad thread or forum id, no subject)."""


@attrs.frozen
class PostTarget:
    """Where a post goes: ``forum`` (a forum recipe id) and either ``thread_id`` (a reply)
    or ``forum_id`` with ``subject`` (a new thread). Ids are decimal digits."""

    forum: str
    thread_id: str | None = None
    forum_id: str | None = None
    subject: str | None = None

    @classmethod
    def parse(cls, text: str, subject: str | None = None) -> PostTarget:
        """``FORUM:THREAD_ID`` (a reply) or ``FORUM:forum=FORUM_ID`` (a new thread, which
        needs ``subject``), as the CLI's ``--post-to`` takes it.

        :raises PostRequestError: another shape, or an id that is not a positive number.
        """
        forum, sep, rest = text.partition(":")
        if not sep or not forum or not rest:
            raise PostRequestError(
                f"--post-to {text!r}: expected FORUM:THREAD_ID or FORUM:forum=FORUM_ID"
            )
        if rest.startswith("forum="):
            return cls(forum, forum_id=rest.removeprefix("forum="), subject=subject).checked()
        return cls(forum, thread_id=rest).checked()

    def checked(self) -> PostTarget:
        """This target, validated.

        :raises PostRequestError: neither or both of thread and forum ids, an id that is not
            a positive decimal number, a new thread without a subject.
        """
        if (self.thread_id is None) == (self.forum_id is None):
            raise PostRequestError("a post needs either a thread id or a forum id")
        ident = self.thread_id if self.thread_id is not None else self.forum_id
        if ident is None or not _ID.fullmatch(ident):
            raise PostRequestError(f"{ident!r} is not a thread or forum id (a positive number)")
        if self.forum_id is not None:
            subject = (self.subject or "").strip()
            if not subject or any(not ch.isprintable() for ch in subject):
                raise PostRequestError("a new thread needs a subject (printable text)")
        return self

    def to_json(self) -> dict[str, str | None]:
        """``{"forum", "thread_id", "forum_id", "subject"}``."""
        return attrs.asdict(self)


@attrs.frozen
class Post:
    """A ``forum_posts`` row."""

    id: str
    target: PostTarget
    batches: list[str]
    fmt: str
    state: str
    job_id: str | None
    marker: str | None
    post_id: str | None
    post_url: str | None
    error: str | None
    created_at: float
    updated_at: float

    def to_json(self) -> dict[str, Any]:
        """The post as the API returns it."""
        return {
            "id": self.id,
            **self.target.to_json(),
            "batches": self.batches,
            "format": self.fmt,
            "state": self.state,
            "job": self.job_id,
            "post_id": self.post_id,
            "post_url": self.post_url,
            "error": self.error,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def _row(row: sqlite3.Row) -> Post:
    return Post(
        id=row["id"],
        target=PostTarget(row["forum"], row["thread_id"], row["forum_id"], row["subject"]),
        batches=list(json.loads(row["batches"])),
        fmt=row["fmt"],
        state=row["state"],
        job_id=row["job_id"],
        marker=row["marker"],
        post_id=row["post_id"],
        post_url=row["post_url"],
        error=row["error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def migrate(store: Store) -> None:
    """Create or upgrade the ``forum_posts`` table."""
    await store.migrate("recipes-posts", MIGRATIONS)


async def get_post(store: Store, post_id: str) -> Post | None:
    """The post ``post_id``, or ``None``."""
    rows = await store.query("SELECT * FROM forum_posts WHERE id = ?", (post_id,))
    return _row(rows[0]) if rows else None


async def recent_posts(store: Store, limit: int = 20) -> list[Post]:
    """The newest posts first."""
    rows = await store.query(
        "SELECT * FROM forum_posts ORDER BY created_at DESC, id LIMIT ?", (limit,)
    )
    return [_row(r) for r in rows]


async def _update(store: Store, ident: str, /, **values: str | None) -> None:
    names = sorted(values)
    sets = ", ".join(f"{n} = ?" for n in names)

    def run(conn: sqlite3.Connection) -> None:
        conn.execute(
            f"UPDATE forum_posts SET {sets}, updated_at = ? WHERE id = ?",
            [*(values[n] for n in names), time.time(), ident],
        )

    await store.write(run)


class Posts:
    """The forum posts of one daemon: requests, the ``forum-post`` job, its release."""

    def __init__(self, uploader: Uploader, engine: EngineAPI, store: Store) -> None:
        self.uploader = uploader
        self.engine = engine
        self.store = store
        self._release_lock = trio.Lock()
        self.templates: dict[str, str] = {}
        """The ``{placeholder}`` output templates (``[recipes] output_templates``)."""
        self.user_templates: UserTemplates | None = None
        """The Jinja2 output templates (``[recipes] templates_dir`` / ``template_files``)."""

    def register(self) -> None:
        """Register the ``forum-post`` handler and one engine lane per forum (its recipe's
        limits: by default one post at a time, 1 request/s, burst 3)."""
        self.engine.register(KIND, self.handle, on_final=self.on_final)
        for fid, recipe in sorted(self.uploader.forums.items()):
            self.engine.add_lane(
                fid,
                concurrency=recipe.limits.concurrency,
                rate=recipe.limits.rate,
                burst=recipe.limits.burst,
            )

    def check(self, target: PostTarget) -> ForumRecipe:
        """The forum recipe for ``target``, checked before any upload starts.

        :raises PostRequestError: unknown forum, or a new thread on a forum recipe without
            ``forum.thread`` steps.
        """
        target.checked()
        try:
            recipe = self.uploader.forum(target.forum)
        except UnknownServiceError as exc:
            raise PostRequestError(str(exc)) from None
        if target.forum_id is not None and recipe.forum.thread is None:
            raise PostRequestError(f"forum {target.forum!r} cannot open new threads")
        return recipe

    async def create(self, target: PostTarget, batch_ids: Sequence[str], fmt: str) -> Post:
        """Store a post of ``batch_ids`` (rendered in ``fmt``) as ``waiting``, and release it
        at once if every batch is already finalized.

        :raises PostRequestError: see :meth:`check`; no batch.
        """
        self.check(target)
        if not batch_ids:
            raise PostRequestError("a post needs at least one upload batch")
        post_id = uuid.uuid4().hex[:12]
        now = time.time()

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO forum_posts (id, forum, thread_id, forum_id, subject, batches, fmt,"
                " state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'waiting', ?, ?)",
                (
                    post_id,
                    target.forum,
                    target.thread_id,
                    target.forum_id,
                    target.subject,
                    json.dumps(list(batch_ids)),
                    fmt,
                    now,
                    now,
                ),
            )

        await self.store.write(run)
        await self.release_ready()
        post = await get_post(self.store, post_id)
        assert post is not None
        return post

    async def release_ready(self) -> int:
        """Submit the ``forum-post`` job of every ``waiting`` post whose batches are all
        finalized; return how many were released. Called when a batch is finalized and at
        start-up (a post whose batches were finalized just before a crash)."""
        released = 0
        async with self._release_lock:
            rows = await self.store.query("SELECT * FROM forum_posts WHERE state = 'waiting'")
            for post in map(_row, rows):
                if not await self._batches_final(post.batches):
                    continue
                target = post.target
                where = target.thread_id or f"forum={target.forum_id}"
                sub = await self.engine.submit(
                    JobSpec(
                        kind=KIND,
                        target=f"{target.forum}:{where}",
                        domain=target.forum,
                        params={"post": post.id},
                        source="api",
                        source_id=post.id,
                        dedupe_key=f"post:{post.id}",
                    )
                )
                await _update(self.store, post.id, state="queued", job_id=sub.job.id)
                released += 1
        return released

    async def _batches_final(self, ids: Sequence[str]) -> bool:
        for batch_id in ids:
            found = await batches.get_batch(self.store, batch_id)
            if found is None or found[0].finalized_at is None:
                return False
        return True

    async def message(self, post: Post) -> str:
        """The post's text: the forum recipe's message template over the post's batches
        (each: folder or gallery name, gallery link, links in ``post.fmt``).

        :raises PermanentError: a batch is gone, or the template fails.
        """
        sets: list[dict[str, Any]] = []
        for batch_id in post.batches:
            found = await batches.get_batch(self.store, batch_id)
            if found is None:
                raise PermanentError(f"post {post.id}: upload batch {batch_id} is gone")
            batch, items = found
            summary = await batches.summarize(
                self.engine, batch, items, self.templates, self.user_templates
            )
            output = summary["output"].get(post.fmt)
            if output is None:
                raise PermanentError(f"post {post.id}: no output format {post.fmt!r}")
            failed = summary.get("output_errors", {}).get(post.fmt)
            if failed:
                raise PermanentError(f"post {post.id}: {failed}")
            gallery = batch.gallery or {}
            sets.append(
                {
                    "name": batch.gallery_name or "",
                    "gallery_url": gallery.get("gallery_url", ""),
                    "output": output,
                    "links": [it.get("url", "") for it in summary["items"]],
                }
            )
        recipe = self.uploader.forum(post.target.forum)
        try:
            return render_message(recipe.forum.message_template, sets)
        except MessageError as exc:
            raise PermanentError(f"forum {recipe.id!r}: message template: {exc}") from None

    async def handle(self, ctx: JobContext) -> dict[str, Any]:
        """The ``forum-post`` handler: send the post once (see the module docstring).

        :raises PermanentError: unknown post or forum, nothing to post (no file of the batches
            was uploaded), the forum refused, or the outcome of a new thread is unknown.
        :raises RateLimitedError: flood control (the forum's wait, in seconds).
        :raises RetryableError: the forum is unreachable or answered 5xx; no post id in the
            reply (the next try looks for the post before sending again).
        """
        post_id = str(ctx.job.params.get("post", ""))
        post = await get_post(self.store, post_id)
        if post is None:
            raise PermanentError(f"no forum post {post_id!r}")
        if post.state == "posted":
            return self._result(post)
        try:
            recipe = self.uploader.forum(post.target.forum)
        except UnknownServiceError as exc:
            raise PermanentError(str(exc)) from None
        session = self.uploader.session(recipe.id)
        spec = recipe.forum
        target = post.target
        text = await self.message(post)
        marker = marker_of(text)
        if not marker:
            raise PermanentError(f"post {post.id}: nothing to post: no file was uploaded")
        values = {
            "message": text,
            "thread_id": target.thread_id or "",
            "forum_id": target.forum_id or "",
            "subject": target.subject or "",
        }
        if post.state == "sending":
            if target.thread_id is None:
                raise PermanentError(
                    f"post {post.id}: an earlier try may have opened the thread in forum"
                    f" {target.forum_id} of {recipe.id}; look there before asking again"
                )
            page = await session.exchange(spec.find, values)
            found = find_post(spec, page, post.marker or marker)
            if found is not None:
                log.info("post %s was already on %s as post %s", post.id, recipe.id, found)
                return await self._posted(post, recipe, found)
        step = spec.reply if target.thread_id is not None else spec.thread
        assert step is not None  # checked when the post was asked for
        await _update(self.store, post.id, state="sending", marker=marker)
        view = await session.exchange(step, values, expired=lambda v: is_expired(spec, v))
        outcome = read_reply(spec, view)
        if outcome.kind == "posted" and target.thread_id is None:
            thread = re.search(spec.new_thread_id, view.url)
            if thread is not None:
                await _update(self.store, post.id, thread_id=thread.group(1))
        if outcome.kind == "posted":
            return await self._posted(post, recipe, outcome.post_id)
        where = f"{recipe.id}: post {post.id}"
        if outcome.kind in ("rate_limited", "retry", "refused", "relogin"):
            # the forum said why it did not take the post: nothing was posted
            await _update(self.store, post.id, state="queued", error=outcome.message)
        if outcome.kind == "rate_limited":
            raise RateLimitedError(f"{where}: {outcome.message}", retry_after=outcome.wait)
        if outcome.kind == "retry":
            raise RetryableError(f"{where}: {outcome.message}")
        if outcome.kind in ("refused", "relogin"):
            raise PermanentError(f"{where}: refused: {outcome.message}")
        raise RetryableError(f"{where}: {outcome.message}; the next try looks for it first")

    async def _posted(self, post: Post, recipe: ForumRecipe, found: str) -> dict[str, Any]:
        try:
            link = render(recipe.forum.post_url, {"post_id": found})
        except TemplateError:
            link = ""
        url = web_url(absolute_url(link, recipe.base_url)) if link else ""
        await _update(self.store, post.id, state="posted", post_id=found, post_url=url, error=None)
        done = await get_post(self.store, post.id)
        assert done is not None
        return self._result(done)

    @staticmethod
    def _result(post: Post) -> dict[str, Any]:
        return {
            "post": post.id,
            "forum": post.target.forum,
            "thread_id": post.target.thread_id,
            "post_id": post.post_id,
            "url": post.post_url,
        }

    async def on_final(self, job: Job) -> None:
        """A ``forum-post`` job failed for good or was cancelled: mark its post ``failed``
        with the job's error (a ``posted`` post stays as it is)."""
        if job.state is JobState.DONE:
            return
        post_id = str(job.params.get("post", ""))
        post = await get_post(self.store, post_id)
        if post is None or post.state == "posted":
            return
        await _update(self.store, post_id, state="failed", error=job.error or job.state.value)
