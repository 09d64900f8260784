"""``[media_servers]``: the Jellyfin and Plex servers told about new files.

Each server is a named table ``[media_servers.servers.<name>]``. A server that mounts the
library at another path maps it with ``local_prefix`` → ``server_prefix`` (a path under
``local_prefix`` is sent with that prefix replaced).
"""

from __future__ import annotations

import os.path
from pathlib import PurePosixPath
from typing import Any

import attrs

from hathd.confutil import FieldError, in_range, one_of, read_secret, secret

SERVER_KINDS = ("jellyfin", "plex")
"""Media servers hathd can ask for a refresh."""


def _http_url(_inst: Any, attr: attrs.Attribute[Any], value: str) -> None:
    if not value.startswith(("http://", "https://")):
        raise FieldError(attr.name, f"expected an http:// or https:// URL, got {value!r}")


def _prefix(_inst: Any, attr: attrs.Attribute[Any], value: str) -> None:
    if value and not value.startswith("/"):
        raise FieldError(attr.name, f"expected an absolute path or nothing, got {value!r}")


@attrs.frozen
class MediaServerConfig:
    """``[media_servers.servers.<name>]``: one Jellyfin or Plex server."""

    kind: str = attrs.field(default="jellyfin", validator=one_of(*SERVER_KINDS))
    """``jellyfin`` or ``plex``."""
    url: str = attrs.field(default="http://127.0.0.1:8096", validator=_http_url)
    """Base URL of the server (Jellyfin: ``http://host:8096``; Plex: ``http://host:32400``)."""
    token: str | None = secret()
    """API key (Jellyfin: Dashboard → API Keys; Plex: ``X-Plex-Token``); prefer
    ``token_file``."""
    token_file: str = ""
    """File whose first line (surrounding whitespace stripped) is the token when ``token`` is
    unset."""
    local_prefix: str = attrs.field(default="", validator=_prefix)
    """Path prefix of the library as hathd sees it; empty = no mapping."""
    server_prefix: str = attrs.field(default="", validator=_prefix)
    """The same folder as the server sees it (replaces ``local_prefix``)."""
    libraries: list[str] = attrs.field(factory=list)
    """Only files under these local folders are refreshed on this server; empty = every
    landed file."""
    verify: bool = True
    """Verify the server's TLS certificate (https URLs)."""
    timeout: float = attrs.field(default=30.0, validator=in_range(0.1, 600))
    """Seconds one refresh request may take."""

    def read_token(self, name: str) -> str:
        """The token: ``token``, else the first line of ``token_file``, else ``""``.

        :raises ConfigError: the file cannot be read.
        """
        key = f"media_servers.servers.{name}.token_file"
        return read_secret(self.token, self.token_file, key) or ""

    def server_path(self, local: str) -> str:
        """``local`` as the server sees it (``local_prefix`` replaced by ``server_prefix``
        when ``local`` lies under it)."""
        if not self.local_prefix:
            return local
        path, prefix = PurePosixPath(local), PurePosixPath(self.local_prefix)
        if path != prefix and prefix not in path.parents:
            return local
        rest = path.relative_to(prefix)
        return str(PurePosixPath(self.server_prefix or "/") / rest)

    def covers(self, local: str) -> bool:
        """Whether ``local`` lies under one of ``libraries`` (always, when none is set)."""
        if not self.libraries:
            return True
        path = PurePosixPath(local)
        for lib in self.libraries:
            root = PurePosixPath(os.path.expanduser(lib))
            if path == root or root in path.parents:
                return True
        return False


@attrs.frozen
class MediaServersConfig:
    """``[media_servers]``: refresh Jellyfin or Plex when files land (off while no server is
    set). Folders landing within ``debounce`` seconds of each other are refreshed once."""

    servers: dict[str, MediaServerConfig] = attrs.field(factory=dict)
    """The servers, by name (``[media_servers.servers.living-room]``)."""
    job_kinds: list[str] = attrs.field(factory=lambda: ["anime-episode", "transfer"])
    """Job kinds whose results land in a library (``path`` or ``dest`` of the result)."""
    debounce: float = attrs.field(default=5.0, validator=in_range(0, 3600))
    """Seconds a landed folder waits for more files before its refresh (restarted by each
    new file, at most 4 × this in all)."""
    retry_delays: list[float] = attrs.field(factory=lambda: [10.0, 60.0, 300.0, 900.0])
    """Seconds before each retry of a failed refresh (±20 % jitter); after the last one it
    fails for good and the overview shows it."""
    rate: float = attrs.field(default=1.0, validator=in_range(0, 1000))
    """Refreshes per second sent to one server (its politeness lane); 0 = unlimited."""
