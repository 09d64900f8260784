"""Media-server refresh: tell Jellyfin or Plex when an episode or a transfer lands.

:mod:`~hathd.mediaserver.batcher` (sans-IO) gathers landed folders in a debounce window,
:mod:`~hathd.mediaserver.clients` speaks each server's refresh call,
:mod:`~hathd.mediaserver.plugin` watches finished jobs on the bus and runs each refresh as a
``media-refresh`` engine job (per-server politeness lane, retries with backoff).
Configuration: :mod:`~hathd.mediaserver.config` (``[media_servers]``).
"""
