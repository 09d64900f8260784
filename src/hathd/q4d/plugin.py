"""The q4d subsystem as a daemon plugin."""

from __future__ import annotations

from hathd.runtime import BasePlugin


class Q4dPlugin(BasePlugin):
    """Wires the q4d subsystem into the daemon."""

    name = "q4d"


PLUGIN = Q4dPlugin()
