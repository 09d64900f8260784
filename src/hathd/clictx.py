"""What every ``hathd`` CLI command receives as ``ctx.obj``.

Plugin commands take it with ``@click.pass_obj`` and talk to the daemon through
``obj.admin()``. :class:`~hathd.errors.DaemonNotRunning` raised inside a command is turned into
a clear message and exit code 2 by the root command.
"""

from __future__ import annotations

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
