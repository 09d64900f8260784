"""hathd: a self-hosted media-automation daemon on Trio.

One process, one nursery tree: a Hentai@Home image node, seedbox transfers (Queue4Download),
fanfiction into Calibre (AutomatedFanfic), a durable download queue and declarative image-host
uploads, all driven through one job engine with per-domain politeness.
"""

__version__ = "0.1.0"
