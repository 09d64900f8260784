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
