"""``hathd upload …``, ``hathd upload-status …`` and ``hathd recipes …`` commands.

* ``upload PATH... --to|--host SERVICE [--gallery NAME] [--per-folder] [--post-to
  FORUM:THREAD_ID | FORUM:forum=FORUM_ID --subject TEXT] [--priority N] [--wait] [--format F]``:
  submit files or folders (one job per file) through ``POST /api/v1/uploads`` (a path that is
  not valid UTF-8 is refused; folder entries the daemon skipped are listed on stderr);
  ``--per-folder`` (the default with ``--post-to``) makes one batch, and one gallery named
  after it, per folder; ``--post-to`` posts every batch's links in one forum post once they
  are uploaded; with ``--wait``, poll the batches (and the post) until done and print the
  links in format ``F`` (bbcode, html, markdown, links) and the post's link.
* ``upload-status BATCH [--format F] [--json]``: a batch's state and links.
* ``recipes list``: the daemon's recipes; ``recipes check FILE...``: validate recipe files
  offline (each problem with its key path; exit status 1 when any is invalid).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncclick as click
import trio

from hathd.clictx import CliContext
from hathd.client import AdminError
from hathd.errors import ConfigError
from hathd.recipes.loader import load_recipe_file
from hathd.recipes.posts import PostRequestError, PostTarget
from hathd.recipes.uploads import shown, utf8_name

POLL = 0.5
"""Seconds between two polls of ``--wait``."""


def _print_batch(summary: dict[str, Any], fmt: str) -> None:
    counts = summary.get("counts", {})
    click.echo(
        f"batch {summary['batch']} on {summary['service']}: {summary['state']}"
        f" ({counts.get('done', 0)} done, {counts.get('failed', 0)} failed,"
        f" {counts.get('active', 0)} active)",
        err=True,
    )
    for item in summary.get("items", []):
        if item.get("error"):
            click.echo(f"  {item['path']}: {item['state']}: {item['error']}", err=True)
    output = summary.get("output", {})
    if fmt not in output:
        raise click.BadParameter(f"unknown format {fmt!r}; known: {', '.join(sorted(output))}")
    failed = (summary.get("output_errors") or {}).get(fmt)
    if failed:
        click.echo(f"format {fmt!r} failed: {failed}", err=True)
    gallery_line = (summary.get("gallery_output") or {}).get(fmt)
    if gallery_line:
        click.echo(gallery_line)
    if output[fmt]:
        click.echo(output[fmt])


async def _wait(obj: CliContext, batch: str, timeout: float) -> dict[str, Any]:
    with trio.move_on_after(timeout):
        while True:
            async with obj.admin() as admin:
                summary: dict[str, Any] = await admin.get(f"/api/v1/uploads/{batch}")
            gallery = summary.get("gallery")
            # a gallery is done once finalized (and renamed), after its last upload
            if summary["state"] != "active" and (not gallery or gallery.get("finalized_at")):
                return summary
            await trio.sleep(POLL)
    raise click.ClickException(f"batch {batch} still active after {timeout:g} s")


async def _wait_post(obj: CliContext, post_id: str, timeout: float) -> dict[str, Any]:
    with trio.move_on_after(timeout):
        while True:
            async with obj.admin() as admin:
                post: dict[str, Any] = await admin.get(f"/api/v1/posts/{post_id}")
            if post["state"] in ("posted", "failed"):
                return post
            await trio.sleep(POLL)
    raise click.ClickException(f"post {post_id} not sent after {timeout:g} s")


@click.command("upload")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--to", "--host", "service", required=True, help="The image host (recipe id), e.g. imx.to."
)
@click.option("--gallery", default=None, help="Create a gallery with this name for the batch.")
@click.option(
    "--per-folder/--one-batch",
    default=None,
    help="One batch and gallery per folder (default with --post-to), or one for all.",
)
@click.option(
    "--post-to",
    default=None,
    metavar="FORUM:THREAD_ID",
    help="Post the links to a forum thread (FORUM:forum=ID with --subject: a new thread).",
)
@click.option("--subject", default=None, help="The subject of a new thread (--post-to).")
@click.option("--priority", type=int, default=0, show_default=True)
@click.option("--wait", is_flag=True, help="Wait for the batch and print its links.")
@click.option("--format", "fmt", default="bbcode", show_default=True, help="Output format.")
@click.option("--timeout", type=float, default=3600.0, show_default=True, help="Seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the API reply as JSON.")
@click.pass_obj
async def upload(
    obj: CliContext,
    paths: tuple[Path, ...],
    service: str,
    gallery: str | None,
    per_folder: bool | None,
    post_to: str | None,
    subject: str | None,
    priority: int,
    wait: bool,
    fmt: str,
    timeout: float,
    as_json: bool,
) -> None:
    """Upload files or folders (one job per file) to an image host."""
    resolved = [p.resolve() for p in paths]
    for path in resolved:
        if not utf8_name(path):
            raise click.ClickException(
                f"{shown(path)}: the name is not valid UTF-8; rename it to upload it"
            )
    body: dict[str, Any] = {
        "paths": [str(p) for p in resolved],
        "service": service,
        "gallery": gallery,
        "priority": priority,
        "per_folder": per_folder if per_folder is not None else post_to is not None,
        "format": fmt,
    }
    if post_to is not None:
        try:
            body["post_to"] = PostTarget.parse(post_to, subject).to_json()
        except PostRequestError as exc:
            raise click.BadParameter(str(exc), param_hint="--post-to") from None
    try:
        async with obj.admin() as admin:
            reply: dict[str, Any] = await admin.post("/api/v1/uploads", body)
        batches = reply.get("batches") or [reply]
        for sub in batches:
            for skipped in sub.get("skipped") or []:
                click.echo(f"skipped {skipped['path']}: {skipped['reason']}", err=True)
        if wait:
            await _wait_all(obj, batches, reply.get("post"), fmt, timeout, as_json)
            return
    except AdminError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(reply, indent=2))
        return
    for sub in batches:
        click.echo(f"batch {sub['batch']}: {len(sub['jobs'])} upload job(s) queued")
    if reply.get("post"):
        click.echo(f"post {reply['post']['id']}: sent to {post_to} once the uploads are done")


async def _wait_all(
    obj: CliContext,
    batches: list[dict[str, Any]],
    post: dict[str, Any] | None,
    fmt: str,
    timeout: float,
    as_json: bool,
) -> None:
    """Wait for every batch (and the post), print them; exit 1 unless all went well."""
    deadline = trio.current_time() + timeout
    summaries = []
    for sub in batches:
        left = max(0.0, deadline - trio.current_time())
        summaries.append(await _wait(obj, sub["batch"], left))
    sent = None
    if post is not None:
        sent = await _wait_post(obj, post["id"], max(0.0, deadline - trio.current_time()))
    if as_json:
        doc: Any = (
            summaries[0]
            if len(summaries) == 1 and sent is None
            else {
                "batches": summaries,
                "post": sent,
            }
        )
        click.echo(json.dumps(doc, indent=2))
    else:
        for summary in summaries:
            _print_batch(summary, fmt)
        if sent is not None:
            if sent["state"] == "posted":
                click.echo(f"posted: {sent['post_url']}", err=True)
            else:
                click.echo(f"post failed: {sent['error']}", err=True)
    if any(s["state"] != "done" for s in summaries) or (sent and sent["state"] != "posted"):
        raise click.exceptions.Exit(1)


@click.command("upload-status")
@click.argument("batch")
@click.option("--format", "fmt", default="bbcode", show_default=True, help="Output format.")
@click.option("--json", "as_json", is_flag=True, help="Print the API reply as JSON.")
@click.pass_obj
async def upload_status(obj: CliContext, batch: str, fmt: str, as_json: bool) -> None:
    """Show an upload batch: per-file state and the links so far."""
    try:
        async with obj.admin() as admin:
            summary: dict[str, Any] = await admin.get(f"/api/v1/uploads/{batch}")
    except AdminError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        _print_batch(summary, fmt)


@click.group("recipes")
async def recipes_group() -> None:
    """Image-host upload recipes."""


@recipes_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the API reply as JSON.")
@click.pass_obj
async def list_recipes(obj: CliContext, as_json: bool) -> None:
    """The recipes the daemon has loaded."""
    async with obj.admin() as admin:
        reply: dict[str, Any] = await admin.get("/api/v1/recipes")
    if as_json:
        click.echo(json.dumps(reply, indent=2))
        return
    for recipe in reply["recipes"]:
        missing = [
            c["name"] for c in recipe["credentials"] if c["required"] and not c["configured"]
        ]
        note = f" (missing credentials: {', '.join(missing)})" if missing else ""
        limits = recipe["limits"]
        extra = ", galleries" if recipe["gallery"] else ""
        extra += ", forum" if recipe.get("kind") == "forum" else ""
        click.echo(
            f"{recipe['id']:<16} {limits['rate']:g} req/s burst {limits['burst']},"
            f" {limits['concurrency']} at once{extra}{note}"
        )


@recipes_group.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
async def check_recipes(files: tuple[Path, ...]) -> None:
    """Validate recipe files; print every problem with its key path."""
    bad = 0
    for path in files:
        try:
            recipe = await trio.to_thread.run_sync(load_recipe_file, path)
        except ConfigError as exc:
            bad += 1
            for where, message in exc.problems:
                click.echo(f"{where}: {message}", err=True)
            continue
        click.echo(f"{path}: ok ({recipe.id})")
    if bad:
        raise click.exceptions.Exit(1)


COMMANDS: list[click.Command] = [upload, upload_status, recipes_group]
