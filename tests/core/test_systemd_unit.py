"""The shipped systemd unit passes ``systemd-analyze verify`` and keeps its hardening."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

UNIT = Path(__file__).resolve().parents[2] / "contrib" / "systemd" / "hathd.service"


def test_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is required (Debian package: systemd)"
    hathd = Path(sys.executable).with_name("hathd")
    assert hathd.exists()
    text = UNIT.read_text().replace("/usr/lib/hathd/venv/bin/hathd", str(hathd))
    unit = tmp_path / "hathd.service"
    unit.write_text(text)
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "hathd.service" not in result.stderr, result.stderr


def test_unit_declares_notify_watchdog_reload_and_hardening() -> None:
    lines = {
        line.split("=", 1)[0]: line.split("=", 1)[1]
        for line in UNIT.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert lines["Type"] == "notify"
    assert lines["WatchdogSec"] == "30s"
    assert lines["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert lines["StateDirectory"] == "hathd"
    assert lines["DynamicUser"] == "yes"
    assert lines["ProtectSystem"] == "strict"
    # The stop timeout must leave room for hathd's own 20 s default deadline.
    assert int(lines["TimeoutStopSec"].rstrip("s")) > 20


def test_unit_may_bind_a_port_below_1024_and_nothing_more() -> None:
    """The H@H port may be 443; the unit grants exactly CAP_NET_BIND_SERVICE."""
    entries = [
        tuple(line.split("=", 1))
        for line in UNIT.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    ]
    ambient = [value for key, value in entries if key == "AmbientCapabilities"]
    bounding = [value for key, value in entries if key == "CapabilityBoundingSet"]
    assert ambient == ["CAP_NET_BIND_SERVICE"]
    assert bounding == ["CAP_NET_BIND_SERVICE"]
    settings = dict(entries)
    # the capability does not loosen the rest of the sandbox
    assert settings["DynamicUser"] == "yes"
    assert settings["PrivateDevices"] == "yes"
    assert settings["ProtectKernelModules"] == "yes"
    assert "@privileged" in settings["SystemCallFilter"]
