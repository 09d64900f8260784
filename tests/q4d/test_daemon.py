"""Acceptance through the real daemon: ``hathd run`` as a subprocess with ``[q4d]`` enabled.

Stopping hathd (SIGTERM) while the seedbox keeps publishing: the events wait in the broker's
persistent session and are all transferred after the restart.
"""

from __future__ import annotations

import filecmp
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
import trio

from hathd.q4d.payload import format_down
from q4d.rig import (
    PASSWORD,
    USER,
    mosquitto_pub,
    open_ftp,
    open_mosquitto,
    watch_labels,
)

pytestmark = pytest.mark.slow

CliRunner = Callable[..., Awaitable[CompletedProcess[bytes]]]


def config_toml(broker_port: int, server_url: str, media: Path, pw_file: Path) -> str:
    return f"""
[engine.retry.q4dtest]
delays = [0.2]
jitter = 0.0

[mqtt]
port = {broker_port}
client_id = "hathd-daemon-test"
reconnect_min = 0.1
reconnect_max = 1.0

[q4d]
enabled = true
host = "{server_url}"
user = "{USER}"
password_file = "{pw_file}"
download_root = "{media}"
retry_preset = "q4dtest"
net_timeout = 5.0
rules = ['KEY CONTAINS "(2024)" M', 'KEY CONTAINS S01E T']

[q4d.type_map]
M = "Movies"
T = "TV"
"""


async def test_daemon_transfers_and_catches_up_after_restart(
    start_daemon: Any, cli_runner: CliRunner, seed_root: Path, tmp_path: Path
) -> None:
    media = tmp_path / "media"
    pw_file = tmp_path / "seedbox.pw"
    pw_file.write_text(PASSWORD + "\n")
    state = tmp_path / "state"
    async with (
        open_mosquitto(tmp_path / "mq") as broker,
        open_ftp(seed_root) as server,
        watch_labels(broker.port) as labels,
    ):
        toml = config_toml(broker.port, server.url, media, pw_file)
        daemon = await start_daemon(toml, state_dir=state)
        # The rules map the payload code "V" to M via the name.
        await mosquitto_pub(broker.port, "Down", format_down("/files/My Movie (2024)", "D1", "V"))
        await labels.wait_for({"D1\tQUEUED", "D1\tDONE"}, timeout=120)
        await mosquitto_pub(broker.port, "Down", b"not a q4d payload")
        async with daemon.admin() as admin:
            overall = await admin.get("/api/v1/status")
            services = {s["name"]: s for s in overall["services"]}
            assert services["q4d-mqtt"]["state"] == "running"
            assert {s["name"]: s for s in overall["subsystems"]}["q4d"]["enabled"] is True
            with trio.fail_after(30):
                while not (reply := await admin.get("/api/v1/q4d/rejected"))["rejected"]:
                    await trio.sleep(0.1)
        (rejected,) = reply["rejected"]
        assert rejected["reason"] == "too_few_fields"
        assert rejected["payload"] == "not a q4d payload"
        result = await cli_runner("--state-dir", str(state), "q4d", "status", "--json")
        assert result.returncode == 0, result.stderr
        status = json.loads(result.stdout)
        assert status["connected"] is True
        assert status["queued"] == 1
        assert status["rejected"] == {"too_few_fields": 1}
        assert isinstance(status["labels_pending"], int)
        assert await daemon.stop() == 0

        # hathd is down; the seedbox goes on publishing.
        episode = "/files/Single Episode S01E02 (720p).mkv"
        await mosquitto_pub(broker.port, "Down", format_down(episode, "D2", "V"))
        await mosquitto_pub(broker.port, "Down", format_down("/files/nothing", "NotUsed", "V"))
        daemon = await start_daemon(toml, state_dir=state)
        await labels.wait_for({"D2\tQUEUED", "D2\tDONE"}, timeout=120)
        async with daemon.admin() as admin:
            jobs = await admin.get("/api/v1/jobs", params={"kind": "transfer"})
        assert await daemon.stop() == 0

    files = seed_root / "files"
    dcmp = filecmp.dircmp(files / "My Movie (2024)", media / "Movies" / "My Movie (2024)")
    assert not dcmp.left_only
    assert not dcmp.right_only
    assert filecmp.cmp(files / episode.rsplit("/", 1)[1], media / "TV" / episode.rsplit("/", 1)[1])
    # The NotUsed event ran (and failed: no such path) without a label.
    assert not [label for label in labels.labels if label.startswith("NotUsed")]
    by_hash = {job["params"]["hash"]: job for job in jobs["jobs"]}
    assert set(by_hash) == {"D1", "D2", "NotUsed"}
    assert by_hash["D1"]["state"] == by_hash["D2"]["state"] == "done"
    assert by_hash["D2"]["params"]["code"] == "T"
