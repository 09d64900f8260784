"""Configuration: defaults, env overrides, every problem reported with its key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from hathd import config as config_mod
from hathd.errors import ConfigError


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text("")
    cfg = config_mod.load(path, environ={})
    assert cfg == config_mod.Config()
    assert cfg.daemon.shutdown_grace == 20.0
    assert cfg.admin.host == "127.0.0.1"


def test_every_problem_is_reported_with_its_key_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[daemon]\nshutdown_grace = "soon"\nlog_level = "LOUD"\n'
        "[engine]\nworkers = 0\nturbo = true\n"
        '[engine.lanes."*.example"]\nrate = -1.0\n'
        "[nonsense]\nx = 1\n"
    )
    with pytest.raises(ConfigError) as info:
        config_mod.load(path, environ={})
    paths = {p for p, _ in info.value.problems}
    assert paths == {
        "daemon.shutdown_grace",
        "daemon.log_level",
        "engine.workers",
        "engine.turbo",
        "engine.lanes.*.example.rate",
        "nonsense",
    }
    messages = dict(info.value.problems)
    assert messages["engine.turbo"] == "unknown key"
    assert "must be >= 1" in messages["engine.workers"]


def test_toml_syntax_error_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[daemon\nstate_dir = ")
    with pytest.raises(ConfigError) as info:
        config_mod.load(path, environ={})
    assert info.value.problems[0][0] == "(file)"
    assert "TOML" in info.value.problems[0][1]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        config_mod.load(tmp_path / "absent.toml", environ={})


def test_env_overrides_file_and_parses_toml_values(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[daemon]\nshutdown_grace = 5.0\n")
    cfg = config_mod.load(
        path,
        environ={
            "HATHD_DAEMON__SHUTDOWN_GRACE": "7.5",
            "HATHD_ADMIN__HOST": "127.0.0.2",
            "HATHD_DAEMON__LOG_LEVEL": "DEBUG",
            "HATHD_HATH__CLIENT_KEY": "1e3",  # text keys take the text as it is
            "HATHD_HATH__RPC_SERVER": "1_0",
            "HATHD_HATH__FLOOD_CONTROL": "no",
            "HATHD_ENGINE__RETRY__QUICK__DELAYS": "[1, 2.5]",
            "HATHD_UNRELATED": "ignored",
            "OTHER__THING": "ignored",
        },
    )
    assert cfg.daemon.shutdown_grace == 7.5
    assert cfg.admin.host == "127.0.0.2"
    assert cfg.daemon.log_level == "DEBUG"
    assert cfg.hath.client_key == "1e3"
    assert cfg.hath.rpc_server == "1_0"
    assert cfg.hath.flood_control is False
    assert cfg.engine.retry["quick"].delays == [1.0, 2.5]


def test_wrong_toml_types_are_errors_not_conversions(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[engine]\nworkers = 2.7\ndownload_root = ['a']\nretry_preset = 5\n"
        "[daemon]\nstate_dir = 3\nshutdown_grace = true\n"
        "[admin]\nport = '8750'\n"
        "[hath]\nflood_control = 'yes'\n"
    )
    with pytest.raises(ConfigError) as info:
        config_mod.load(path, environ={})
    problems = dict(info.value.problems)
    assert set(problems) == {
        "engine.workers",
        "engine.download_root",
        "engine.retry_preset",
        "daemon.state_dir",
        "daemon.shutdown_grace",
        "admin.port",
        "hath.flood_control",
    }
    assert "expected an integer, got 2.7" in problems["engine.workers"]
    assert "expected a string" in problems["engine.download_root"]
    assert "expected a number, got True" in problems["daemon.shutdown_grace"]
    assert "expected true or false" in problems["hath.flood_control"]


def test_float_keys_take_integers() -> None:
    cfg = config_mod.structure({"daemon": {"shutdown_grace": 9}})
    assert cfg.daemon.shutdown_grace == 9.0
    assert isinstance(cfg.daemon.shutdown_grace, float)


def test_env_override_with_wrong_type_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        config_mod.load(None, environ={"HATHD_ADMIN__PORT": "seventy"})
    assert [p for p, _ in info.value.problems] == ["admin.port"]


def test_redaction_hides_secrets_only() -> None:
    cfg = config_mod.load(None, environ={"HATHD_HATH__CLIENT_KEY": "s3cret"})
    shown = config_mod.unstructure_redacted(cfg)
    assert shown["hath"]["client_key"] == "***"
    assert "s3cret" not in repr(shown)
    assert shown["admin"]["host"] == "127.0.0.1"


def test_notification_urls_are_redacted_but_keep_their_scheme() -> None:
    cfg = config_mod.structure(
        {"notify": {"urls": ["tgram://123:SECRETTOKEN/456", "json://127.0.0.1:9/"]}}
    )
    shown = config_mod.unstructure_redacted(cfg)
    assert shown["notify"]["urls"] == ["tgram://***", "json://***"]
    assert "SECRETTOKEN" not in repr(shown)


def test_retry_preset_must_exist() -> None:
    with pytest.raises(ConfigError) as info:
        config_mod.structure({"engine": {"retry_preset": "nosuch"}, "q4d": {"retry_preset": "x"}})
    problems = dict(info.value.problems)
    assert problems["engine.retry_preset"] == "unknown preset 'nosuch'; known: default, fanfic"
    assert "q4d.retry_preset" in problems
    cfg = config_mod.structure(
        {"engine": {"retry": {"slow": {"delays": [600]}}}, "q4d": {"retry_preset": "slow"}}
    )
    assert cfg.q4d.retry_preset == "slow"


def test_env_reaches_keys_under_a_named_table() -> None:
    cfg = config_mod.load(
        None, environ={"HATHD_RECIPES__SERVICES__IMAGEBAM__CREDENTIALS__PASSWORD": "0123"}
    )
    assert cfg.recipes.services["imagebam"].credentials == {"password": "0123"}  # text, as given
