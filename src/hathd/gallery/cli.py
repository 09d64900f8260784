"""``hathd hath download``: start the gallery downloader by hand through the admin API."""

from __future__ import annotations

import json
from typing import Any

import asyncclick as click
import trio

from hathd.clictx import CliContext

PATH = "/api/v1/hath/download"


def _summary(stats: dict[str, Any]) -> str:
    return (
        f"galleries: {stats.get('galleries', 0)} done, {stats.get('galleries_failed', 0)} failed;"
        f" malformed replies: {stats.get('malformed_replies', 0)}; runs: {stats.get('runs', 0)}"
    )


def _busy(stats: dict[str, Any]) -> bool:
    return bool(stats.get("running") or stats.get("pending"))


@click.command("download")
@click.option("--wait", is_flag=True, help="Return only when the queue has been worked off.")
@click.option(
    "--interval", type=float, default=1.0, show_default=True, help="Seconds between checks."
)
@click.option("--json", "as_json", is_flag=True, help="Print the reply as JSON.")
@click.pass_obj
async def hath_download(obj: CliContext, wait: bool, interval: float, as_json: bool) -> None:
    """Start the H@H gallery downloader; it runs until the server's queue is empty."""
    async with obj.admin() as admin:
        reply = await admin.post(PATH)
        if wait:
            while _busy(reply.get("statistics", {})):
                await trio.sleep(interval)
                reply = {**reply, "statistics": (await admin.get(PATH))["statistics"]}
    if as_json:
        click.echo(json.dumps(reply, indent=2, sort_keys=True))
        return
    if reply.get("started"):
        click.echo("gallery downloader started")
    else:
        click.echo("gallery downloader already running")
    if wait:
        click.echo("gallery queue worked off")
    click.echo(_summary(reply.get("statistics", {})))
