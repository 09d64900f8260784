"""``hathd jobs …`` and ``hathd queue …``: the job queue from the command line.

Every command talks to the daemon's admin API over its unix socket (``obj.admin()``); read
commands take ``--json``. ``jobs watch`` follows the WebSocket ``/api/v1/ws?rooms=jobs,progress``
(over the same socket) and draws one progress bar per running job.

Job ids given on the command line are checked against the engine's id shape (16 hex digits)
before any request, so an argument can never change the URL's path (``jobs rm ../jobs``).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import asyncclick as click
import trio

from hathd.clictx import (
    CliContext,
    human_bytes,
    human_duration,
    human_rate,
    local_time,
    table,
)
from hathd.engine.api import is_job_id


def check_job_id(text: str) -> str:
    """``text`` if it has the shape of a job id (16 hex digits; upper case is folded).

    :raises click.BadParameter: anything else.
    """
    value = text.strip().lower()
    if not is_job_id(value):
        raise click.BadParameter(f"{text!r} is not a job id (16 hex digits, as `jobs ls` shows)")
    return value


def _job_id_arg(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(check_job_id(v) for v in value)
    return check_job_id(value)


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


def progress_bar(data: dict[str, Any], width: int = 30) -> str:
    """One line for a progress payload: id, bar, percent, bytes, rate, ETA."""
    done = int(data.get("done") or 0)
    total = data.get("total")
    if total:
        frac = min(1.0, done / total)
        filled = int(frac * width)
        bar = "#" * filled + "." * (width - filled)
        pct = f"{frac * 100:5.1f}%"
    else:
        bar, pct = "?" * width, "  ?  "
    rate = data.get("rate")
    rate_s = f"{human_bytes(rate)}/s" if rate else "-"
    return (
        f"{data.get('id', '?')[:16]:16}  [{bar}] {pct}  {human_bytes(done)}/{human_bytes(total)}"
        f"  {rate_s}  ETA {_fmt_eta(data.get('eta'))}"
    )


def _done_cell(job: dict[str, Any]) -> str:
    """The DONE column: the percentage of a known total, else the amount done so far; ``100%``
    for a finished job; ``-`` before any progress."""
    progress = job.get("progress") or {}
    if progress.get("total"):
        return f"{100 * (progress.get('done') or 0) / progress['total']:.0f}%"
    if progress.get("done"):
        return human_bytes(progress["done"])
    if job["state"] == "done":
        return "100%"
    return "-"


def _job_row(job: dict[str, Any]) -> list[str]:
    return [
        job["id"],
        job["state"],
        str(job["priority"]),
        job["kind"],
        job["domain"][:24],
        _done_cell(job),
        (job.get("error") or job["target"])[:60],
    ]


_TIME_FIELDS = frozenset({"created_at", "updated_at", "finished_at", "not_before"})


def _progress_text(progress: dict[str, Any]) -> str:
    done, total = progress.get("done") or 0, progress.get("total")
    parts = [f"{human_bytes(done)} of {human_bytes(total)}" if total else human_bytes(done)]
    if total:
        parts[0] += f" ({100 * done / total:.0f}%)"
    if progress.get("rate"):
        parts.append(human_rate(progress["rate"]))
    if progress.get("eta") is not None:
        parts.append(f"ETA {human_duration(progress['eta'])}")
    if progress.get("message"):
        parts.append(str(progress["message"]))
    return ", ".join(parts)


def job_lines(job: dict[str, Any], now: float | None = None) -> list[str]:
    """``jobs show`` for people: one ``key  value`` line per field; times local with their
    zone and age, ``timeout`` as a duration, progress as sizes, rate and ETA."""
    lines = []
    for key, value in job.items():
        if key in _TIME_FIELDS:
            text = local_time(value, now) if value is not None else ""
        elif key == "timeout":
            text = human_duration(value) if value is not None else ""
        elif key == "progress":
            text = _progress_text(value) if value else ""
        elif isinstance(value, dict | list):
            text = json.dumps(value)
        else:
            text = "" if value is None else str(value)
        lines.append(f"{key:12} {text}".rstrip())
    return lines


@click.group()
async def jobs() -> None:
    """Add, list, pause, resume, retry, move and remove jobs."""


@jobs.command("add")
@click.argument("urls", nargs=-1, required=True)
@click.option("--priority", type=int, default=0, show_default=True, help="Higher runs first.")
@click.option("--dest", default=None, help="Folder under the download root.")
@click.option("--sha256", default=None, help="Expected SHA-256 (one URL only).")
@click.option("--json", "as_json", is_flag=True, help="Print the reply as JSON.")
@click.pass_obj
async def jobs_add(
    obj: CliContext,
    urls: tuple[str, ...],
    priority: int,
    dest: str | None,
    sha256: str | None,
    as_json: bool,
) -> None:
    """Queue a download of each URL."""
    if sha256 and len(urls) > 1:
        raise click.UsageError("--sha256 applies to a single URL")
    items: list[dict[str, Any]] = []
    for url in urls:
        item: dict[str, Any] = {"url": url, "priority": priority}
        if dest:
            item["dest"] = dest
        if sha256:
            item["sha256"] = sha256
        items.append(item)
    async with obj.admin() as admin:
        reply = await admin.post("/api/v1/jobs", {"jobs": items})
    if as_json:
        click.echo(json.dumps(reply, indent=2))
        return
    for entry in reply["jobs"]:
        job = entry["job"]
        note = "" if entry["created"] else " (already queued)"
        click.echo(f"{job['id']}  {job['state']}  {job['target']}{note}")


@jobs.command("ls")
@click.option("--state", default=None, help="Comma-separated states (e.g. queued,running).")
@click.option("--kind", default=None)
@click.option("--domain", default=None)
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--offset", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON.")
@click.pass_obj
async def jobs_ls(
    obj: CliContext,
    state: str | None,
    kind: str | None,
    domain: str | None,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """List jobs: active ones in queue order, then history (newest first)."""
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    for key, value in (("state", state), ("kind", kind), ("domain", domain)):
        if value:
            params[key] = value
    async with obj.admin() as admin:
        page = await admin.get("/api/v1/jobs", params=params)
    if as_json:
        click.echo(json.dumps(page, indent=2))
        return
    rows = [_job_row(j) for j in page["jobs"]]
    click.echo(table(rows, ["ID", "STATE", "PRIO", "KIND", "DOMAIN", "DONE", "TARGET/ERROR"]))
    paused = page.get("queue_paused") or []
    tail = f"  (queue paused: {', '.join(paused)})" if paused else ""
    click.echo(f"{len(rows)} of {page['total']} job(s){tail}")


@jobs.command("show")
@click.argument("job_id", callback=_job_id_arg)
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@click.pass_obj
async def jobs_show(obj: CliContext, job_id: str, as_json: bool) -> None:
    """Show one job in full."""
    async with obj.admin() as admin:
        job = await admin.get(f"/api/v1/jobs/{job_id}")
    if as_json:
        click.echo(json.dumps(job, indent=2))
        return
    for line in job_lines(job):
        click.echo(line)


def _each(action: str, help_text: str) -> click.Command:
    @click.argument("job_ids", nargs=-1, required=True, callback=_job_id_arg)
    @click.pass_obj
    async def command(obj: CliContext, job_ids: tuple[str, ...]) -> None:
        async with obj.admin() as admin:
            for job_id in job_ids:
                if action == "rm":
                    reply = await admin.delete(f"/api/v1/jobs/{job_id}")
                    state = "removed" if reply.get("removed") else reply.get("state", "?")
                else:
                    reply = await admin.post(f"/api/v1/jobs/{job_id}/{action}")
                    state = reply["state"]
                click.echo(f"{job_id}  {state}")

    command.__doc__ = help_text
    return click.command(action, help=help_text)(command)


jobs.add_command(_each("pause", "Pause jobs (a running job is stopped and kept)."))
jobs.add_command(_each("resume", "Put paused jobs back in the queue."))
jobs.add_command(_each("retry", "Queue finished jobs again, or run waiting jobs now."))
jobs.add_command(_each("rm", "Cancel active jobs; delete finished ones from the history."))


def parse_position(text: str) -> dict[str, Any]:
    """``"3"`` → place 3; ``"+2"``/``"-1"`` → relative; ``"end"``/``"top"``.

    :raises click.BadParameter: anything else.
    """
    value = text.strip().lower()
    if value == "end":
        return {"how": "end"}
    if value == "top":
        return {"how": "set", "position": 0}
    try:
        number = int(value)
    except ValueError:
        raise click.BadParameter(f"{text!r}: a number, +N, -N, top or end") from None
    if value[0] in "+-":
        return {"how": "cur", "position": number}
    return {"how": "set", "position": number}


@jobs.command("move")
@click.argument("job_id", callback=_job_id_arg)
@click.argument("pos")
@click.option("--priority", type=int, default=None, help="Also set the priority.")
@click.pass_obj
async def jobs_move(obj: CliContext, job_id: str, pos: str, priority: int | None) -> None:
    """Move a job to POS: a 0-based place, +N/-N relative, top or end."""
    body = parse_position(pos)
    if priority is not None:
        body["priority"] = priority
    async with obj.admin() as admin:
        reply = await admin.post(f"/api/v1/jobs/{job_id}/move", body)
    click.echo(f"{job_id}  position {reply['position']}  priority {reply['priority']}")


@jobs.command("clear")
@click.option("--state", default="done", show_default=True, help="done, failed, cancelled.")
@click.pass_obj
async def jobs_clear(obj: CliContext, state: str) -> None:
    """Delete finished jobs from the history."""
    async with obj.admin() as admin:
        reply = await admin.delete("/api/v1/jobs", params={"state": state})
    click.echo(f"{reply['removed']} job(s) removed")


class _Board:
    """Redraws one progress line per running job (or prints lines when not a terminal)."""

    def __init__(self, tty: bool) -> None:
        self.tty = tty
        self.lines: dict[str, str] = {}
        self.drawn = 0

    def _redraw(self) -> None:
        out = sys.stdout
        if self.drawn:
            out.write(f"\x1b[{self.drawn}F")
        for line in self.lines.values():
            out.write("\x1b[2K" + line + "\n")
        self.drawn = len(self.lines)
        out.flush()

    def message(self, text: str) -> None:
        if self.tty and self.drawn:
            sys.stdout.write(f"\x1b[{self.drawn}F\x1b[J")
            self.drawn = 0
        click.echo(text)
        if self.tty:
            self._redraw()

    def progress(self, data: dict[str, Any]) -> None:
        line = progress_bar(data)
        if not self.tty:
            click.echo(line)
            return
        self.lines[str(data.get("id"))] = line
        self._redraw()

    def finished(self, job_id: str) -> None:
        if job_id in self.lines and self.tty:
            del self.lines[job_id]


@jobs.command("watch")
@click.option("--json", "as_json", is_flag=True, help="Print each event as a JSON line.")
@click.option("--count", type=int, default=0, help="Stop after this many events (0: never).")
@click.pass_obj
async def jobs_watch(obj: CliContext, as_json: bool, count: int) -> None:
    """Follow job transitions and live progress until interrupted."""
    from trio_websocket import ConnectionClosed, wrap_client_stream

    from hathd.errors import DaemonNotRunning

    try:
        stream = await trio.open_unix_socket(str(obj.socket))
    except OSError as exc:
        raise DaemonNotRunning(f"no daemon answers on {obj.socket}: {exc}") from None
    board = _Board(sys.stdout.isatty() and not as_json)
    seen = 0
    async with trio.open_nursery() as nursery:
        ws = await wrap_client_stream(nursery, stream, "hathd", "/api/v1/ws?rooms=jobs,progress")
        try:
            while True:
                event = json.loads(await ws.get_message())
                if event.get("type") == "hello":
                    continue
                seen += 1
                if as_json:
                    click.echo(json.dumps(event))
                elif event.get("room") == "progress":
                    board.progress(event["data"])
                elif event.get("type") == "lagged":
                    board.message("(events were dropped: this watcher fell behind)")
                else:
                    data = event.get("data", {})
                    job_id = str(data.get("id", ""))
                    if event.get("type") in ("done", "failed", "cancelled", "paused"):
                        board.finished(job_id)
                    board.message(
                        f"{job_id}  {event.get('type')}  {data.get('target', '')}"
                        + (f"  {data['error']}" if data.get("error") else "")
                    )
                if count and seen >= count:
                    break
        except ConnectionClosed:
            click.echo("hathd: the daemon closed the event stream", err=True)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await ws.aclose()
            nursery.cancel_scope.cancel()


@click.group()
async def queue() -> None:
    """Pause or resume the whole queue, or show its state."""


@queue.command("pause")
@click.pass_obj
async def queue_pause(obj: CliContext) -> None:
    """Start no new jobs (running jobs go on; force-priority jobs, >= 900, still start)."""
    async with obj.admin() as admin:
        reply = await admin.post("/api/v1/queue/pause")
    click.echo(f"queue paused ({', '.join(reply['paused'])})")


@queue.command("resume")
@click.pass_obj
async def queue_resume(obj: CliContext) -> None:
    """Lift your pause (the daemon's own pauses, e.g. disk full, stay)."""
    async with obj.admin() as admin:
        reply = await admin.post("/api/v1/queue/resume")
    others = reply["paused"]
    click.echo("queue running" if not others else f"still paused by: {', '.join(others)}")


@queue.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
async def queue_status(obj: CliContext, as_json: bool) -> None:
    """Counts of queued, running, waiting and paused jobs."""
    async with obj.admin() as admin:
        reply = await admin.get("/api/v1/queue")
    if as_json:
        click.echo(json.dumps(reply, indent=2))
        return
    stats = reply["statistics"]
    paused = ", ".join(reply["paused"]) or "no"
    click.echo(
        f"queued {stats['queued']}  running {stats['running']}  waiting {stats['waiting']}  "
        f"paused {stats['paused']}  workers {stats['workers']}  queue paused: {paused}"
    )
