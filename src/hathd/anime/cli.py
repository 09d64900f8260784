"""``hathd anime …``: the anime library through the daemon's admin API.

* ``anime search TEXT [--site S]``
* ``anime add URL|KEY [--site S] [--season N]... [--episodes 1-12] [--lang L]... [--follow]
  [--no-queue]``: read the series from its provider and queue the missing episodes
* ``anime ls``, ``anime show KEY``, ``anime missing [KEY]``
* ``anime scan``: walk the library folder; ``anime check``: the watchlist check now
* ``anime follow KEY [--off]``
"""

from __future__ import annotations

import json
from typing import Any

import asyncclick as click

from hathd.anime.config import LANGUAGES
from hathd.clictx import CliContext, table


def _json_opt(fn: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print the API reply as JSON.")(fn)


def _dump(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _jobs(jobs: list[dict[str, Any]]) -> None:
    for j in jobs:
        code = f"S{j['season']:02d}E{j['episode']:02d}"
        if "job" in j:
            click.echo(f"{code}  job {j['job']}{'' if j['created'] else ' (already queued)'}")
        else:
            click.echo(f"{code}  skipped: {j['skipped']}")


@click.group("anime")
async def anime_group() -> None:
    """Anime library: search providers, add series, scan the folder, follow series."""


@anime_group.command("search")
@click.argument("text")
@click.option("--site", default=None, help="aniworld.to or s.to (default: both).")
@_json_opt
@click.pass_obj
async def search(obj: CliContext, text: str, site: str | None, as_json: bool) -> None:
    """Search the providers for TEXT."""
    async with obj.admin() as admin:
        reply = await admin.post("/api/v1/anime/search", {"text": text, "site": site})
    if as_json:
        _dump(reply)
        return
    rows = [[h["key"], h["site"], h["name"]] for h in reply["results"]]
    click.echo(table(rows, ["KEY", "SITE", "NAME"]) if rows else "no match")


@anime_group.command("add")
@click.argument("ref")
@click.option("--site", default=None, help="Site of a bare KEY (default aniworld.to).")
@click.option("--season", "seasons", type=int, multiple=True, help="Only this season (0 = films).")
@click.option("--episodes", default=None, help="Only these episodes, e.g. 1-12 or 1,3,5-7.")
@click.option("--lang", "langs", type=click.Choice(LANGUAGES), multiple=True, help="Languages.")
@click.option("--follow", is_flag=True, help="Also follow the series.")
@click.option("--no-queue", is_flag=True, help="Only record the series; queue nothing.")
@_json_opt
@click.pass_obj
async def add(
    obj: CliContext,
    ref: str,
    site: str | None,
    seasons: tuple[int, ...],
    episodes: str | None,
    langs: tuple[str, ...],
    follow: bool,
    no_queue: bool,
    as_json: bool,
) -> None:
    """Add (or refresh) the series at URL or KEY and queue its missing episodes."""
    body: dict[str, Any] = {"ref": ref, "site": site, "queue": not no_queue, "follow": follow}
    if seasons:
        body["seasons"] = list(seasons)
    if episodes:
        body["episodes"] = episodes
    if langs:
        body["languages"] = list(langs)
    async with obj.admin() as admin:
        reply = await admin.post("/api/v1/anime", body)
    if as_json:
        _dump(reply)
        return
    s = reply["series"]
    click.echo(f"{s['key']}: {s['name']} ({s['year'] or '?'}, {s['status']}) on {s['site']}")
    _jobs(reply["jobs"])


@anime_group.command("ls")
@_json_opt
@click.pass_obj
async def ls(obj: CliContext, as_json: bool) -> None:
    """The series of the library with present and missing counts."""
    async with obj.admin() as admin:
        reply = await admin.get("/api/v1/anime")
    if as_json:
        _dump(reply)
        return
    rows = [
        [
            s["key"],
            s["site"],
            str(s["present"]),
            str(s["missing"]),
            "yes" if s["followed"] else "",
            s["name"],
        ]
        for s in reply["series"]
    ]
    click.echo(table(rows, ["KEY", "SITE", "HAVE", "MISSING", "FOLLOW", "NAME"]))


@anime_group.command("show")
@click.argument("key")
@_json_opt
@click.pass_obj
async def show(obj: CliContext, key: str, as_json: bool) -> None:
    """A series and its episodes."""
    async with obj.admin() as admin:
        reply = await admin.get(f"/api/v1/anime/{key}")
    if as_json:
        _dump(reply)
        return
    s = reply["series"]
    click.echo(f"{s['name']} ({s['year'] or '?'}) — {s['site']} {s['key']}, {s['status']}")
    click.echo(f"folder: {s['folder'] or '-'}")
    rows = [
        [
            e["code"],
            "have" if e["file_path"] else ("missing" if e["offered"] else "local"),
            ",".join(e["languages"]),
            e["job"] or "",
            e["title"],
        ]
        for e in reply["episodes"]
    ]
    click.echo(table(rows, ["EP", "STATE", "LANGUAGES", "JOB", "TITLE"]))


@anime_group.command("missing")
@click.argument("key", required=False)
@_json_opt
@click.pass_obj
async def missing(obj: CliContext, key: str | None, as_json: bool) -> None:
    """Episodes the provider offers that are not on disk."""
    async with obj.admin() as admin:
        reply = await admin.get("/api/v1/anime/missing", params={"key": key} if key else None)
    if as_json:
        _dump(reply)
        return
    rows = [[e["series_key"], e["code"], e["title"]] for e in reply["missing"]]
    click.echo(table(rows, ["SERIES", "EP", "TITLE"]) if rows else "nothing missing")


@anime_group.command("scan")
@_json_opt
@click.pass_obj
async def scan(obj: CliContext, as_json: bool) -> None:
    """Walk the library folder and record what is on disk."""
    async with obj.admin() as admin:
        reply = await admin.post("/api/v1/anime/rescan", {})
    if as_json:
        _dump(reply)
        return
    click.echo(f"{reply['folders']} folders, {reply['matched']} matched")
    for name in reply["unmatched"]:
        click.echo(f"unmatched: {name}")
    for err in reply["errors"]:
        click.echo(f"error: {err['folder']}: {err['error']}", err=True)


@anime_group.command("check")
@click.pass_obj
async def check(obj: CliContext) -> None:
    """Run the watchlist check (scan, then new episodes of followed series) now."""
    async with obj.admin() as admin:
        await admin.post("/api/v1/anime/rescan", {"check": True})
    click.echo("watchlist check started")


@anime_group.command("follow")
@click.argument("key")
@click.option("--off", is_flag=True, help="Stop following.")
@click.pass_obj
async def follow(obj: CliContext, key: str, off: bool) -> None:
    """Follow KEY: the watchlist check queues its new episodes."""
    async with obj.admin() as admin:
        reply = await admin.post(f"/api/v1/anime/{key}/follow", {"follow": not off})
    click.echo(f"{reply['series']}: {'following' if reply['followed'] else 'not following'}")
