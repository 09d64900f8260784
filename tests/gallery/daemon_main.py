"""``python daemon_main.py STATE_DIR CONFIG``: a real ``hathd`` daemon process with only the
engine and gallery plugins, for the kill-and-restart test (the full plugin list is the
daemon's own business)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import trio

from hathd.config import load
from hathd.daemon import Daemon
from hathd.engine.plugin import PLUGIN as ENGINE_PLUGIN
from hathd.gallery.plugin import PLUGIN as GALLERY_PLUGIN


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    state, config_path = Path(sys.argv[1]), sys.argv[2]
    daemon = Daemon(
        load(config_path), state, config_path=config_path, plugins=[ENGINE_PLUGIN, GALLERY_PLUGIN]
    )
    trio.run(daemon.run)


if __name__ == "__main__":
    main()
