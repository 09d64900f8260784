"""Reloads: live keys apply, the others keep their running value and are reported pending."""

from __future__ import annotations

import signal

import trio

from conftest import StartDaemon, run_cli
from hathd.config import structure
from hathd.reload import changed_keys, is_live, plan_reload


def test_plan_applies_live_keys_and_keeps_the_others() -> None:
    started = structure({"hath": {"port": 4443}, "engine": {"workers": 2}})
    new = structure(
        {
            "hath": {"port": 443},
            "engine": {"workers": 6, "download_root": "/elsewhere"},
            "daemon": {"shutdown_grace": 9.0, "log_level": "DEBUG"},
        }
    )
    plan = plan_reload(started, new)
    assert plan.restart_pending == ["daemon.log_level", "engine.download_root", "hath.port"]
    assert plan.config.engine.workers == 6
    assert plan.config.daemon.shutdown_grace == 9.0
    assert plan.config.hath.port == 4443
    assert plan.config.engine.download_root == started.engine.download_root
    assert plan.config.daemon.log_level == "INFO"
    # every key of the merged configuration is the new value when live, else the started one
    assert [k for k in changed_keys(plan.config, new) if is_live(k)] == []
    assert [k for k in changed_keys(plan.config, started) if not is_live(k)] == []
    # changing a key back clears it
    assert plan_reload(started, started).restart_pending == []


async def test_sighup_names_restart_keys_and_status_shows_them(start_daemon: StartDaemon) -> None:
    original = "[hath]\nport = 4443\n"
    daemon = await start_daemon(config_toml_text=original)
    daemon.config_path.write_text("[hath]\nport = 4444\n[engine]\nworkers = 7\n")
    daemon.proc.send_signal(signal.SIGHUP)
    async with daemon.admin() as admin:
        with trio.fail_after(20):
            while not (await admin.get("/api/v1/status"))["restart_pending"]:
                await trio.sleep(0.05)
        status = await admin.get("/api/v1/status")
        assert status["restart_pending"] == ["hath.port"]
        engine = {s["name"]: s for s in status["services"]}["engine"]
        assert engine["statistics"]["workers"] == 7
        # the running value stays in force and is what the configuration API reports
        assert (await admin.get("/api/v1/config"))["hath"]["port"] == 4443
        table = await run_cli("--state-dir", str(daemon.state_dir), "status")
        assert b"restart pending: hath.port" in table.stdout
        # the file changed back: nothing is pending any more
        daemon.config_path.write_text(original)
        daemon.proc.send_signal(signal.SIGHUP)
        with trio.fail_after(20):
            while (await admin.get("/api/v1/status"))["restart_pending"]:
                await trio.sleep(0.05)
    assert await daemon.stop() == 0
    assert "reload: restart pending for hath.port" in daemon.log()
