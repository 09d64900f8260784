"""hathd: a self-hosted media-automation daemon on Trio.

One process, one nursery tree: a Hentai@Home image node, seedbox transfers (Queue4Download),
fanfiction into Calibre (AutomatedFanfic), a durable download queue and declarative image-host
uploads, all driven through one job engine with per-domain politeness.
"""

import sys

__version__ = "0.1.0"

# httpx's package init imports its command-line client (``httpx._main``: click, rich,
# pygments) whenever those happen to be installed, ~6 MB of resident memory that no part of
# hathd uses. A ``None`` entry in ``sys.modules`` makes that one import fail, which httpx
# handles by leaving ``httpx.main`` a stub (httpx/__init__.py; the import system's documented
# rule: https://docs.python.org/3/reference/import.html#the-module-cache). Here, in the
# package init, it comes before any hathd module imports httpx.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
