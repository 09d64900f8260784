"""The [imap]/[fanfic]/[notify] configuration and the AutomatedFanfic config.toml importer."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from asyncclick.testing import CliRunner

from hathd import config as config_mod
from hathd.errors import ConfigError
from hathd.fanfic.config import CalibreConfig, ImapConfig
from hathd.fanfic.importer import convert_text, to_toml
from hathd.fanfic.plugin import FanficPlugin

AUTOMATED_FANFIC_TOML = """
max_workers = 4

[email]
email = "reader@example.org"
password = "app-password"
server = "imap.example.org"
mailbox = "Fanfic"
sleep_time = 120
disabled_sites = ["fanfiction", "archiveofourown.org"]

[calibre]
path = "http://192.168.1.5:8080/#Fanfic"
username = "cal"
password = "calpw"
personal_ini = "/config/personal.ini"
update_method = "update_always"
metadata_preservation_mode = "preserve_metadata"

[pushbullet]
enabled = true
api_key = "o.abc"
device = "phone"

[apprise]
urls = ["json://127.0.0.1:9999/", ""]

[retry]
hail_mary_enabled = true
hail_mary_wait_hours = 6.0
max_normal_retries = 5

[process]
shutdown_timeout = 30.0
"""


def test_defaults_keep_fanfic_off() -> None:
    cfg = config_mod.structure({})
    assert cfg.fanfic.enabled is False
    assert cfg.fanfic.update_method == "update"
    assert cfg.fanfic.calibre.metadata_mode == "remove_add"
    assert cfg.imap.effective_port() == 993
    assert cfg.notify.urls == []


def test_env_overrides_and_errors_with_key_paths() -> None:
    cfg = config_mod.structure(
        config_mod.apply_env(
            {"fanfic": {"enabled": True}},
            {
                "HATHD_FANFIC__CALIBRE__METADATA_MODE": "add_format",
                "HATHD_IMAP__TLS": "starttls",
                "HATHD_FANFIC__DISABLED_SITES": '["www.fanfiction.net"]',
            },
        )
    )
    assert cfg.fanfic.calibre.metadata_mode == "add_format"
    assert cfg.imap.effective_port() == 143
    assert cfg.fanfic.disabled_sites == ["www.fanfiction.net"]
    with pytest.raises(ConfigError) as info:
        config_mod.structure(
            {
                "fanfic": {"update_method": "sometimes", "calibre": {"metadata_mode": "x"}},
                "imap": {"tls": "ssl3", "idle_check": 0},
            }
        )
    paths = {path for path, _ in info.value.problems}
    assert {"fanfic.update_method", "fanfic.calibre.metadata_mode", "imap.tls"} <= paths
    assert "imap.idle_check" in paths


def test_password_file_and_redaction(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    assert ImapConfig(password_file=str(tmp_path / "pw")).read_password() == "from-file"
    assert ImapConfig(password="inline").read_password() == "inline"
    with pytest.raises(ConfigError, match=r"imap\.password_file"):
        ImapConfig(password_file=str(tmp_path / "missing")).read_password()
    # only the first line counts, as for every *_file key (a trailing note is not part of it)
    (tmp_path / "pw2").write_text("  s3cret  \nwritten 2024 by admin\n")
    assert ImapConfig(password_file=str(tmp_path / "pw2")).read_password() == "s3cret"
    calibre = CalibreConfig(password_file=str(tmp_path / "pw2"))
    assert calibre.read_password() == "s3cret"
    (tmp_path / "empty").write_text("")
    assert ImapConfig(password_file=str(tmp_path / "empty")).read_password() == ""
    (tmp_path / "latin1").write_bytes(b"caf\xe9\n")
    with pytest.raises(ConfigError, match=r"fanfic\.calibre\.password_file"):
        CalibreConfig(password_file=str(tmp_path / "latin1")).read_password()
    cfg = config_mod.structure(
        {"imap": {"password": "x"}, "fanfic": {"calibre": {"password": "y"}}}
    )
    shown = config_mod.unstructure_redacted(cfg)
    assert shown["imap"]["password"] == "***"
    assert shown["fanfic"]["calibre"]["password"] == "***"


def test_import_maps_every_section_and_validates() -> None:
    imported = convert_text(AUTOMATED_FANFIC_TOML)
    text = to_toml(imported.sections)
    data = tomllib.loads(text)
    cfg = config_mod.structure(data)  # the output is a valid hathd configuration
    assert cfg.imap.host == "imap.example.org"
    assert (cfg.imap.port, cfg.imap.tls, cfg.imap.username) == (993, "tls", "reader@example.org")
    assert cfg.imap.mailbox == "Fanfic"
    assert cfg.imap.poll_interval == 120.0
    assert cfg.fanfic.enabled is True
    assert cfg.fanfic.disabled_sites == ["www.fanfiction.net", "archiveofourown.org"]
    assert cfg.fanfic.update_method == "update_always"
    assert cfg.fanfic.personal_ini == "/config/personal.ini"
    assert cfg.fanfic.calibre.library == "http://192.168.1.5:8080/#Fanfic"
    assert cfg.fanfic.calibre.metadata_mode == "preserve_metadata"
    assert cfg.notify.urls == ["json://127.0.0.1:9999/", "pbul://o.abc"]
    preset = cfg.engine.retry["fanfic"]
    assert preset.delays == [60.0, 120.0, 180.0, 240.0]
    assert preset.jitter == 0.5
    assert preset.final_wait == 6 * 3600.0
    assert preset.final_try is True
    without = convert_text(
        AUTOMATED_FANFIC_TOML.replace("hail_mary_enabled = true", "hail_mary_enabled = false")
    )
    assert (
        config_mod.structure(tomllib.loads(to_toml(without.sections)))
        .engine.retry["fanfic"]
        .final_try
        is False
    )
    notes = " ".join(imported.notes)
    assert "phone" in notes
    assert "max_workers" in notes
    assert "process" in notes


def test_import_rejects_bad_toml() -> None:
    with pytest.raises(ValueError, match="not valid TOML"):
        convert_text("[email\nserver=")


def test_import_names_values_of_the_wrong_type() -> None:
    with pytest.raises(ValueError) as caught:
        convert_text('email = 5\n[calibre]\npath = 7\n[retry]\nhail_mary_wait_hours = "six"\n')
    assert str(caught.value) == (
        "[email]: expected a table, got int 5; calibre.path: expected a string, got int 7;"
        " retry.hail_mary_wait_hours: expected a number, got str 'six'"
    )
    with pytest.raises(ValueError, match=r"email\.disabled_sites: expected a list of strings"):
        convert_text("[email]\ndisabled_sites = [1, 2]\n")


def test_import_takes_a_single_string_as_one_site() -> None:
    """``disabled_sites = "fanfiction"`` is one site, not ten one-letter ones."""
    imported = convert_text(
        '[email]\ndisabled_sites = "fanfiction"\n[apprise]\nurls = "json://127.0.0.1:9/"\n'
    )
    assert imported.sections["fanfic"]["disabled_sites"] == ["www.fanfiction.net"]
    assert imported.sections["notify"]["urls"] == ["json://127.0.0.1:9/"]


async def test_import_config_command(tmp_path: Path) -> None:
    source = tmp_path / "config.toml"
    source.write_text(AUTOMATED_FANFIC_TOML)
    (command,) = FanficPlugin().cli()
    result = await CliRunner().invoke(command, ["import-config", str(source)])
    assert result.exit_code == 0, result.output
    body = "\n".join(ln for ln in result.output.splitlines() if not ln.startswith("# note"))
    assert config_mod.structure(tomllib.loads(body)).imap.host == "imap.example.org"
    bad = tmp_path / "bad.toml"
    bad.write_text("[x")
    result = await CliRunner().invoke(command, ["import-config", str(bad)])
    assert result.exit_code == 2
