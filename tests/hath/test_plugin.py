"""The plugin and the ``hath`` CLI group in-process (asyncclick CliRunner, open_runtime)."""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import trio
from asyncclick.testing import CliRunner

from fakes.hath_control import open_fake_control
from hathd.clictx import CliContext
from hathd.config import Config
from hathd.hath.cli import hath_group
from hathd.hath.config import HathConfig
from hathd.hath.plugin import HathPlugin
from hathd.runtime import open_runtime
from hathd.supervisor import ServiceState

from .helpers import CREDS, sha1


async def test_login_command_writes_0600(tmp_path: Path) -> None:
    runner = CliRunner()
    result = await runner.invoke(
        hath_group,
        ["login"],
        input=f"{CREDS.client_id}\n{CREDS.client_key}\n",
        obj=CliContext(tmp_path),
    )
    assert result.exit_code == 0, result.output
    path = tmp_path / "data" / "client_login"
    assert path.read_text() == f"{CREDS.client_id}-{CREDS.client_key}"
    assert path.stat().st_mode & 0o777 == 0o600
    assert CREDS.client_key not in result.output
    bad = await runner.invoke(
        hath_group,
        ["login", "--client-id", "7", "--client-key", "bad key"],
        obj=CliContext(tmp_path),
    )
    assert bad.exit_code != 0
    assert path.read_text() == f"{CREDS.client_id}-{CREDS.client_key}"


async def test_verify_command_rebuilds_the_index(tmp_path: Path) -> None:
    data = os.urandom(2048)
    fid = f"{sha1(data)}-{len(data)}-1-1-jpg"
    folder = tmp_path / "cache" / fid[:2] / fid[2:4]
    folder.mkdir(parents=True)
    (folder / fid).write_bytes(data)
    (folder / f"{sha1(b'x')}-1-1-1-jpg").write_bytes(b"y")  # wrong hash
    result = await CliRunner().invoke(hath_group, ["verify"], obj=CliContext(tmp_path))
    assert result.exit_code == 0, result.output
    assert "kept 1 files (2048 bytes), removed 1, moved 0" in result.output
    missing = await CliRunner().invoke(
        hath_group, ["verify"], obj=CliContext(tmp_path / "elsewhere")
    )
    assert missing.exit_code != 0
    assert "no cache directory" in missing.output


async def test_plugin_off_without_credentials_then_runs(tmp_path: Path) -> None:
    plugin = HathPlugin()
    assert not plugin.enabled(Config())
    assert plugin.off_reason(Config()) == (
        "[hath] enabled = false; set it, and the credentials with `hathd hath login`"
    )
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            cfg = Config(
                hath=HathConfig(enabled=True, rpc_server=fake.rpc_host, listen_host="127.0.0.1")
            )
            assert plugin.enabled(cfg)
            async with open_runtime(cfg, tmp_path / "s1") as rt:
                await plugin.setup(rt)
                [spec] = plugin.services(rt)
                assert spec.statistics is not None
                assert spec.statistics() == {"state": "off", "reason": "no H@H credentials"}
            cfg = attrs.evolve(
                cfg,
                hath=attrs.evolve(cfg.hath, client_id=CREDS.client_id, client_key=CREDS.client_key),
            )
            async with open_runtime(cfg, tmp_path / "s2") as rt, trio.open_nursery() as n:
                await plugin.setup(rt)
                [spec] = plugin.services(rt)
                await rt.supervisor.start(n, spec)
                assert spec.statistics is not None
                stats = spec.statistics()
                assert stats["state"] == "running"
                assert stats["port"] > 0
                assert plugin.node is not None
                n.cancel_scope.cancel()
            assert fake.calls[-1] == ("client_stop", "")


async def test_refused_node_stays_stopped_without_another_login(tmp_path: Path) -> None:
    # docs/hath-protocol.md §1.3: client_login must be sent only once per process, and
    # FAIL_CID_IN_USE means the client stops. The service ends normally: the supervisor shows
    # it stopped (no restart, so no second login) and the statistics say why.
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            fake.script("client_start", "FAIL_CID_IN_USE")
            cfg = Config(
                hath=HathConfig(
                    enabled=True,
                    rpc_server=fake.rpc_host,
                    listen_host="127.0.0.1",
                    client_id=CREDS.client_id,
                    client_key=CREDS.client_key,
                )
            )
            async with open_runtime(cfg, tmp_path) as rt, trio.open_nursery() as n:
                plugin = HathPlugin()
                await plugin.setup(rt)
                [spec] = plugin.services(rt)
                await rt.supervisor.start(n, spec)
                record = rt.supervisor.records["hath"]
                while record.state is not ServiceState.STOPPED:
                    await trio.sleep(0.02)
                await trio.sleep(1.5)  # three times the supervisor's first restart backoff
                shown = record.to_json()
                n.cancel_scope.cancel()
            assert fake.count("client_login") == 1
            assert (shown["state"], shown["restarts"], shown["last_error"]) == ("stopped", 0, None)
            stats = shown["statistics"]
            assert stats["state"] == "refused"
            assert stats["reason"].startswith("client_start refused: FAIL_CID_IN_USE")
            assert stats["port"] == 0
