"""Configuration of the IMAP watcher (``[imap]``), fanfiction jobs (``[fanfic]``,
``[fanfic.calibre]``); notifications (``[notify]``) moved to :mod:`hathd.notify.config` and
are re-exported here for older imports.

Every field has a default, so an empty file is valid and the subsystem stays off until
``[fanfic] enabled = true``. Passwords are read from files (``password_file``) or given as
:func:`~hathd.confutil.secret` fields, which ``hathd config show`` prints as ``***``.

The keys mirror AutomatedFanfic's ``config.toml`` (``[email]``, ``[calibre]``, ``[retry]``,
``[apprise]``); :mod:`hathd.fanfic.importer` converts one.
"""

from __future__ import annotations

import attrs

from hathd.confutil import in_range, one_of, read_secret, secret
from hathd.notify.config import NotifyConfig

__all__ = [
    "METADATA_MODES",
    "TLS_MODES",
    "UPDATE_METHODS",
    "CalibreConfig",
    "FanficConfig",
    "ImapConfig",
    "NotifyConfig",
]

UPDATE_METHODS = ("update", "update_always", "force", "update_no_force")
"""FanFicFare update modes (AutomatedFanfic ``calibre.update_method``)."""

METADATA_MODES = ("remove_add", "preserve_metadata", "add_format")
"""How an updated EPUB replaces the book in Calibre (AutomatedFanfic
``calibre.metadata_preservation_mode``)."""

TLS_MODES = ("tls", "starttls", "none")
"""IMAP transport: implicit TLS (port 993), STARTTLS upgrade (port 143), or plain text."""


@attrs.frozen
class ImapConfig:
    """``[imap]``: the mailbox watched for story URLs.

    ``port`` 0 means the default for ``tls`` (993 for ``tls``, 143 otherwise). Times are
    seconds. Stopping the watcher never waits for these timeouts: a blocked call gets 2 s,
    then its socket is shut down (:mod:`hathd.fanfic.imap`).
    """

    host: str = ""
    """IMAP server; empty = no mailbox watcher."""
    port: int = attrs.field(default=0, validator=in_range(0, 65535))
    """IMAP port; 0 = 993 for ``tls``, else 143."""
    tls: str = attrs.field(default="tls", validator=one_of(*TLS_MODES))
    """Transport: ``tls`` (implicit), ``starttls`` or ``none`` (plain text)."""
    ca_file: str = ""
    """CA bundle for the server certificate; empty = the system's trust store."""
    verify: bool = True
    """Verify the server certificate and host name."""
    username: str = ""
    """IMAP login name."""
    password: str | None = secret()
    """IMAP password (secret); prefer ``password_file``."""
    password_file: str = ""
    """File whose first line (surrounding whitespace stripped) is the password when
    ``password`` is unset."""
    mailbox: str = "INBOX"
    """Folder watched for story URLs."""
    idle: bool = True
    """Use IDLE when the server offers it; otherwise poll."""
    idle_check: float = attrs.field(default=2.0, validator=in_range(0.1, 30))
    """Seconds one IDLE wait blocks its worker thread before the renewal time is checked."""
    idle_renew: float = attrs.field(default=600.0, validator=in_range(1, 1740))
    """Seconds after which an IDLE is ended and restarted."""
    poll_interval: float = attrs.field(default=60.0, validator=in_range(0.1, 86400))
    """Seconds between mailbox scans when IDLE is not used."""
    timeout: float = attrs.field(default=30.0, validator=in_range(1, 600))
    """Socket timeout in seconds of the IMAP connection (each read or write)."""
    connect_timeout: float = attrs.field(default=10.0, validator=in_range(0.1, 600))
    """Seconds allowed for the TCP connect, the TLS handshake (implicit TLS) and the server's
    greeting; a STARTTLS handshake comes later and falls under ``timeout``."""
    reconnect_min: float = attrs.field(default=1.0, validator=in_range(0.01, 3600))
    """First wait in seconds before reconnecting after an error (doubles each time)."""
    reconnect_max: float = attrs.field(default=300.0, validator=in_range(0.01, 86400))
    """Longest wait in seconds between reconnect attempts."""
    max_message_bytes: int = attrs.field(default=2 * 1024 * 1024, validator=in_range(1024))
    """Bytes of each message fetched and scanned for URLs."""

    def effective_port(self) -> int:
        """The TCP port to connect to (``port``, else 993 for ``tls`` and 143 otherwise)."""
        if self.port:
            return self.port
        return 993 if self.tls == "tls" else 143

    def read_password(self) -> str:
        """The password: ``password`` if set, else the first line of ``password_file``.

        :raises ConfigError: the file cannot be read.
        """
        return read_secret(self.password, self.password_file, "imap.password_file") or ""


