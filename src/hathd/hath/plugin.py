"""The hath subsystem as a daemon plugin."""

from __future__ import annotations

from hathd.runtime import BasePlugin


class HathPlugin(BasePlugin):
    """Wires the hath subsystem into the daemon."""

    name = "hath"


PLUGIN = HathPlugin()
