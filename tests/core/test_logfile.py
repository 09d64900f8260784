"""``[log]``: the optional rotating log file, as text or JSON lines."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest

from conftest import StartDaemon
from hathd.config import structure
from hathd.errors import ConfigError
from hathd.logfile import LogConfig, add_file_handler


def test_file_rotates_at_max_bytes_and_keeps_backups(tmp_path: Path) -> None:
    logger = logging.getLogger("hathd.test.rotate")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    config = LogConfig(file="logs/hathd.log", max_bytes=2048, backups=2, json=True)
    handler = add_file_handler(config, tmp_path, logger)
    assert handler is not None
    try:
        for n in range(200):
            logger.info("line %d: %s", n, "é" * 20)
        try:
            raise ValueError("broken")
        except ValueError:
            logger.exception("with a traceback")
    finally:
        logger.removeHandler(handler)
        handler.close()
    path = tmp_path / "logs" / "hathd.log"
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["hathd.log", "hathd.log.1", "hathd.log.2"]
    for name in files:
        assert (path.parent / name).stat().st_size <= 2048
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
    entries = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    assert entries[-1]["message"] == "with a traceback"
    assert "ValueError: broken" in entries[-1]["exc"]
    assert entries[-2]["message"] == "line 199: " + "é" * 20
    assert {e["level"] for e in entries} == {"INFO", "ERROR"}
    assert all(e["logger"] == "hathd.test.rotate" and e["ts"].endswith("+00:00") for e in entries)


def test_no_file_by_default_and_limits_checked(tmp_path: Path) -> None:
    assert add_file_handler(LogConfig(), tmp_path) is None
    assert structure({}).log.file == ""
    with pytest.raises(ConfigError) as info:
        structure({"log": {"max_bytes": 10, "backups": 0}})
    assert sorted(path for path, _ in info.value.problems) == ["log.backups", "log.max_bytes"]


async def test_daemon_writes_its_log_file(start_daemon: StartDaemon, tmp_path: Path) -> None:
    daemon = await start_daemon(config_toml_text='[log]\nfile = "hathd.log"\n')
    assert await daemon.stop() == 0
    text = (daemon.state_dir / "hathd.log").read_text("utf-8")
    assert " INFO " in text
    # the same records still reach stderr
    assert text.splitlines()[0].split(" ", 2)[2] in daemon.log()


async def test_unwritable_log_file_fails_start_up_clearly(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory")
    daemon = await start_daemon(
        config_toml_text=f'[log]\nfile = "{blocker}/hathd.log"\n', wait=False
    )
    assert await daemon.proc.wait() == 2
    assert "log.file" in daemon.log()