@attrs.frozen
class CalibreConfig:
    """``[fanfic.calibre]``: where books go.

    ``library`` is a library folder or a content-server URL ``http://host:port/#library_id``;
    empty means "download only, no Calibre step". The server password is handed to calibredb
    through its ``<f:/path>`` file form, never on the command line. ``timeout`` is seconds
    per calibredb call.
    """

    library: str = ""
    """Library folder or ``http://host:port/#library_id``; empty = download only (no Calibre)."""
    username: str = ""
    """Content-server user; empty = none."""
    password: str | None = secret()
    """Content-server password (secret); prefer ``password_file``."""
    password_file: str = ""
    """File whose first line (surrounding whitespace stripped) is the content-server password
    when ``password`` is unset; empty = none."""
    metadata_mode: str = attrs.field(default="remove_add", validator=one_of(*METADATA_MODES))
    """How an update replaces the book: ``remove_add``, ``preserve_metadata`` or ``add_format``."""
    calibredb: str = "calibredb"
    """The calibredb program (name on ``PATH`` or a path)."""
    timeout: float = attrs.field(default=300.0, validator=in_range(1, 86400))
    """Seconds one calibredb call may take."""

    def read_password(self) -> str:
        """The content-server password (``password``, else the first line of
        ``password_file``), or ``""``.

        :raises ConfigError: the file cannot be read.
        """
        return read_secret(self.password, self.password_file, "fanfic.calibre.password_file") or ""


@attrs.frozen
class FanficConfig:
    """``[fanfic]``: FanFicFare jobs, off by default.

    ``personal_ini`` / ``defaults_ini`` are files copied into each job's working directory
    (FanFicFare reads ``./personal.ini``). ``disabled_sites`` lists site domains (as
    ``getSiteDomain()`` names them, e.g. ``www.fanfiction.net``) whose URLs only trigger a
    notification. ``timeout`` is seconds per FanFicFare run. ``retry_preset`` names the
    engine's backoff preset for fanfic jobs (built-in ``fanfic``: AutomatedFanfic's 1..10
    minutes ±50 %, then a final try after 12 hours; override it in
    ``[engine.retry.fanfic]``).
    """

    enabled: bool = False
    """Turn the fanfiction subsystem on."""
    fanficfare: list[str] = attrs.field(factory=lambda: ["fanficfare"])
    """FanFicFare command as an argv list."""
    update_method: str = attrs.field(default="update", validator=one_of(*UPDATE_METHODS))
    """FanFicFare update mode: ``update``, ``update_always``, ``force`` or ``update_no_force``."""
    personal_ini: str = ""
    """``personal.ini`` file (or a folder holding one) copied into each job; empty = none."""
    defaults_ini: str = ""
    """``defaults.ini`` file (or a folder holding one) copied into each job; empty = none."""
    disabled_sites: list[str] = attrs.field(factory=list)
    """Site domains (e.g. ``www.fanfiction.net``) whose URLs are only notified, not fetched."""
    retry_preset: str = "fanfic"
    """Engine backoff preset of fanfic jobs."""
    timeout: float = attrs.field(default=1800.0, validator=in_range(1, 86400))
    """Seconds one FanFicFare run may take."""
    priority: int = 0
    """Engine priority of fanfic jobs (higher starts first)."""
    calibre: CalibreConfig = attrs.field(factory=CalibreConfig)
    """Where finished books go (``[fanfic.calibre]``)."""
