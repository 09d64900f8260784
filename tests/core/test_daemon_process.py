"""``hathd run`` as a real process: socket, token, auth, sd_notify, signals, CLI exit codes."""

from __future__ import annotations

import json
import os
import signal
import stat
from pathlib import Path

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from conftest import DaemonHandle, StartDaemon, run_cli
from hathd.runtime import default_state_dir


async def test_status_lists_every_service_running(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon()
    result = await run_cli("--state-dir", str(daemon.state_dir), "status", "--json")
    assert result.returncode == 0, result.stderr.decode()
    status = json.loads(result.stdout)
    names = [s["name"] for s in status["services"]]
    assert "admin" in names
    assert {s["state"] for s in status["services"]} == {"running"}, status["services"]
    assert status["pid"] == daemon.proc.pid
    subsystems = {s["name"]: s for s in status["subsystems"]}
    assert set(subsystems) == {
        "engine",
        "notify",
        "media-servers",
        "hath",
        "gallery",
        "q4d",
        "fanfic",
        "recipes",
        "anime",
    }
    assert subsystems["media-servers"]["enabled"] is False  # off until a server is named
    assert subsystems["anime"]["enabled"] is False  # off until [anime] enabled = true
    assert subsystems["hath"]["enabled"] is False  # off until H@H credentials exist
    assert subsystems["hath"]["reason"]
    assert subsystems["gallery"]["enabled"] is True  # the downloader waits for a start
    table = await run_cli("--state-dir", str(daemon.state_dir), "status")
    assert table.returncode == 0
    assert b"SERVICE" in table.stdout
    assert b"admin" in table.stdout
    assert b"hath: off" in table.stdout
    assert await daemon.stop() == 0


async def test_tcp_requires_the_token_and_files_are_private(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon()
    token_mode = stat.S_IMODE(os.stat(daemon.state_dir / "admin.token").st_mode)
    assert token_mode == 0o600
    assert stat.S_IMODE(os.stat(daemon.socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(daemon.state_dir).st_mode) == 0o700
    async with httpx.AsyncClient(base_url=daemon.tcp_url) as client:
        assert (await client.get("/api/v1/status")).status_code == 401
        wrong = await client.get("/api/v1/status", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        good = await client.get(
            "/api/v1/status", headers={"Authorization": f"Bearer {daemon.token}"}
        )
        assert good.status_code == 200
        assert good.json()["version"]
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        metrics = await client.get("/metrics", headers={"Authorization": f"Bearer {daemon.token}"})
        assert metrics.status_code == 200
        families = {f.name: f for f in text_string_to_metric_families(metrics.text)}
        assert families["hathd_up"].samples[0].value == 1.0
        admin_up = [
            s for s in families["hathd_service_up"].samples if s.labels["service"] == "admin"
        ]
        assert admin_up[0].value == 1.0
        missing = await client.get(
            "/api/v1/nothing-here", headers={"Authorization": f"Bearer {daemon.token}"}
        )
        assert missing.status_code == 404
        assert "error" in missing.json()
    # The token survives a restart; the socket is removed on a clean stop.
    token = daemon.token
    assert await daemon.stop() == 0
    assert not daemon.socket.exists()
    again = await start_daemon(state_dir=daemon.state_dir)
    assert again.token == token
    assert await again.stop() == 0


async def _collect_notifications(sock: trio.socket.SocketType, into: list[str]) -> None:
    while True:
        data = await sock.recv(4096)
        into.extend(data.decode().split("\n"))


async def test_sd_notify_ready_watchdog_stopping(start_daemon: StartDaemon, tmp_path: Path) -> None:
    notify_path = tmp_path / "notify.sock"
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM)
    await sock.bind(str(notify_path))
    messages: list[str] = []
    with sock:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_collect_notifications, sock, messages)
            daemon: DaemonHandle = await start_daemon(
                config_toml_text="[daemon]\nshutdown_grace = 5.0\n",
                env={"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "300000"},
            )
            with trio.fail_after(30):
                while messages.count("WATCHDOG=1") < 3:
                    await trio.sleep(0.05)
            assert "READY=1" in messages
            assert messages.index("READY=1") < messages.index("WATCHDOG=1")
            assert f"MAINPID={daemon.proc.pid}" in messages
            began = trio.current_time()
            daemon.proc.send_signal(signal.SIGTERM)
            with trio.fail_after(30):
                code = await daemon.proc.wait()
            assert code == 0
            assert trio.current_time() - began < 5.0 + 3.0  # the deadline plus process exit
            with trio.fail_after(5):
                while "STOPPING=1" not in messages:
                    await trio.sleep(0.02)
            nursery.cancel_scope.cancel()
    assert messages.index("STOPPING=1") > messages.index("READY=1")


async def test_sighup_reloads_the_configuration(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(config_toml_text="[daemon]\nshutdown_grace = 5.0\n")
    async with daemon.admin() as admin:
        assert (await admin.get("/api/v1/config"))["daemon"]["shutdown_grace"] == 5.0
        daemon.config_path.write_text(
            "[daemon]\nshutdown_grace = 9.0\n[engine]\nworkers = 7\n"
            "[engine.lanes.'*.example.org']\nconcurrency = 2\n"
        )
        daemon.proc.send_signal(signal.SIGHUP)
        with trio.fail_after(20):
            while (await admin.get("/api/v1/config"))["daemon"]["shutdown_grace"] != 9.0:
                await trio.sleep(0.05)
        # The running engine applies the reloaded [engine] section.
        services = {s["name"]: s for s in (await admin.get("/api/v1/status"))["services"]}
        assert services["engine"]["statistics"]["workers"] == 7
        # A broken file is refused and the running configuration kept.
        daemon.config_path.write_text("[daemon]\nshutdown_grace = 'x'\n")
        daemon.proc.send_signal(signal.SIGHUP)
        await trio.sleep(0.5)
        assert (await admin.get("/api/v1/config"))["daemon"]["shutdown_grace"] == 9.0
    assert await daemon.stop() == 0
    assert "reload refused" in daemon.log()


async def test_no_options_under_systemd_uses_state_directory_and_sigint_stops(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """``hathd run`` with no option and no configuration file: the state goes to the first
    entry of ``$STATE_DIRECTORY``, the CLI finds it the same way, SIGINT ends it with 0."""
    state = tmp_path / "systemd-state"
    env = {
        "STATE_DIRECTORY": f"{state}:{tmp_path / 'second'}",
        "XDG_CONFIG_HOME": str(tmp_path / "no-config"),
        "XDG_STATE_HOME": str(tmp_path / "not-used"),
    }
    daemon = await start_daemon(env=env, state_dir=state, bare=True)
    result = await run_cli("status", "--json", env=env)
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout)["pid"] == daemon.proc.pid
    assert stat.S_IMODE(os.stat(state / "admin.token").st_mode) == 0o600
    assert not (tmp_path / "not-used").exists()
    assert not (tmp_path / "second").exists()
    assert await daemon.stop(signal.SIGINT) == 0
    assert not daemon.socket.exists()


def test_default_state_dir_follows_xdg_then_home() -> None:
    assert default_state_dir({"XDG_STATE_HOME": "/srv/xdg"}) == Path("/srv/xdg/hathd")
    assert default_state_dir({"STATE_DIRECTORY": "/var/lib/hathd", "XDG_STATE_HOME": "/x"}) == (
        Path("/var/lib/hathd")
    )
    assert default_state_dir({}) == Path.home() / ".local" / "state" / "hathd"


async def test_cli_without_a_daemon_exits_2(tmp_path: Path) -> None:
    result = await run_cli("--state-dir", str(tmp_path / "none"), "status")
    assert result.returncode == 2
    assert b"not running" in result.stderr


async def test_config_check_names_key_paths(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[engine]\nworkers = 'many'\nspeed = 3\n[daemon]\nshutdown_grace = 0.0\n")
    result = await run_cli("config", "check", str(bad))
    assert result.returncode != 0
    err = result.stderr.decode()
    assert "engine.workers" in err
    assert "engine.speed: unknown key" in err
    assert "daemon.shutdown_grace: must be >= 0.1" in err
    good = tmp_path / "good.toml"
    good.write_text("[daemon]\nshutdown_grace = 3.0\n")
    ok = await run_cli("config", "check", str(good))
    assert ok.returncode == 0, ok.stderr


async def test_config_show_applies_env_and_redacts(tmp_path: Path) -> None:
    result = await run_cli(
        "config",
        "show",
        env={"HATHD_DAEMON__SHUTDOWN_GRACE": "11", "HATHD_HATH__CLIENT_KEY": "topsecret"},
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["daemon"]["shutdown_grace"] == 11.0
    assert shown["hath"]["client_key"] == "***"
    assert b"topsecret" not in result.stdout


async def test_systemd_configuration_directory_is_read(tmp_path: Path) -> None:
    etc = tmp_path / "etc-hathd"
    etc.mkdir()
    (etc / "hathd.toml").write_text("[daemon]\nshutdown_grace = 7.5\n")
    env = {"CONFIGURATION_DIRECTORY": str(etc)}
    shown = json.loads((await run_cli("config", "show", env=env)).stdout)
    assert shown["daemon"]["shutdown_grace"] == 7.5
    other = tmp_path / "other.toml"
    other.write_text("[daemon]\nshutdown_grace = 3.0\n")
    explicit = await run_cli("--config", str(other), "config", "show", env=env)
    assert json.loads(explicit.stdout)["daemon"]["shutdown_grace"] == 3.0  # --config wins
    (etc / "hathd.toml").unlink()  # no file there: the built-in defaults, not an error
    missing = await run_cli("config", "show", env=env)
    assert missing.returncode == 0, missing.stderr
    assert json.loads(missing.stdout)["daemon"]["shutdown_grace"] == 20.0


async def test_busy_admin_port_fails_start_up_clearly(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    with trio.socket.socket() as holder:
        await holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        daemon = await start_daemon(env={"HATHD_ADMIN__PORT": str(port)}, wait=False)
        with trio.fail_after(30):
            code = await daemon.proc.wait()
    assert code == 1
    assert "hathd failed" in daemon.log()


async def test_second_daemon_on_the_same_state_dir_is_refused(start_daemon: StartDaemon) -> None:
    first = await start_daemon()
    second = await start_daemon(state_dir=first.state_dir, wait=False)
    with trio.fail_after(30):
        code = await second.proc.wait()
    assert code == 1
    assert f"{first.state_dir} is in use by process {first.proc.pid}" in second.log()
    async with first.admin() as admin:  # the first daemon's socket and store are untouched
        status = await admin.get("/api/v1/status")
    assert status["pid"] == first.proc.pid
    assert await first.stop() == 0


async def test_status_names_a_missing_program_with_its_fix(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(
        config_toml_text='[fanfic]\nenabled = true\nfanficfare = ["/nonexistent/fanficfare"]\n'
    )
    async with daemon.admin() as admin:
        status = await admin.get("/api/v1/status")
        (fff,) = [p for p in status["programs"] if p["name"] == "fanficfare"]
        assert fff["found"] is False
        assert fff["reason"] == "/nonexistent/fanficfare does not exist"
        assert "pip install FanFicFare" in fff["fix"]
        # a job that needs it fails at once with that reason instead of waiting for retries
        reply = await admin.request(
            "POST", "/api/v1/fanfic/stories", json={"urls": ["http://test1.com?sid=4"]}
        )
        assert reply["created"] == ["http://test1.com?sid=4"]
        with trio.fail_after(30):
            while True:
                (job,) = (await admin.get("/api/v1/jobs", params={"kind": "fanfic"}))["jobs"]
                if job["state"] == "failed":
                    break
                await trio.sleep(0.1)
        assert job["attempts"] == 1
        assert "fanficfare is missing: /nonexistent/fanficfare does not exist" in job["error"]
    table = await run_cli("--state-dir", str(daemon.state_dir), "status")
    assert (
        b"fanficfare: missing (/nonexistent/fanficfare does not exist); fanfic jobs fail"
        in table.stdout
    )
    assert await daemon.stop() == 0
