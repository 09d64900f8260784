"""The recipes subsystem as a daemon plugin."""

from __future__ import annotations

from hathd.runtime import BasePlugin


class RecipesPlugin(BasePlugin):
    """Wires the recipes subsystem into the daemon."""

    name = "recipes"


PLUGIN = RecipesPlugin()
