"""systemd's notify protocol (``sd_notify(3)``): READY, STOPPING, RELOADING, WATCHDOG, STATUS.

A datagram to ``$NOTIFY_SOCKET`` (an ``@`` prefix means the abstract namespace). Without the
variable every call is a no-op returning ``False``; an ``OSError`` is swallowed, since
notification must never bring the daemon down. Source: ``sd_notify(3)``, ``systemd.service(5)``
(``WatchdogSec=`` passes ``WATCHDOG_USEC`` and ``WATCHDOG_PID``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


def sd_notify(*lines: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``lines`` (e.g. ``"READY=1"``) as one datagram; ``True`` if it was sent."""
    env = os.environ if environ is None else environ
    addr = env.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr[0] == "@":
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(addr)
            sock.sendall("\n".join(lines).encode())
    except OSError:
        return False
    return True


def watchdog_period(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), or ``None`` when the
    watchdog is off or meant for another process (``WATCHDOG_PID``)."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None
