"""Household users on a running daemon: the last admin, removal revoking sessions and keys,
demotion on the next request, the audit trail (who, how, from where; on the job; retention),
and requests approved into real jobs."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path

import httpx

from hathd.engine.plugin import EnginePlugin
from hathd.fanfic.plugin import FanficPlugin
from hathd.store import open_store
from hathd.web import audit
from web.authkit import PASSWORD, Node, claim, running_node

STORY = "https://www.fanfiction.net/s/1/1/"


@asynccontextmanager
async def _login(node: Node, username: str) -> AsyncIterator[httpx.AsyncClient]:
    async with node.client() as client:
        reply = await client.post(
            "/api/v1/auth/login", json={"username": username, "password": PASSWORD}
        )
        assert reply.status_code == 200, reply.text
        client.headers["X-CSRF-Token"] = reply.json()["csrf_token"]
        yield client


async def _add(admin: httpx.AsyncClient, username: str, role: str) -> None:
    made = await admin.post(
        "/api/v1/users", json={"username": username, "password": PASSWORD, "role": role}
    )
    assert made.status_code == 201, made.text


async def test_last_admin_removal_and_demotion(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node, node.client() as first:
        await claim(node, first)
        async with node.bearer() as admin:
            alone = await admin.delete("/api/v1/users/admin")
            assert (alone.status_code, alone.json()["code"]) == (409, "last_admin")
            demote = await admin.patch("/api/v1/users/admin", json={"role": "operator"})
            assert (demote.status_code, demote.json()["code"]) == (409, "last_admin")
            assert "last admin" in demote.json()["error"]
            bad = await admin.post(
                "/api/v1/users", json={"username": "no spaces", "password": PASSWORD}
            )
            assert (bad.status_code, bad.json()["field"]) == (400, "username")
            short = await admin.post("/api/v1/users", json={"username": "vera", "password": "x"})
            assert (short.status_code, short.json()["field"]) == (400, "password")
            await _add(admin, "vera", "viewer")
            twice = await admin.post(
                "/api/v1/users", json={"username": "VERA", "password": PASSWORD}
            )
            assert (twice.status_code, twice.json()["code"]) == (409, "user_exists")
            missing = await admin.delete("/api/v1/users/nobody")
            assert (missing.status_code, missing.json()["code"]) == (404, "unknown_user")

            # a viewer's session and key, then the viewer is removed: both stop at once
            key = (
                await admin.post(
                    "/api/v1/auth/keys", json={"name": "vk", "scope": "read", "user": "vera"}
                )
            ).json()["key"]
            async with _login(node, "vera") as viewer, node.bearer(key) as viewer_key:
                assert (await viewer.get("/api/v1/status")).status_code == 200
                assert (await viewer_key.get("/api/v1/status")).status_code == 200
                listed = (await admin.get("/api/v1/users")).json()["users"]
                vera = next(u for u in listed if u["username"] == "vera")
                assert (vera["role"], vera["sessions"], vera["keys"]) == ("viewer", 1, 1)
                gone = await admin.delete("/api/v1/users/vera")
                assert gone.json() == {"ok": True, "sessions": 1, "keys": 1}
                assert (await viewer.get("/api/v1/status")).status_code == 401
                assert (await viewer_key.get("/api/v1/status")).status_code == 401

            # a second admin makes the first removable; demotion acts on the next request
            await _add(admin, "dora", "admin")
            async with _login(node, "dora") as dora:
                assert (await dora.post("/api/v1/queue/pause")).status_code == 200
                assert (await dora.get("/api/v1/config")).status_code == 200
                changed = await admin.patch("/api/v1/users/dora", json={"role": "operator"})
                assert changed.json() == {
                    "username": "dora",
                    "role": "operator",
                    "sessions_ended": 0,
                }
                refused = await dora.get("/api/v1/config")
                assert (refused.status_code, refused.json()["code"]) == (403, "scope")
                assert (await dora.post("/api/v1/queue/resume")).status_code == 200
                page = await dora.get("/settings")
                assert page.status_code == 403
                assert "Not allowed" in page.text
                reset = await admin.patch("/api/v1/users/dora", json={"password": "x" * 12})
                assert reset.json()["sessions_ended"] == 1
                assert (await dora.get("/api/v1/status")).status_code == 401
            await admin.patch("/api/v1/users/dora", json={"role": "admin"})
            assert (await admin.delete("/api/v1/users/admin")).status_code == 200
            last = await admin.patch("/api/v1/users/dora", json={"role": "viewer"})
            assert last.status_code == 409


async def test_audit_records_who_and_the_job_shows_its_submitter(tmp_path: Path) -> None:
    config = "[admin]\naudit_keep_rows = 100\n"
    async with running_node(tmp_path, config) as node, node.client() as first:
        await claim(node, first)
        async with node.bearer() as admin:
            await _add(admin, "olga", "operator")
            await _add(admin, "vera", "viewer")
            key = (
                await admin.post(
                    "/api/v1/auth/keys", json={"name": "ok", "scope": "control", "user": "olga"}
                )
            ).json()
        async with (
            _login(node, "olga") as operator,
            _login(node, "vera") as viewer,
            node.bearer(key["key"]) as operator_key,
        ):
            assert (await operator.post("/api/v1/queue/pause")).status_code == 200
            made = await operator.post("/api/v1/jobs", json={"url": "http://127.0.0.1:9/a.bin"})
            assert made.status_code == 201, made.text
            job_id = made.json()["job"]["id"]
            refused = await viewer.post("/api/v1/queue/resume")
            assert refused.status_code == 403
            by_key = await operator_key.post("/api/v1/queue/resume")
            assert by_key.status_code == 200

            job = (await viewer.get(f"/api/v1/jobs/{job_id}")).json()
            assert job["submitted_by"]["user"] == "olga"
            assert job["submitted_by"]["via"] == "session"
            listed = (await viewer.get("/api/v1/jobs")).json()["jobs"]
            assert [j["submitted_by"]["user"] for j in listed if j["id"] == job_id] == ["olga"]

            assert (await viewer.get("/api/v1/audit")).status_code == 403
            entries = (await operator.get("/api/v1/audit")).json()["entries"]
            rows = [(e["user"], e["via"], e["method"], e["path"], e["status"]) for e in entries]
            assert ("olga", "key", "POST", "/api/v1/queue/resume", 200) in rows
            assert ("vera", "session", "POST", "/api/v1/queue/resume", 403) in rows
            assert ("olga", "session", "POST", "/api/v1/jobs", 201) in rows
            assert ("olga", "login", "POST", "/api/v1/auth/login", 200) in rows
            submit = next(e for e in entries if e["path"] == "/api/v1/jobs")
            assert submit["jobs"] == [job_id]
            assert submit["session_id"]
            assert submit["address"] == "127.0.0.1"
            keyed = next(e for e in entries if e["via"] == "key")
            assert keyed["key_id"] == key["id"]
            only_job = (await operator.get(f"/api/v1/audit?job={job_id}")).json()["entries"]
            assert [e["id"] for e in only_job] == [submit["id"]]
            bad = await operator.get("/api/v1/audit?limit=0")
            assert (bad.status_code, bad.json()["field"]) == (400, "limit")

            # bounded: at most audit_keep_rows rows are kept, the newest
            for _ in range(110):
                await operator_key.post("/api/v1/queue/pause")
        rows = await node.daemon.rt.store.query("SELECT count(*), max(id) FROM audit")  # type: ignore[union-attr]
        count, newest = rows[0]
        assert count == 100
        assert newest > 110


async def test_audit_keeps_entries_for_the_configured_days(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db.sqlite") as store:
        await audit.migrate(store)

        def entry(at: float, path: str) -> audit.Entry:
            return audit.Entry(at, "olga", "key", None, "k1", "POST", path, 200, "::1")

        day = 86400.0
        await store.write(lambda c: audit.insert(c, entry(0.0, "/old"), ["j1"], 90, 1000))
        await store.write(lambda c: audit.insert(c, entry(80 * day, "/mid"), ["j2"], 90, 1000))
        await store.write(lambda c: audit.insert(c, entry(91 * day, "/new"), [], 90, 1000))
        paths = [e["path"] for e in await store.read(lambda c: audit.entries(c, limit=10))]
        assert paths == ["/new", "/mid"]
        known = await store.read(lambda c: audit.submitters(c, ["j1", "j2"]))
        assert set(known) == {"j2"}


async def test_a_viewer_request_waits_and_an_approval_submits_the_story(tmp_path: Path) -> None:
    config = "[fanfic]\nenabled = true\n"
    plugins = [EnginePlugin(), FanficPlugin()]
    async with (
        running_node(tmp_path, config, plugins) as node,
        node.client() as first,
    ):
        await claim(node, first)
        async with node.bearer() as admin:
            await _add(admin, "olga", "operator")
            await _add(admin, "vera", "viewer")
            await _add(admin, "vito", "viewer")
            assert (await admin.post("/api/v1/queue/pause")).status_code == 200
        async with (
            _login(node, "vera") as viewer,
            _login(node, "vito") as other,
            _login(node, "olga") as operator,
            node.bearer() as admin,
        ):
            direct = await viewer.post("/api/v1/fanfic/stories", json={"urls": [STORY]})
            assert direct.status_code == 403
            asked = await viewer.post(
                "/api/v1/requests", json={"kind": "story", "target": STORY, "note": "please"}
            )
            assert asked.status_code == 201, asked.text
            req = asked.json()
            assert (req["state"], req["requested_by"], req["decided_by"]) == (
                "pending",
                "vera",
                None,
            )
            again = await other.post("/api/v1/requests", json={"kind": "story", "target": STORY})
            assert (again.status_code, again.json()["code"]) == (409, "duplicate_request")
            bad = await viewer.post("/api/v1/requests", json={"kind": "story", "target": "x"})
            assert (bad.status_code, bad.json()["field"]) == (400, "target")
            assert (await other.get("/api/v1/requests")).json()["requests"] == []
            mine = (await viewer.get("/api/v1/requests")).json()["requests"]
            assert [r["id"] for r in mine] == [req["id"]]
            no = await viewer.post(f"/api/v1/requests/{req['id']}/approve")
            assert no.status_code == 403
            assert (await admin.get("/api/v1/jobs")).json()["total"] == 0

            approved = await operator.post(f"/api/v1/requests/{req['id']}/approve")
            assert approved.status_code == 200, approved.text
            done = approved.json()
            assert (done["state"], done["decided_by"]) == ("approved", "olga")
            assert done["result"]["created"] == [STORY]
            job_ids = done["result"]["jobs"]
            assert len(job_ids) == 1
            got = await viewer.get(f"/api/v1/jobs/{job_ids[0]}")
            job = got.json()
            assert got.status_code == 200, (done, got.text)
            assert job["kind"] == "fanfic"
            assert job["submitted_by"] == {
                "user": "olga",
                "via": "approval",
                "time": job["submitted_by"]["time"],
                "on_behalf": "vera",
                "request_id": req["id"],
            }
            twice = await operator.post(f"/api/v1/requests/{req['id']}/approve")
            assert (twice.status_code, twice.json()["code"]) == (409, "not_pending")

            # a series while the anime library is off: the submission is refused, the
            # request stays pending with the reason, and can be rejected
            series = (
                await viewer.post(
                    "/api/v1/requests", json={"kind": "series", "target": "some-show"}
                )
            ).json()
            failed = await operator.post(f"/api/v1/requests/{series['id']}/approve")
            assert (failed.status_code, failed.json()["code"]) == (409, "submit_failed")
            pending = (await viewer.get("/api/v1/requests?state=pending")).json()["requests"]
            assert [r["id"] for r in pending] == [series["id"]]
            assert pending[0]["last_error"].startswith("404")
            rejected = await operator.post(
                f"/api/v1/requests/{series['id']}/reject", json={"reason": "no anime here"}
            )
            assert rejected.json()["state"] == "rejected"
            assert rejected.json()["reason"] == "no anime here"
            entries = (await operator.get("/api/v1/audit")).json()["entries"]
            inner = [
                (e["user"], e["on_behalf"], e["request_id"], e["path"], e["status"], e["jobs"])
                for e in entries
                if e["via"] == "approval"
            ]
            assert inner == [
                ("olga", "vera", series["id"], "/api/v1/anime", 404, []),
                ("olga", "vera", req["id"], "/api/v1/fanfic/stories", 200, job_ids),
            ]
        # requests are durable: the table is in the store
        db = node.state_dir / "hathd.sqlite3"
        with closing(sqlite3.connect(db)) as conn:
            states = conn.execute("SELECT state FROM requests ORDER BY id").fetchall()
        assert states == [("approved",), ("rejected",)]
