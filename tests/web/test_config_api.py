"""The configuration API on a running daemon: read without secrets, validate, change with a
backup first and an atomic write, restore and delete backups, the last ten kept."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import trio

from hathd import reload
from hathd.web import config_api
from web.authkit import running_node

CONFIG = """\
[daemon]
shutdown_grace = 5.0

[hath]
client_key = "s3cret-client-key"
"""


async def _wait_for(predicate: object, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not await predicate():  # type: ignore[operator]
            await trio.sleep(0.02)


async def test_read_never_shows_secrets(tmp_path: Path) -> None:
    async with running_node(tmp_path, CONFIG) as node, node.bearer() as admin:
        reply = await admin.get("/api/v1/config")
        assert reply.status_code == 200
        assert reply.json()["hath"]["client_key"] == "***"
        assert reply.json()["mqtt"]["password"] is None
        assert "s3cret" not in reply.text


async def test_put_backs_up_writes_and_reloads(tmp_path: Path) -> None:
    async with running_node(tmp_path, CONFIG) as node, node.bearer() as admin:
        shown = (await admin.get("/api/v1/config")).json()
        new = {
            "daemon": {"shutdown_grace": 9.0},
            "admin": {"host": "127.0.0.2"},
            "hath": {"client_key": shown["hath"]["client_key"]},
        }
        checked = await admin.post("/api/v1/config/validate", json={"config": new})
        assert checked.json() == {"ok": True, "problems": [], "restart_required": ["admin.host"]}
        reply = await admin.put("/api/v1/config", json={"config": new})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["restart_required"] == ["admin.host"]
        written = tomllib.loads((tmp_path / "hathd.toml").read_text())
        assert written["hath"]["client_key"] == "s3cret-client-key"
        assert written["daemon"]["shutdown_grace"] == 9.0
        assert stat.S_IMODE((tmp_path / "hathd.toml").stat().st_mode) == 0o600
        backups = (await admin.get("/api/v1/config/backups")).json()["backups"]
        assert [b["id"] for b in backups] == [body["backup"]]
        saved = node.state_dir / "config-backups" / f"{body['backup']}.toml"
        assert saved.read_text() == CONFIG

        async def reloaded() -> bool:
            got = (await admin.get("/api/v1/config")).json()
            return bool(got["daemon"]["shutdown_grace"] == 9.0)

        await _wait_for(reloaded)
        assert not [p for p in await trio.Path(tmp_path).iterdir() if p.name.endswith(".tmp")]


async def test_invalid_config_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    async with running_node(tmp_path, CONFIG) as node, node.bearer() as admin:
        bad = {"daemon": {"shutdown_grace": "soon"}, "nosuch": {"x": 1}}
        checked = (await admin.post("/api/v1/config/validate", json={"config": bad})).json()
        assert checked["ok"] is False
        keys = {p["key"] for p in checked["problems"]}
        assert "daemon.shutdown_grace" in keys
        assert any(k.startswith("nosuch") for k in keys)
        reply = await admin.put("/api/v1/config", json={"config": bad})
        assert (reply.status_code, reply.json()["code"]) == (400, "invalid")
        assert (tmp_path / "hathd.toml").read_text() == CONFIG
        assert (await admin.get("/api/v1/config/backups")).json()["backups"] == []
        for body in (b"{", b"[]", b'{"config": 3}'):
            refused = await admin.put(
                "/api/v1/config", content=body, headers={"Content-Type": "application/json"}
            )
            assert refused.status_code == 400


async def test_backups_keep_ten_restore_and_delete(tmp_path: Path) -> None:
    async with running_node(tmp_path, CONFIG) as node, node.bearer() as admin:
        for grace in range(1, 13):
            reply = await admin.put(
                "/api/v1/config", json={"config": {"daemon": {"shutdown_grace": float(grace)}}}
            )
            assert reply.status_code == 200, reply.text
        backups = (await admin.get("/api/v1/config/backups")).json()["backups"]
        assert len(backups) == config_api.KEEP
        oldest = backups[-1]["id"]
        # the oldest kept one holds the file as it was before the third change
        kept = tomllib.loads((node.state_dir / "config-backups" / f"{oldest}.toml").read_text())
        assert kept["daemon"]["shutdown_grace"] == 2.0
        restored = await admin.post(f"/api/v1/config/backups/{oldest}/restore")
        assert restored.status_code == 200, restored.text
        now = tomllib.loads((tmp_path / "hathd.toml").read_text())
        assert now["daemon"]["shutdown_grace"] == 2.0
        ids = [b["id"] for b in (await admin.get("/api/v1/config/backups")).json()["backups"]]
        assert len(ids) == config_api.KEEP
        assert oldest not in ids  # the backup made before the restore pushed it out
        assert (await admin.delete(f"/api/v1/config/backups/{ids[0]}")).status_code == 200
        left = [b["id"] for b in (await admin.get("/api/v1/config/backups")).json()["backups"]]
        assert left == ids[1:]
        for bad in ("../hathd", "nosuch"):
            assert (await admin.delete(f"/api/v1/config/backups/{bad}")).status_code == 404
            gone = await admin.post(f"/api/v1/config/backups/{bad}/restore")
            assert gone.status_code == 404
        made = await admin.post("/api/v1/config/backups")
        assert made.status_code == 201


async def test_without_a_config_file_changes_are_refused(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node, node.bearer() as admin:
        reply = await admin.put("/api/v1/config", json={"config": {}})
        assert (reply.status_code, reply.json()["code"]) == (409, "no_config_file")
        assert (await admin.get("/api/v1/config")).status_code == 200


def test_merge_secrets_keeps_or_drops_redacted_values() -> None:
    old = {"hath": {"client_key": "k"}, "notify": {"urls": ["tgram://a/b"]}}
    new = {"hath": {"client_key": "***"}, "notify": {"urls": ["tgram://***"]}, "mqtt": {}}
    new["mqtt"]["password"] = "***"
    merged = config_api.merge_secrets(new, old)
    assert merged == {"hath": {"client_key": "k"}, "notify": {"urls": ["tgram://a/b"]}, "mqtt": {}}
    assert new["hath"]["client_key"] == "***"


async def test_lone_surrogate_in_config_is_refused(tmp_path: Path) -> None:
    async with running_node(tmp_path, CONFIG) as node, node.bearer() as admin:
        reply = await admin.put(
            "/api/v1/config",
            content=b'{"config": {"daemon": {"log_level": "\\ud800"}}}',
            headers={"Content-Type": "application/json"},
        )
        assert (reply.status_code, reply.json()["code"]) == (400, "invalid_input")
        assert (tmp_path / "hathd.toml").read_text() == CONFIG


async def test_the_body_of_get_can_be_sent_back(tmp_path: Path) -> None:
    async with running_node(tmp_path, CONFIG) as node, node.bearer() as admin:
        shown = (await admin.get("/api/v1/config")).json()
        assert shown["daemon"]["state_dir"] is None
        shown["daemon"]["shutdown_grace"] = 7.0
        reply = await admin.put("/api/v1/config", json={"config": shown})
        assert reply.status_code == 200, reply.text
        written = tomllib.loads((tmp_path / "hathd.toml").read_text())
        assert written["daemon"]["shutdown_grace"] == 7.0
        assert "state_dir" not in written["daemon"]
        assert written["hath"]["client_key"] == "s3cret-client-key"
        assert "password" not in written["mqtt"]


async def test_restart_keys_come_from_the_reload_rules(tmp_path: Path) -> None:
    async with running_node(tmp_path, CONFIG) as node, node.bearer() as admin:
        shown = (await admin.get("/api/v1/config")).json()
        info = (await admin.get("/api/v1/config/restart")).json()
        keys = set(info["keys"])
        assert info["pending"] == []
        # every field the page shows is either live or in the list, as hathd.reload decides
        for key in config_api._leaves(shown):
            assert (key in keys) == reload.needs_restart(key), key
        assert {"admin.host", "daemon.log_level", "anime.enabled"} <= keys
        assert not {"engine.workers", "daemon.shutdown_grace"} & keys
        assert "engine.download_root" in keys  # the exception inside the live [engine]
        # a saved change that needs a restart is reported and then shown as pending
        new = {
            "daemon": {"shutdown_grace": 6.0, "log_level": "DEBUG"},
            "engine": {"workers": 3},
            "hath": {"client_key": "***"},  # kept as it is
        }
        reply = await admin.put("/api/v1/config", json={"config": new})
        assert reply.json()["restart_required"] == ["daemon.log_level"]

        async def pending() -> bool:
            got = (await admin.get("/api/v1/config/restart")).json()
            return bool(got["pending"] == ["daemon.log_level"])

        await _wait_for(pending)
        shown = (await admin.get("/api/v1/config")).json()
        assert shown["engine"]["workers"] == 3  # a live key applied at once
        assert shown["daemon"]["log_level"] != "DEBUG"  # the running value stays until restart
