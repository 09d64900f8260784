"""Importing a Queue4Download setup: q4d.conf / shell config / Q4D_* / Types.config / type map."""

from __future__ import annotations

import json
import os
import sys
import tomllib
from pathlib import Path

import pytest
import trio
from asyncclick.testing import CliRunner

from hathd.config import structure
from hathd.q4d.cli import q4d_group
from hathd.q4d.importer import convert, read_settings, read_type_codes, to_toml

Q4D_CONF = """\
[DEFAULT]
BUS_HOST = broker.lan
BUS_PORT = 1884
USER = q4d
PW = bus secret
LABELLING = true
CREDS = fear:loathing
HOST = vegas.seedbox.net
THREADS = 4
SEGMENTS = 8
PATH = /downloads
"""

CLIENT_SH = """\
#!/bin/bash
THREADS=5
SEGMENTS=4
CREDS='fear,loathing'
HOST="vegas.seedbox.net"
declare -A TypeCodes
TypeCodes[A]="/Media/Music"
TypeCodes[M]=/Media/Movies
TypeCodes[ERR]="/Media/Other"
"""

TYPES = """\
LABEL   IS       sonarr  T   ""
TRACKER CONTAINS hatc    "A" ""
KEY     CONTAINS 2024    N   M
"""


def read(path: str) -> str:
    return Path(path).read_text()


def test_q4d_conf_maps_every_setting() -> None:
    imported = convert(read_settings(Q4D_CONF))
    assert imported.sections["mqtt"] == {
        "host": "broker.lan",
        "port": 1884,
        "username": "q4d",
        "client_id": "hathd-q4d",
    }
    q4d = imported.sections["q4d"]
    assert q4d["host"] == "sftp://vegas.seedbox.net"
    assert (q4d["user"], q4d["threads"], q4d["segments"]) == ("fear", 4, 8)
    assert q4d["labelling"] is True
    assert q4d["download_root"] == "/downloads"
    assert imported.secrets == {"mqtt": "bus secret", "q4d": "loathing"}


def test_env_overrides_and_shell_file_and_type_codes() -> None:
    settings = read_settings(CLIENT_SH)
    assert settings["CREDS"] == "fear,loathing"
    codes = read_type_codes(CLIENT_SH)
    assert codes == {"A": "/Media/Music", "M": "/Media/Movies", "ERR": "/Media/Other"}
    imported = convert(settings, type_codes=codes, environ={"Q4D_THREADS": "9", "OTHER": "x"})
    assert imported.sections["q4d"]["threads"] == 9
    assert imported.sections["q4d.type_map"]["ERR"] == "/Media/Other"


def test_type_mapping_json() -> None:
    assert read_type_codes('{"MOV": "/media/movies", "TV": "/media/tv"}') == {
        "MOV": "/media/movies",
        "TV": "/media/tv",
    }
    with pytest.raises(ValueError):
        read_type_codes("[1, 2]")


def test_output_is_a_valid_hathd_config_with_rules() -> None:
    imported = convert(read_settings(Q4D_CONF), types_config=TYPES, type_codes={"M": "/m"})
    text = to_toml(imported, password_files={"q4d": "/etc/hathd/seedbox.pw"})
    config = structure(tomllib.loads(text))
    assert config.q4d.enabled
    assert config.q4d.password_file == "/etc/hathd/seedbox.pw"
    assert config.q4d.password is None
    assert config.mqtt.password == "bus secret"
    assert config.q4d.rules == [
        "LABEL IS sonarr T",
        "TRACKER CONTAINS hatc A",
        "KEY CONTAINS 2024 N M",
    ]
    assert config.q4d.type_map == {"M": "/m"}
    assert any("LABEL or TRACKER" in note for note in imported.notes)


def test_bad_number_is_reported() -> None:
    with pytest.raises(ValueError, match="THREADS"):
        convert({"THREADS": "many"})


async def test_cli_import_writes_secret_files(tmp_path: Path) -> None:
    conf = tmp_path / "q4d.conf"
    conf.write_text(Q4D_CONF)
    mapping = tmp_path / "type_mapping.json"
    mapping.write_text(json.dumps({"M": "/media/movies"}))
    secrets = tmp_path / "secrets"
    result = await CliRunner().invoke(
        q4d_group,
        [
            "import",
            "--conf",
            str(conf),
            "--type-map",
            str(mapping),
            "--no-env",
            "--secrets-dir",
            str(secrets),
        ],
    )
    assert result.exit_code == 0, result.output
    config = structure(tomllib.loads(result.output))
    assert config.q4d.password is None
    assert read(config.q4d.password_file) == "loathing\n"
    assert (secrets / "q4d.password").stat().st_mode & 0o777 == 0o600
    assert config.mqtt.read_password() == "bus secret"
    assert "bus secret" not in result.output


async def test_cli_import_reports_bad_rules(tmp_path: Path) -> None:
    types = tmp_path / "Types.config"
    types.write_text("KEY LIKE x Y\n")
    result = await CliRunner().invoke(q4d_group, ["import", "--types", str(types), "--no-env"])
    assert result.exit_code == 2
    assert "unknown CONDITIONAL" in result.output


async def test_hathd_q4d_import_as_a_real_command(tmp_path: Path) -> None:
    (tmp_path / "Q4Dconfig.sh").write_text(CLIENT_SH)
    (tmp_path / "Types.config").write_text(TYPES)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HATHD_", "Q4D_"))}
    env.update({"Q4D_BUS_HOST": "broker.lan", "Q4D_SEGMENTS": "6"})
    argv = [sys.executable, "-m", "hathd", "q4d", "import", "--conf", "Q4Dconfig.sh"]
    argv += ["--types", "Types.config", "--type-map", "Q4Dconfig.sh"]
    argv += ["--secrets-dir", "secrets"]  # relative: the TOML must still name an absolute file
    with trio.fail_after(60):
        result = await trio.run_process(
            argv, cwd=tmp_path, env=env, capture_stdout=True, capture_stderr=True, check=False
        )
    assert result.returncode == 0, result.stderr
    config = structure(tomllib.loads(result.stdout.decode()))
    assert config.mqtt.host == "broker.lan"  # from the environment
    assert (config.q4d.threads, config.q4d.segments) == (5, 6)
    assert config.q4d.user == "fear"
    assert Path(config.q4d.password_file).is_absolute()
    assert config.q4d.read_password() == "loathing"
    assert config.q4d.type_map["ERR"] == "/Media/Other"
    assert len(config.q4d.rules) == 3
