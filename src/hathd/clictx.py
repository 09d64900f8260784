"""What every ``hathd`` CLI command receives as ``ctx.obj``.

Plugin commands take it with ``@click.pass_obj`` and talk to the daemon through
``obj.admin()``. :class:`~hathd.errors.DaemonNotRunning` raised inside a command is turned into
a clear message and exit code 2 by the root command.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import attrs

from hathd.client import AdminClient


@attrs.frozen
class CliContext:
    """The state directory and configuration file chosen on the command line."""

    state_dir: Path
    config_path: str | None = None

    @property
    def socket(self) -> Path:
        """The admin unix socket of the daemon using this state directory."""
        return self.state_dir / "admin.sock"

    def admin(self) -> AdminClient:
        """A client for the daemon's admin API over its unix socket."""
        return AdminClient(self.socket)


def table(rows: list[list[str]], headers: list[str]) -> str:
    """``rows`` under ``headers`` as left-aligned columns two spaces apart (no trailing space)."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def human_bytes(n: float | None) -> str:
    """``n`` bytes for people, binary units: ``"512 B"``, ``"1.5 KiB"``, ``"3.2 GiB"``; ``None``
    → ``"?"``."""
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_rate(bytes_per_second: float | None) -> str:
    """A transfer rate (bytes/s) for people: ``"1.2 MiB/s"``; ``None`` → ``"-"``."""
    return "-" if bytes_per_second is None else f"{human_bytes(bytes_per_second)}/s"


def human_duration(seconds: float | None) -> str:
    """A duration for people: ``"45 s"``, ``"3 min 20 s"``, ``"2 h 05 min"``, ``"3 d 4 h"``;
    ``None`` → ``"-"``."""
    if seconds is None:
        return "-"
    s = round(abs(seconds))
    sign = "-" if seconds < 0 else ""
    if s < 60:
        return f"{sign}{s} s"
    if s < 3600:
        return f"{sign}{s // 60} min {s % 60:02d} s"
    if s < 86400:
        return f"{sign}{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{sign}{s // 86400} d {s % 86400 // 3600} h"


def local_time(epoch: float | None, now: float | None = None) -> str:
    """Seconds since the epoch as the local date and time with its zone, and how long ago (or
    ahead) it is: ``"2026-12-05 19:40:12 CET (3 min 05 s ago)"``; ``None`` → ``"-"``."""
    if epoch is None:
        return "-"
    stamp = datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    delta = (time.time() if now is None else now) - epoch
    relative = f"in {human_duration(-delta)}" if delta < 0 else f"{human_duration(delta)} ago"
    return f"{stamp} ({relative})"
