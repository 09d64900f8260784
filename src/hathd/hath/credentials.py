"""Where the H@H client ID and key come from: the ``[hath]`` configuration, else
``<state_dir>/data/client_login`` holding ``<id>-<key>`` (docs/hath-protocol.md §1.1; J162
``Settings``). ``hathd hath login`` writes that file with mode 0600."""

from __future__ import annotations

import os
from pathlib import Path

from hathd.hath.config import HathConfig
from hathd.hath.protocol import Credentials, ProtocolError

LOGIN_FILE = "client_login"


def login_path(data_dir: Path) -> Path:
    """``<data_dir>/client_login``."""
    return data_dir / LOGIN_FILE


def load_credentials(cfg: HathConfig, data_dir: Path) -> Credentials | None:
    """Credentials from the configuration if both fields are set, else from the login file,
    else ``None`` (blocking: reads one small file).

    :raises ProtocolError: the configured values or the file's content are malformed.
    """
    if cfg.client_id is not None and cfg.client_key:
        return Credentials(cfg.client_id, cfg.client_key)
    path = login_path(data_dir)
    try:
        text = path.read_text("ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"cannot read {path}: {exc}") from None
    return Credentials.parse_login_file(text)


def save_credentials(creds: Credentials, data_dir: Path) -> Path:
    """Write ``<id>-<key>`` to ``data/client_login`` atomically with mode 0600; returns the
    path (blocking)."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = login_path(data_dir)
    tmp = path.with_name(f".{LOGIN_FILE}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(creds.login_file_text())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path
