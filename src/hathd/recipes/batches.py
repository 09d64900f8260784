"""Upload batches in the store: which jobs belong to one ``hathd upload`` call, its gallery,
and the batch summary (per-file state and links, rendered outputs).

Tables (component ``recipes``):

- ``upload_batches(id, service, gallery_name, gallery JSON, created_at, finalized_at,
  finalize_error)`` — times in seconds since the epoch;
- ``upload_items(batch_id, idx, job_id, path)`` — one row per file, in upload order.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from hathd.engine.api import ACTIVE_STATES, EngineAPI, JobState
from hathd.recipes.output import render_gallery, render_output
from hathd.recipes.user_templates import OutputTemplateError, UserTemplates, batch_context
from hathd.store import Store

MIGRATIONS: list[str] = [
    """
    CREATE TABLE upload_batches (
        id TEXT PRIMARY KEY,
        service TEXT NOT NULL,
        gallery_name TEXT,
        gallery TEXT,
        created_at REAL NOT NULL,
        finalized_at REAL,
        finalize_error TEXT
    );
    CREATE TABLE upload_items (
        batch_id TEXT NOT NULL REFERENCES upload_batches(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        job_id TEXT NOT NULL,
        path TEXT NOT NULL,
        PRIMARY KEY (batch_id, idx)
    );
    CREATE INDEX upload_items_job ON upload_items(job_id);
    """
]


@attrs.frozen
class Batch:
    """A batch row: id, service, gallery name and values (``gallery_id`` …), times."""

    id: str
    service: str
    gallery_name: str | None
    gallery: dict[str, str] | None
    created_at: float
    finalized_at: float | None
    finalize_error: str | None


@attrs.frozen
class Item:
    """One file of a batch."""

    index: int
    job_id: str
    path: str


async def migrate(store: Store) -> None:
    """Create or upgrade the tables."""
    await store.migrate("recipes", MIGRATIONS)


async def insert_batch(
    store: Store,
    batch_id: str,
    service: str,
    gallery_name: str | None,
    gallery: Mapping[str, str] | None,
    items: Sequence[Item],
) -> None:
    """Store a batch and its items in one transaction."""
    now = time.time()

    def run(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO upload_batches (id, service, gallery_name, gallery, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (batch_id, service, gallery_name, json.dumps(dict(gallery)) if gallery else None, now),
        )
        conn.executemany(
            "INSERT INTO upload_items (batch_id, idx, job_id, path) VALUES (?, ?, ?, ?)",
            [(batch_id, it.index, it.job_id, it.path) for it in items],
        )

    await store.write(run)


def _batch(row: sqlite3.Row) -> Batch:
    return Batch(
        row["id"],
        row["service"],
        row["gallery_name"],
        json.loads(row["gallery"]) if row["gallery"] else None,
        row["created_at"],
        row["finalized_at"],
        row["finalize_error"],
    )


async def get_batch(store: Store, batch_id: str) -> tuple[Batch, list[Item]] | None:
    """The batch and its items, or ``None``."""
    rows = await store.query("SELECT * FROM upload_batches WHERE id = ?", (batch_id,))
    if not rows:
        return None
    items = await store.query(
        "SELECT idx, job_id, path FROM upload_items WHERE batch_id = ? ORDER BY idx", (batch_id,)
    )
    return _batch(rows[0]), [Item(r["idx"], r["job_id"], r["path"]) for r in items]


async def batch_of_job(store: Store, job_id: str) -> str | None:
    """The id of one batch the job belongs to (the oldest), or ``None``."""
    found = await batches_of_job(store, job_id)
    return found[0] if found else None


async def batches_of_job(store: Store, job_id: str) -> list[str]:
    """The ids of every batch with an item on the job, oldest first: a file submitted again
    while its job was active joins the later batch with the earlier batch's job."""
    rows = await store.query(
        "SELECT DISTINCT i.batch_id FROM upload_items i JOIN upload_batches b"
        " ON b.id = i.batch_id WHERE i.job_id = ? ORDER BY b.created_at, b.id",
        (job_id,),
    )
    return [str(r["batch_id"]) for r in rows]


async def recent_batches(store: Store, limit: int) -> list[Batch]:
    """The newest ``limit`` batches."""
    rows = await store.query(
        "SELECT * FROM upload_batches ORDER BY created_at DESC, id LIMIT ?", (limit,)
    )
    return [_batch(r) for r in rows]


async def mark_finalized(
    store: Store,
    batch_id: str,
    error: str | None,
    gallery: Mapping[str, str] | None = None,
) -> bool:
    """Record the gallery's finalization (once), with ``gallery`` (when given) replacing the
    batch's gallery values (the link a ``[[gallery.result]]`` step read); return ``False``
    when it already was finalized."""

    def run(conn: sqlite3.Connection) -> bool:
        if gallery is not None:
            cur = conn.execute(
                "UPDATE upload_batches SET finalized_at = ?, finalize_error = ?, gallery = ?"
                " WHERE id = ? AND finalized_at IS NULL",
                (time.time(), error, json.dumps(dict(gallery)), batch_id),
            )
        else:
            cur = conn.execute(
                "UPDATE upload_batches SET finalized_at = ?, finalize_error = ?"
                " WHERE id = ? AND finalized_at IS NULL",
                (time.time(), error, batch_id),
            )
        return cur.rowcount == 1

    return await store.write(run)


async def summarize(
    engine: EngineAPI,
    batch: Batch,
    items: Sequence[Item],
    templates: Mapping[str, str] | None = None,
    user: UserTemplates | None = None,
) -> dict[str, Any]:
    """The batch as the API returns it: per-file state and links, counts, overall ``state``
    (``active`` while any job is queued/running/waiting/paused, else ``done`` when all
    succeeded, ``failed`` when none did, ``partial`` otherwise) and ``output`` in every
    format (the built-in ones, ``templates`` and the ``user`` Jinja2 templates), over the
    files uploaded so far, in order; ``gallery_output`` is the gallery's link in each
    built-in format (when the batch has a gallery with a link). A user template that fails
    renders as ``""`` and its error (template and line) is listed under ``output_errors``."""
    files: list[dict[str, Any]] = []
    done: list[dict[str, str]] = []
    dims: list[dict[str, int]] = []
    counts = {"done": 0, "failed": 0, "active": 0, "cancelled": 0}
    for item in items:
        job = await engine.get(item.job_id)
        entry: dict[str, Any] = {
            "index": item.index,
            "path": item.path,
            "job": item.job_id,
            "state": job.state.value if job else "missing",
        }
        if job is not None and job.state is JobState.DONE and job.result:
            for key in ("url", "thumb", "delete"):
                entry[key] = job.result.get(key, "")
            done.append(
                {
                    "url": entry["url"],
                    "thumb": entry["thumb"],
                    "delete": entry["delete"],
                    "filename": Path(item.path).name,
                    "index": str(item.index),
                }
            )
            dims.append(
                {
                    "thumb_width": int(job.result.get("thumb_width", 0) or 0),
                    "thumb_height": int(job.result.get("thumb_height", 0) or 0),
                }
            )
            counts["done"] += 1
        elif job is None or job.state is JobState.FAILED:
            entry["error"] = job.error if job else "job not found"
            counts["failed"] += 1
        elif job.state is JobState.CANCELLED:
            counts["cancelled"] += 1
        elif job.state in ACTIVE_STATES:
            counts["active"] += 1
            if job.error:
                entry["error"] = job.error
        files.append(entry)
    if counts["active"]:
        state = "active"
    elif counts["done"] == len(items):
        state = "done"
    elif counts["done"] == 0:
        state = "failed"
    else:
        state = "partial"
    table = {**(templates or {})}
    output = {
        fmt: render_output(fmt, done, table)
        for fmt in sorted({"bbcode", "html", "markdown", "links", *table})
    }
    gallery: dict[str, Any] | None = None
    if batch.gallery_name is not None:
        gallery = {
            "name": batch.gallery_name,
            **(batch.gallery or {}),
            "finalized_at": batch.finalized_at,
            "finalize_error": batch.finalize_error,
        }
    gallery_output: dict[str, str] = {}
    if gallery is not None and gallery.get("gallery_url"):
        for fmt in ("bbcode", "html", "markdown", "links"):
            line = render_gallery(fmt, str(gallery["name"]), str(gallery["gallery_url"]))
            if line:
                gallery_output[fmt] = line
    errors: dict[str, str] = {}
    if user is not None and user.formats:
        context = batch_context(
            batch.id,
            batch.service,
            [{**d, **n} for d, n in zip(done, dims, strict=True)],
            gallery,
        )
        for fmt in sorted(user.formats):
            try:
                output[fmt] = user.render(fmt, context)
            except OutputTemplateError as exc:
                output[fmt] = ""
                errors[fmt] = str(exc)
    return {
        "batch": batch.id,
        "service": batch.service,
        "created_at": batch.created_at,
        "state": state,
        "counts": counts,
        "gallery": gallery,
        "items": files,
        "output": output,
        "gallery_output": gallery_output,
        "output_errors": errors,
    }
