"""An optional rotating log file (``[log]``) for hosts without journald.

hathd always logs to stderr (journald captures it under systemd). With ``[log] file`` set, every
record also goes to that file through :class:`logging.handlers.RotatingFileHandler`: when the
file would exceed ``max_bytes`` it is renamed ``<file>.1`` (older ones shift to ``.2`` …) and at
most ``backups`` old files are kept (Python ``logging.handlers`` documentation). ``json = true``
writes one JSON object per line (``ts``, ``level``, ``logger``, ``message``, ``exc`` when there
is a traceback) for log shippers.
"""

from __future__ import annotations

import io
import json
import logging
import logging.handlers
import os
from datetime import UTC, datetime
from pathlib import Path

import attrs

from hathd.confutil import in_range

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@attrs.frozen
class LogConfig:
    """``[log]``: an optional rotating log file besides stderr (read at start; a change needs a
    restart)."""

    file: str = ""
    """Log file; empty = stderr only. A relative path is under the state directory."""
    max_bytes: int = attrs.field(default=10 * 1024 * 1024, validator=in_range(1024, 2**40))
    """Size in bytes at which the file is rotated to ``<file>.1``."""
    backups: int = attrs.field(default=5, validator=in_range(1, 1000))
    """Rotated files kept (``<file>.1`` … ``<file>.N``)."""
    json: bool = False
    """One JSON object per line (``ts``, ``level``, ``logger``, ``message``, ``exc``) instead
    of text."""


class JsonLineFormatter(logging.Formatter):
    """A record as one JSON line: ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``message``,
    and ``exc`` (the formatted traceback) when the record carries one."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object without newlines (non-ASCII kept as is)."""
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A :class:`~logging.handlers.RotatingFileHandler` whose files (the first one and each new
    one after a rotation) are created mode 0600: log lines may name paths and hosts."""

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return open(fd, "a", encoding=self.encoding, errors=self.errors)


def log_path(config: LogConfig, state_dir: Path) -> Path | None:
    """The log file of ``config`` (relative paths under ``state_dir``); ``None`` when unset."""
    if not config.file:
        return None
    path = Path(os.path.expanduser(config.file))
    return path if path.is_absolute() else state_dir / path


def add_file_handler(
    config: LogConfig, state_dir: Path, logger: logging.Logger | None = None
) -> logging.Handler | None:
    """Attach the rotating file handler of ``config`` to ``logger`` (default: the root logger)
    and return it; ``None`` when no file is configured. The file's directory is created (mode
    0700) and the file is opened mode 0600 at most (the process umask applies too).

    :raises OSError: the file cannot be created or opened.
    """
    path = log_path(config, state_dir)
    if path is None:
        return None
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    handler = PrivateRotatingFileHandler(
        path, maxBytes=config.max_bytes, backupCount=config.backups, encoding="utf-8"
    )
    handler.setFormatter(JsonLineFormatter() if config.json else logging.Formatter(TEXT_FORMAT))
    (logger or logging.getLogger()).addHandler(handler)
    return handler
