"""The job API and the ``jobs``/``queue`` CLI against the real admin app, served by hypercorn on
a unix socket (as the daemon serves it), with the engine running in-process."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from asyncclick.testing import CliRunner
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve

from hathd.admin.app import create_app
from hathd.clictx import CliContext, human_bytes, human_duration, human_rate, local_time
from hathd.client import AdminClient, AdminError
from hathd.engine.api import PRIORITY_MAX, PRIORITY_MIN, JobContext, JobSpec
from hathd.engine.cli import _Board, check_job_id, jobs, parse_position, progress_bar, queue
from hathd.engine.plugin import EnginePlugin


@attrs.define
class Api:
    rt: Any
    engine: Any
    socket: Path

    def admin(self) -> AdminClient:
        return AdminClient(self.socket)

    def obj(self) -> CliContext:
        return CliContext(self.rt.paths.state_dir)


@pytest.fixture
def served(make_engine: Any) -> Any:
    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[Api]:
        async with make_engine(**overrides) as (rt, engine), trio.open_nursery() as nursery:
            app = create_app(rt, "secret-token", plugins=[EnginePlugin()])
            config = HyperConfig()
            config.bind = [f"unix:{rt.paths.socket}"]
            config.graceful_timeout = 0.5
            stop = trio.Event()
            await nursery.start(partial(serve, app, config, shutdown_trigger=stop.wait))
            try:
                yield Api(rt, engine, rt.paths.socket)
            finally:
                stop.set()

    return factory


async def hold(ctx: JobContext) -> None:
    await trio.sleep_forever()


async def test_add_list_show_pause_resume_move_remove(served: Any) -> None:
    async with served() as api, api.admin() as admin:
        await admin.post("/api/v1/queue/pause")
        one = await admin.post("/api/v1/jobs", {"url": "http://a.example/x.bin", "priority": 2})
        assert one["created"] is True
        job = one["job"]
        assert job["state"] == "queued"
        assert job["domain"] == "a.example"
        assert job["kind"] == "download"
        batch = await admin.post(
            "/api/v1/jobs",
            {
                "jobs": [
                    {"url": "http://b.example/y.bin", "dest": "sub"},
                    {"kind": "download", "target": "http://c.example/z", "domain": "c.example"},
                ]
            },
        )
        assert [e["created"] for e in batch["jobs"]] == [True, True]
        ids = [job["id"]] + [e["job"]["id"] for e in batch["jobs"]]
        page = await admin.get("/api/v1/jobs", params={"state": "queued"})
        assert [j["id"] for j in page["jobs"]] == ids
        assert page["total"] == 3
        assert page["queue_paused"] == ["user"]
        page = await admin.get("/api/v1/jobs", params={"domain": "B.example"})
        assert [j["id"] for j in page["jobs"]] == [ids[1]]
        page = await admin.get("/api/v1/jobs", params={"limit": 1, "offset": 1})
        assert [j["id"] for j in page["jobs"]] == [ids[1]]
        shown = await admin.get(f"/api/v1/jobs/{ids[1]}")
        assert shown["params"] == {"dest": "sub"}
        paused = await admin.post(f"/api/v1/jobs/{ids[0]}/pause")
        assert paused["state"] == "paused"
        assert paused["paused_by"] == "user"
        resumed = await admin.post(f"/api/v1/jobs/{ids[0]}/resume")
        assert resumed["state"] == "queued"
        moved = await admin.post(f"/api/v1/jobs/{ids[2]}/move", {"position": 0})
        assert moved == {"id": ids[2], "priority": 0, "position": 1}
        moved = await admin.post(f"/api/v1/jobs/{ids[2]}/move", {"priority": 5})
        assert moved["position"] == 0
        removed = await admin.delete(f"/api/v1/jobs/{ids[1]}")
        assert removed["state"] == "cancelled"
        removed = await admin.delete(f"/api/v1/jobs/{ids[1]}")
        assert removed == {"id": ids[1], "removed": True}
        status = await admin.get("/api/v1/queue")
        assert status["statistics"]["queued"] == 2
        reply = await admin.post("/api/v1/queue/resume")
        assert reply == {"paused": []}


async def test_errors_are_json_and_name_the_field(served: Any) -> None:
    async with served() as api, api.admin() as admin:
        api.engine.register("hold", hold)
        cases: list[tuple[str, str, Any, int, str | None]] = [
            ("POST", "/api/v1/jobs", {"url": "ftp://x/y"}, 400, "url"),
            ("POST", "/api/v1/jobs", {"url": "http://x/y", "dest": "../up"}, 400, "dest"),
            ("POST", "/api/v1/jobs", {"url": "http://x/y", "bogus": 1}, 400, "bogus"),
            ("POST", "/api/v1/jobs", {"url": "http://x/y", "priority": "high"}, 400, "priority"),
            ("POST", "/api/v1/jobs", {"jobs": [{"url": "http://x/y"}, {}]}, 400, "jobs[1].kind"),
            ("POST", "/api/v1/jobs", {"kind": "nope", "target": "t", "domain": "d"}, 400, "kind"),
            (
                "POST",
                "/api/v1/jobs",
                {"jobs": [{"kind": "nope", "target": "t", "domain": "d"}]},
                400,
                "jobs[0].kind",
            ),
            ("POST", "/api/v1/jobs", [], 400, "jobs"),
            ("GET", "/api/v1/jobs/0000", None, 404, "id"),
            ("POST", "/api/v1/jobs/0000/pause", None, 404, "id"),
            ("POST", "/api/v1/jobs/0000/move", {"how": "sideways"}, 400, "how"),
            ("POST", "/api/v1/jobs/0000/move", {}, 400, "position"),
        ]
        for method, path, body, status, field in cases:
            with pytest.raises(AdminError) as info:
                await admin.request(method, path, json=body)
            assert info.value.status == status, (path, body, info.value.body)
            assert info.value.body["field"] == field, (path, body, info.value.body)
            assert info.value.body["error"]
            # the stable code of the exception class, by status
            codes = {400: "invalid_input", 404: "job_not_found"}
            assert info.value.body["code"] == codes[status], (path, info.value.body)
            assert info.value.error_code == codes[status]
        for params, field in (({"state": "nope"}, "state"), ({"limit": "x"}, "limit")):
            with pytest.raises(AdminError) as info:
                await admin.get("/api/v1/jobs", params=params)
            assert info.value.status == 400
            assert info.value.body["field"] == field
        with pytest.raises(AdminError) as info:
            await admin.delete("/api/v1/jobs", params={"state": "queued"})
        assert info.value.status == 400
        # invalid JSON body
        transport = httpx.AsyncHTTPTransport(uds=str(api.socket))
        async with httpx.AsyncClient(transport=transport, base_url="http://hathd") as raw:
            reply = await raw.post("/api/v1/jobs", content=b"{not json")
        assert reply.status_code == 400
        assert reply.json()["field"] == "body"
        assert reply.json()["code"] == "invalid_input"
    # a running job cannot be retried: 409
    async with served() as api, api.admin() as admin:
        api.engine.register("hold", hold)
        sub = await api.engine.submit(JobSpec(kind="hold", target="t", domain="d"))
        with trio.fail_after(10):
            while (await api.engine.get(sub.job.id)).state != "running":
                await trio.sleep(0.01)
        with pytest.raises(AdminError) as info:
            await admin.post(f"/api/v1/jobs/{sub.job.id}/retry")
        assert info.value.status == 409
        assert info.value.body["field"] == "state"
        assert info.value.body["code"] == "job_conflict"
        assert "running" in info.value.body["error"]


async def test_clear_history(served: Any) -> None:
    async with served() as api, api.admin() as admin:

        async def quick(ctx: JobContext) -> None:
            await trio.lowlevel.checkpoint()

        api.engine.register("quick", quick)
        subs = await api.engine.submit_many(
            [JobSpec(kind="quick", target=str(i), domain=f"d{i}") for i in range(3)]
        )
        for s in subs:
            await api.engine.wait_final(s.job.id, timeout=20)
        reply = await admin.delete("/api/v1/jobs", params={"state": "done"})
        assert reply == {"removed": 3, "states": ["done"]}
        assert (await admin.get("/api/v1/jobs"))["total"] == 0


async def invoke(command: Any, args: list[str], obj: CliContext) -> Any:
    result = await CliRunner().invoke(command, args, obj=obj, catch_exceptions=False)
    return result


async def test_cli_commands(served: Any) -> None:
    async with served() as api:
        obj = api.obj()
        r = await invoke(queue, ["pause"], obj)
        assert r.exit_code == 0
        assert "paused" in r.output
        r = await invoke(
            jobs,
            ["add", "http://a.example/1.bin", "http://b.example/2.bin", "--priority", "3"],
            obj,
        )
        assert r.exit_code == 0, r.output
        ids = [line.split()[0] for line in r.output.splitlines()]
        assert len(ids) == 2
        r = await invoke(jobs, ["ls", "--json"], obj)
        page = json.loads(r.output)
        assert [j["id"] for j in page["jobs"]] == ids
        assert all(j["priority"] == 3 for j in page["jobs"])
        r = await invoke(jobs, ["ls"], obj)
        assert "a.example" in r.output
        assert "queue paused: user" in r.output
        r = await invoke(jobs, ["show", ids[0]], obj)
        assert "http://a.example/1.bin" in r.output
        r = await invoke(jobs, ["move", ids[1], "top"], obj)
        assert "position 0" in r.output
        r = await invoke(jobs, ["pause", *ids], obj)
        assert r.output.split() == [ids[0], "paused", ids[1], "paused"]
        r = await invoke(jobs, ["resume", ids[0]], obj)
        assert r.output.split() == [ids[0], "queued"]
        r = await invoke(jobs, ["rm", ids[0]], obj)
        assert r.output.split() == [ids[0], "cancelled"]
        r = await invoke(jobs, ["retry", ids[0]], obj)
        assert r.output.split() == [ids[0], "queued"]
        r = await invoke(queue, ["status"], obj)
        assert "queued 1" in r.output
        assert "paused 1" in r.output
        r = await CliRunner().invoke(jobs, ["show", "nope"], obj=obj)
        assert r.exit_code != 0


async def test_cli_watch_follows_the_websocket(served: Any) -> None:
    async with served() as api:

        async def reporting(ctx: JobContext) -> None:
            for i in range(0, 101, 25):
                ctx.progress(i, 100)
                await trio.sleep(0.05)

        api.engine.register("rep", reporting)
        obj = api.obj()
        result: list[Any] = []

        async def watch() -> None:
            result.append(await invoke(jobs, ["watch", "--json", "--count", "6"], obj))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            # wait until the watcher's subscription is in place
            with trio.fail_after(20):
                while api.rt.bus.statistics().subscribers == 0:
                    await trio.sleep(0.01)
            await api.engine.submit(JobSpec(kind="rep", target="t", domain="d"))
        events = [json.loads(line) for line in result[0].output.splitlines()]
        assert len(events) == 6
        assert events[0]["room"] == "jobs"
        assert events[0]["type"] == "queued"
        assert {e["room"] for e in events} == {"jobs", "progress"}
        assert any(e["room"] == "progress" and e["data"]["total"] == 100 for e in events)


def test_position_parsing_and_bars() -> None:
    assert parse_position("3") == {"how": "set", "position": 3}
    assert parse_position("+2") == {"how": "cur", "position": 2}
    assert parse_position("-1") == {"how": "cur", "position": -1}
    assert parse_position("end") == {"how": "end"}
    assert parse_position("top") == {"how": "set", "position": 0}
    bar = progress_bar({"id": "abc", "done": 512, "total": 1024, "rate": 2048.0, "eta": 0.25})
    assert "50.0%" in bar
    assert "2.0 KiB/s" in bar


def test_terminal_board_redraws_one_line_per_running_job(
    capsys: pytest.CaptureFixture[str],
) -> None:
    board = _Board(tty=True)
    board.progress({"id": "a", "done": 10, "total": 100})
    board.progress({"id": "b", "done": 20, "total": 100})
    board.progress({"id": "a", "done": 60, "total": 100})
    first = capsys.readouterr().out
    # 1st draw: one line; 2nd: up 1, two lines; 3rd: up 2, the same two lines, a updated
    frames = first.split("\x1b[")
    assert first.count("\n") == 1 + 2 + 2
    assert "1F" in frames
    assert "2F" in frames
    last_frame = first.rsplit("\x1b[2F", 1)[1]
    assert "60.0%" in last_frame.splitlines()[0]
    assert "20.0%" in last_frame.splitlines()[1]
    board.finished("a")
    board.message("a  done  t")
    out = capsys.readouterr().out
    # the board is erased (up 2, clear to end), the message printed, then only b redrawn
    assert out.startswith("\x1b[2F\x1b[J")
    assert "a  done  t\n" in out
    assert out.count("%") == 1
    assert "20.0%" in out


def test_plain_board_prints_lines_without_escapes(capsys: pytest.CaptureFixture[str]) -> None:
    board = _Board(tty=False)
    board.progress({"id": "a", "done": 50, "total": 100})
    board.message("a  done  t")
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert out.splitlines()[1] == "a  done  t"
    assert "50.0%" in out.splitlines()[0]


async def raw_post(api: Api, path: str, content: bytes) -> httpx.Response:
    transport = httpx.AsyncHTTPTransport(uds=str(api.socket))
    async with httpx.AsyncClient(transport=transport, base_url="http://hathd") as raw:
        return await raw.post(path, content=content)


async def test_non_finite_numbers_are_refused_naming_the_field(served: Any) -> None:
    async with served() as api:
        api.engine.register("hold", hold)
        spec = '"kind": "hold", "target": "t", "domain": "d"'
        cases = [
            (f'{{{spec}, "timeout": Infinity}}', "timeout"),
            (f'{{{spec}, "timeout": -Infinity}}', "timeout"),
            (f'{{{spec}, "timeout": 1e400}}', "timeout"),
            (f'{{{spec}, "timeout": 1{"0" * 400}}}', "timeout"),  # an int beyond a float
            (f'{{{spec}, "params": {{"a": [1, NaN]}}}}', "params.a[1]"),
            (
                f'{{"jobs": [{{"url": "http://x/y"}}, {{{spec}, "timeout": NaN}}]}}',
                "jobs[1].timeout",
            ),
            (f'[{{{spec}}}, {{{spec}, "timeout": NaN}}]', "jobs[1].timeout"),
            ("NaN", "body"),
        ]
        for body, field in cases:
            reply = await raw_post(api, "/api/v1/jobs", body.encode())
            assert reply.status_code == 400, (body, reply.text)
            assert reply.json()["field"] == field, (body, reply.json())
        assert (await api.engine.list_jobs())[1] == 0
        sub = await api.engine.submit(JobSpec(kind="hold", target="t", domain="d"))
        await api.engine.pause_job(sub.job.id)
        reply = await raw_post(api, f"/api/v1/jobs/{sub.job.id}/move", b'{"position": NaN}')
        assert reply.status_code == 400
        assert reply.json()["field"] == "position"


async def test_priorities_and_positions_out_of_range_are_400_and_change_nothing(
    served: Any,
) -> None:
    async with served() as api, api.admin() as admin:
        await admin.post("/api/v1/queue/pause")
        for item, field in (
            ({"url": "http://x/y", "priority": 10**23}, "priority"),
            ({"url": "http://x/y", "priority": PRIORITY_MIN - 1}, "priority"),
            (
                {"kind": "download", "target": "http://x/y", "domain": "x", "priority": 10**23},
                "priority",
            ),
            (
                {"jobs": [{"url": "http://x/y"}, {"url": "http://x/z", "priority": -(10**30)}]},
                "jobs[1].priority",
            ),
        ):
            with pytest.raises(AdminError) as info:
                await admin.post("/api/v1/jobs", item)
            assert info.value.status == 400
            assert info.value.body["field"] == field
        assert (await admin.get("/api/v1/jobs"))["total"] == 0
        top = await admin.post("/api/v1/jobs", {"url": "http://x/top", "priority": PRIORITY_MAX})
        assert top["job"]["priority"] == PRIORITY_MAX
        await admin.post(f"/api/v1/jobs/{top['job']['id']}/pause")
        one = (await admin.post("/api/v1/jobs", {"url": "http://x/one"}))["job"]["id"]
        for body, field in (
            ({"priority": 10**23}, "priority"),
            ({"position": 10**23}, "position"),
            ({"position": -(10**23), "how": "cur"}, "position"),
            ({"position": -1}, "position"),
        ):
            with pytest.raises(AdminError) as info:
                await admin.post(f"/api/v1/jobs/{one}/move", body)
            assert info.value.status == 400
            assert info.value.body["field"] == field
        moved = await admin.post(f"/api/v1/jobs/{one}/move", {"priority": 7})
        assert moved == {"id": one, "priority": 7, "position": 1}


async def test_internal_value_errors_are_500_not_400(
    served: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with served() as api, api.admin() as admin:

        async def broken(**_kwargs: Any) -> Any:
            raise ValueError("a bug, not bad input")

        monkeypatch.setattr(api.engine, "list_jobs", broken)
        with pytest.raises(AdminError) as info:
            await admin.get("/api/v1/jobs")
        assert info.value.status == 500


async def test_cli_refuses_anything_but_a_job_id(served: Any) -> None:
    async with served() as api:

        async def quick(ctx: JobContext) -> None:
            await trio.lowlevel.checkpoint()

        api.engine.register("quick", quick)
        sub = await api.engine.submit(JobSpec(kind="quick", target="t", domain="d"))
        await api.engine.wait_final(sub.job.id, timeout=20)
        obj = api.obj()
        for args in (
            ["rm", "../jobs"],
            ["rm", sub.job.id, "../jobs"],
            ["retry", "..%2fjobs"],
            ["show", "../queue"],
            ["move", "x/../../queue", "top"],
            ["pause", ""],
        ):
            result = await CliRunner().invoke(jobs, args, obj=obj)
            assert result.exit_code == 2, (args, result.output)
            assert "not a job id" in result.output
        job = await api.engine.get(sub.job.id)
        assert job is not None  # neither deleted nor cleared with the history
        assert job.state == "done"
        assert check_job_id(sub.job.id.upper()) == sub.job.id


async def test_cli_shows_times_sizes_and_rates_for_people(served: Any) -> None:
    async with served() as api:

        async def quick(ctx: JobContext) -> None:
            await trio.lowlevel.checkpoint()

        async def halfway(ctx: JobContext) -> None:
            ctx.progress(3 * 1024 * 1024, 12 * 1024 * 1024)
            await trio.sleep_forever()

        api.engine.register("quick", quick)
        api.engine.register("halfway", halfway)
        done = await api.engine.submit(JobSpec(kind="quick", target="q", domain="d1"))
        await api.engine.wait_final(done.job.id, timeout=20)
        running = await api.engine.submit(JobSpec(kind="halfway", target="h", domain="d2"))
        with trio.fail_after(10):
            while (await api.engine.get(running.job.id)).progress is None:
                await trio.sleep(0.01)
        obj = api.obj()

        r = await invoke(jobs, ["ls"], obj)
        rows = {line.split()[0]: line.split() for line in r.output.splitlines()[1:-1]}
        assert rows[done.job.id][5] == "100%"
        assert rows[running.job.id][5] == "25%"

        r = await invoke(jobs, ["show", done.job.id, "--json"], obj)
        exact = json.loads(r.output)
        assert isinstance(exact["created_at"], float)  # --json keeps the epoch seconds
        r = await invoke(jobs, ["show", done.job.id], obj)
        fields = {line[:12].strip(): line[13:] for line in r.output.splitlines()}
        created = datetime.fromtimestamp(exact["created_at"]).astimezone()
        assert fields["created_at"].startswith(created.strftime("%Y-%m-%d %H:%M:%S %Z"))
        assert fields["created_at"].endswith(" ago)")
        finished = datetime.fromtimestamp(exact["finished_at"]).astimezone()
        assert fields["finished_at"].startswith(finished.strftime("%Y-%m-%d %H:%M"))
        assert str(exact["created_at"]) not in r.output

        r = await invoke(jobs, ["show", running.job.id], obj)
        fields = {line[:12].strip(): line[13:] for line in r.output.splitlines()}
        assert fields["progress"].startswith("3.0 MiB of 12.0 MiB (25%)")


def test_human_formats() -> None:
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(5 * 1024**4 * 2048) == "10240.0 TiB"
    assert human_rate(None) == "-"
    assert human_rate(3 * 1024 * 1024) == "3.0 MiB/s"
    assert human_duration(59.6) == "1 min 00 s"
    assert human_duration(7500) == "2 h 05 min"
    assert human_duration(3 * 86400 + 4 * 3600) == "3 d 4 h"
    assert local_time(None) == "-"
    assert local_time(1000.0, now=1090.0).endswith("(1 min 30 s ago)")
    assert local_time(1000.0, now=940.0).endswith("(in 1 min 00 s)")
