"""``hathd upload …``, ``hathd upload-status …`` and ``hathd recipes …`` commands.

* ``upload PATH... --to SERVICE [--gallery NAME] [--priority N] [--wait] [--format F]``:
  submit files or folders (one job per file) through ``POST /api/v1/uploads`` (a path that is
  not valid UTF-8 is refused; folder entries the daemon skipped are listed on stderr); with
  ``--wait``, poll the batch until no job is active and print its links in format ``F``
  (bbcode, html, markdown, links).
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
    if output[fmt]:
        click.echo(output[fmt])


async def _wait(obj: CliContext, batch: str, timeout: float) -> dict[str, Any]:
    with trio.move_on_after(timeout):
        while True:
            async with obj.admin() as admin:
                summary: dict[str, Any] = await admin.get(f"/api/v1/uploads/{batch}")
            if summary["state"] != "active":
                return summary
            await trio.sleep(POLL)
    raise click.ClickException(f"batch {batch} still active after {timeout:g} s")


@click.command("upload")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--to", "service", required=True, help="The service (recipe id), e.g. imx.to.")
@click.option("--gallery", default=None, help="Create a gallery with this name for the batch.")
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
    body = {
        "paths": [str(p) for p in resolved],
        "service": service,
        "gallery": gallery,
        "priority": priority,
    }
    try:
        async with obj.admin() as admin:
            reply: dict[str, Any] = await admin.post("/api/v1/uploads", body)
        for skipped in reply.get("skipped") or []:
            click.echo(f"skipped {skipped['path']}: {skipped['reason']}", err=True)
        if wait:
            summary = await _wait(obj, reply["batch"], timeout)
            if as_json:
                click.echo(json.dumps(summary, indent=2))
            else:
                _print_batch(summary, fmt)
            if summary["state"] != "done":
                raise click.exceptions.Exit(1)
            return
    except AdminError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(reply, indent=2))
    else:
        click.echo(f"batch {reply['batch']}: {len(reply['jobs'])} upload job(s) queued")


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
        click.echo(
            f"{recipe['id']:<16} {limits['rate']:g} req/s burst {limits['burst']},"
            f" {limits['concurrency']} at once{', galleries' if recipe['gallery'] else ''}{note}"
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
