"""The engine subsystem as a daemon plugin."""

from __future__ import annotations

from hathd.runtime import BasePlugin


class EnginePlugin(BasePlugin):
    """Wires the engine subsystem into the daemon."""

    name = "engine"


PLUGIN = EnginePlugin()
