"""Configuration of the Hentai@Home image node (``[hath]``).

The node is off unless ``enabled = true`` *and* credentials exist (``client_id`` + ``client_key``
here, or ``<state_dir>/data/client_login`` written by ``hathd hath login``). Values the control
server sends (port, throttle, disk limit; docs/hath-protocol.md §2) apply unless overridden here.
"""

from __future__ import annotations

import attrs

from hathd.confutil import FieldError, in_range, secret


def _rpc_path(_inst: object, attr: attrs.Attribute[str], value: str) -> None:
    if not value.endswith("?") or "/" in value[:1]:
        raise FieldError(attr.name, f"must look like '15/rpc?' (ends with '?'), got {value!r}")


@attrs.frozen
class HathConfig:
    """``[hath]``: the H@H image node; off until enabled and credentials are configured.

    Sizes are bytes, durations seconds. ``None`` means "use what the control server sends".
    """

    enabled: bool = False
    """Run the image node (credentials are still required)."""
    client_id: int | None = attrs.field(default=None, validator=in_range(1, None))
    """H@H client ID; unset = read ``<state_dir>/data/client_login``."""
    client_key: str | None = secret()
    """H@H client key (secret); unset = read ``<state_dir>/data/client_login``."""
    rpc_server: str = "rpc.hentaiathome.net"
    """Bootstrap RPC host, optionally ``host:port`` (tests point it at a fake)."""
    rpc_path: str = attrs.field(default="15/rpc?", validator=_rpc_path)
    """RPC path on the control server; must end with ``?``."""
    listen_host: str = "0.0.0.0"
    """Address the HTTPS listener binds."""
    port: int = attrs.field(default=0, validator=in_range(0, 65535))
    """HTTPS port; 0 = the ``port`` the control server assigns."""
    cache_dir: str | None = None
    """Cache root; default ``<state_dir>/cache``."""
    disk_limit_bytes: int | None = attrs.field(default=None, validator=in_range(0, None))
    """Local cap on the cache size; the smaller of this and ``disklimit_bytes`` applies."""
    min_free_bytes: int = attrs.field(default=100 * 1024**2, validator=in_range(0, None))
    """Free disk space the pruner keeps (at least ``diskremaining_bytes`` from the server)."""
    throttle_bytes: int | None = attrs.field(default=None, validator=in_range(0, None))
    """Upload cap in bytes/s (0 = unlimited); default the server's ``throttle_bytes``."""
    max_connections: int | None = attrs.field(default=None, validator=in_range(1, 100000))
    """Connection cap; default ``20 + min(480, throttle_bytes // 10000)``."""
    max_allowed_filesize: int = attrs.field(default=1024**3, validator=in_range(1, None))
    """Largest file in bytes the proxy accepts from an upstream."""
    verify_on_serve: bool = True
    """SHA-1 a cached file while it is first served in a week; delete it if it is corrupt."""
    flood_control: bool = True
    """Per-IP flood control: block an IP that opens connections too fast."""
    ip_origin_check: bool = True
    """Accept ``/servercmd/`` only from the RPC server IPs."""
    still_alive_interval: float = attrs.field(default=110.0, validator=in_range(1, 86400))
    """Seconds between ``still_alive`` RPCs."""
    blacklist_interval: float = attrs.field(default=21600.0, validator=in_range(1, 10**7))
    """Seconds between ``get_blacklist`` RPCs."""
    prune_interval: float = attrs.field(default=60.0, validator=in_range(0.1, 86400))
    """Seconds between cache-pruner checks."""
    rpc_timeout: float = attrs.field(default=600.0, validator=in_range(0.1, 3600))
    """Read timeout in seconds of RPC calls (the connect timeout is 5 s)."""
    upstream_timeout: float = attrs.field(default=30.0, validator=in_range(0.1, 3600))
    """Seconds without bytes from an srfetch upstream before it counts as failed."""
    request_timeout: float = attrs.field(default=10.0, validator=in_range(0.1, 600))
    """Seconds a client has to complete the TLS handshake and send its request head."""
    serving_processes: int = attrs.field(default=1, validator=in_range(1, 64))
    """Processes that accept H@H connections on the port (``SO_REUSEPORT``); 1 = the node
    alone. Extra ones serve cache hits and forward the rest to the node (docs/hath.md)."""
