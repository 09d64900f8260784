"""The fanfic subsystem as a daemon plugin."""

from __future__ import annotations

from hathd.runtime import BasePlugin


class FanficPlugin(BasePlugin):
    """Wires the fanfic subsystem into the daemon."""

    name = "fanfic"


PLUGIN = FanficPlugin()
