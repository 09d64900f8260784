"""Configuration of MQTT (``[mqtt]``) and seedbox transfers (``[q4d]``, ``[q4d.type_map]``).

Every field has a default, so an empty file is valid and transfers stay off until
``[q4d] enabled = true``. Passwords are given as :func:`~hathd.confutil.secret` fields (printed
as ``***`` by ``hathd config show``) or, better, read from a file (``password_file``).

Queue4Download users: :mod:`hathd.q4d.importer` converts ``q4d.conf`` / ``Q4D_*`` variables,
``Types.config`` and ``type_mapping.json`` into these sections (``hathd q4d import``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import attrs

from hathd.confutil import FieldError, in_range, read_secret, secret

RETRY_PRESET = "q4d"
"""Name of the engine retry preset built from ``[q4d] nope_after``."""


@attrs.frozen
class MqttConfig:
    """``[mqtt]``: the broker.

    ``client_id`` is fixed and ``persistent_session`` keeps the broker-side session (MQTT
    ``clean_session = 0``), so ``Down`` events published while hathd is stopped are delivered
    when it reconnects. ``keepalive``, ``connect_timeout``, ``reconnect_min`` and
    ``reconnect_max`` are seconds.
    """

    host: str = "127.0.0.1"
    """Broker host name or address."""
    port: int = attrs.field(default=1883, validator=in_range(1, 65535))
    """Broker port (8883 is usual with TLS)."""
    tls: bool = False
    """TLS to the broker; its certificate and host name are verified."""
    ca_file: str = ""
    """CA bundle for TLS; empty = the system store."""
    cert_file: str = ""
    """Client certificate (PEM) for TLS client authentication; empty = none."""
    key_file: str = ""
    """Private key (PEM) of ``cert_file``."""
    username: str = ""
    """MQTT user name; empty = anonymous."""
    password: str | None = secret()
    """MQTT password (secret); prefer ``password_file``."""
    password_file: str = ""
    """File whose first line is the MQTT password; empty = none."""
    client_id: str = "hathd-q4d"
    """Fixed client id: the broker keys the persistent session on it."""
    persistent_session: bool = True
    """``clean_session = 0``: subscriptions and QoS >= 1 messages wait at the broker while
    hathd is away."""
    keepalive: int = attrs.field(default=60, validator=in_range(5, 65535))
    """MQTT keep-alive in seconds."""
    connect_timeout: float = attrs.field(default=10.0, validator=in_range(0.1, 600))
    """Seconds for the TCP/TLS connect, and for each of CONNACK and SUBACK."""
    reconnect_min: float = attrs.field(default=0.5, validator=in_range(0.01, 3600))
    """First reconnect wait in seconds; it doubles after each failure."""
    reconnect_max: float = attrs.field(default=60.0, validator=in_range(0.01, 86400))
    """Longest reconnect wait in seconds."""

    def read_password(self) -> str | None:
        """The password (``password``, else the first line of ``password_file``), or ``None``.

        :raises ConfigError: ``password_file`` cannot be read.
        """
        return read_secret(self.password, self.password_file, "mqtt.password_file")


def _check_host(_inst: object, attr: attrs.Attribute[str], value: str) -> None:
    if not value:
        return
    parts = urlsplit(value)
    if parts.scheme not in ("sftp", "ftp", "ftps") or not parts.hostname:
        raise FieldError(
            attr.name, f"must be sftp://host[:port], ftp://… or ftps://…; got {value!r}"
        )


@attrs.frozen
class Q4DConfig:
    """``[q4d]``: seedbox transfers (Queue4Download), off by default.

    - ``host``: the seedbox as an lftp URL, ``sftp://seedbox.example:22`` (or ``ftp://``,
      ``ftps://``); ``user`` and ``password``/``password_file`` log in (Q4D ``CREDS``).
    - ``threads`` files in parallel (``mirror --parallel``), ``segments`` connections per
      file (``pget -n`` / ``mirror --use-pget-n``); Q4D ``THREADS``/``SEGMENTS``.
    - ``concurrency``: transfers at once from this seedbox (the engine lane).
    - ``topic_down``/``topic_label``: Q4D ``Down``/``Label``; ``qos`` of the ``Down``
      subscription (1: acknowledged only after the job is committed).
    - ``labelling``: publish ``HASH\\tDONE``/``HASH\\tNOPE`` after a transfer;
      ``label_queued``: also ``HASH\\tQUEUED`` once the job is stored.
    - ``download_root``: base of relative ``type_map`` folders (default
      ``<state_dir>/download/q4d``); ``type_map``: type code → local folder; the ``ERR`` entry
      (default ``<download_root>/ERR``) receives unknown codes.
    - ``rules``/``rules_file``: Types.config lines (see :mod:`hathd.q4d.rules`);
      ``default_code`` when no rule and no payload code gives one.
    - ``timeout``: hard limit of one lftp run (s); ``net_timeout``, ``net_max_retries``,
      ``reconnect_interval_base``, ``reconnect_interval_max``: lftp ``net:*`` settings (s).
    - ``sftp_connect_program``: lftp ``sftp:connect-program`` ("" = lftp's ``ssh -a -x``), e.g.
      to name a ``UserKnownHostsFile`` or an identity file.
    - ``nope_after``: the retry budget (s) of a failed transfer before it ends ``NOPE``;
      ``retry_preset`` (an engine preset by name) replaces it when set.
    """

    enabled: bool = False
    """Run seedbox transfers: the ``transfer`` job kind and the ``q4d-mqtt`` service."""
    host: str = attrs.field(default="", validator=_check_host)
    """The seedbox as an lftp URL: ``sftp://host[:port]``, ``ftp://…`` or ``ftps://…``
    (Q4D ``HOST``)."""
    user: str = ""
    """Seedbox login name (the user part of Q4D ``CREDS``)."""
    password: str | None = secret()
    """Seedbox password (secret); prefer ``password_file``."""
    password_file: str = ""
    """File whose first line is the seedbox password; empty = none."""
    threads: int = attrs.field(default=5, validator=in_range(1, 64))
    """Files of a folder fetched in parallel, ``mirror --parallel`` (Q4D ``THREADS``)."""
    segments: int = attrs.field(default=4, validator=in_range(1, 64))
    """Connections per file, ``pget -n`` / ``mirror --use-pget-n`` (Q4D ``SEGMENTS``)."""
    concurrency: int = attrs.field(default=1, validator=in_range(1, 64))
    """Transfers at once from this seedbox (its engine lane)."""
    topic_down: str = "Down"
    """Topic of the seedbox's ``PATH\\tHASH\\tTYPE`` events."""
    topic_label: str = "Label"
    """Topic the ``HASH\\tLABEL`` replies are published on."""
    qos: int = attrs.field(default=1, validator=in_range(1, 2))
    """QoS of the ``Down`` subscription; a message is acknowledged only once its job is stored."""
    label_qos: int = attrs.field(default=2, validator=in_range(0, 2))
    """QoS of published labels."""
    labelling: bool = True
    """Publish ``DONE``/``NOPE`` labels after a transfer ends."""
    label_queued: bool = True
    """Also publish ``QUEUED`` once an event's job is stored."""
    label_done: str = "DONE"
    """Label text of a finished transfer."""
    label_nope: str = "NOPE"
    """Label text of a transfer that failed for good."""
    label_queued_text: str = "QUEUED"
    """Label text of an accepted event."""
    download_root: str = ""
    """Base of relative ``type_map`` folders; empty = ``<state_dir>/download/q4d``."""
    type_map: dict[str, str] = attrs.field(factory=dict)
    """Type code → local folder (relative to ``download_root``); ``ERR`` (default
    ``<download_root>/ERR``) takes unknown codes."""
    rules: list[str] = attrs.field(factory=list)
    """Types.config lines, applied after those of ``rules_file`` (last match wins)."""
    rules_file: str = ""
    """A Types.config file; empty = none."""
    default_code: str = "V"
    """Type code when neither a rule nor the payload gives one."""
    timeout: float = attrs.field(default=6 * 3600.0, validator=in_range(1))
    """Hard limit in seconds of one lftp run."""
    net_timeout: float = attrs.field(default=30.0, validator=in_range(1, 3600))
    """lftp ``net:timeout`` in seconds."""
    net_max_retries: int = attrs.field(default=3, validator=in_range(1, 1000))
    """lftp ``net:max-retries``."""
    reconnect_interval_base: float = attrs.field(default=5.0, validator=in_range(0, 3600))
    """lftp ``net:reconnect-interval-base`` in seconds."""
    reconnect_interval_max: float = attrs.field(default=60.0, validator=in_range(0, 86400))
    """lftp ``net:reconnect-interval-max`` in seconds."""
    sftp_auto_confirm: bool = True
    """lftp ``sftp:auto-confirm``: accept a new seedbox host key on first contact."""
    sftp_connect_program: str = ""
    """lftp ``sftp:connect-program``; empty = lftp's ``ssh -a -x`` (set it to name a
    ``UserKnownHostsFile`` or an identity file)."""
    lftp: str = "lftp"
    """The lftp program."""
    nope_after: float = attrs.field(default=3600.0, validator=in_range(0, 7 * 86400))
    """Seconds a failed transfer keeps being retried before it is labelled ``NOPE``: waits of
    1, 5 and 15 minutes (the engine's ``default`` steps that fit), then one last try when the
    budget runs out; 0 = no retry."""
    retry_preset: str = ""
    """Engine retry preset of transfer jobs, replacing ``nope_after``; empty = use
    ``nope_after``."""

    def transfer_preset(self) -> str:
        """The engine preset name transfer jobs use: ``retry_preset``, else :data:`RETRY_PRESET`."""
        return self.retry_preset or RETRY_PRESET

    def read_password(self) -> str | None:
        """The seedbox password (``password``, else the first line of ``password_file``).

        :raises ConfigError: ``password_file`` cannot be read.
        """
        return read_secret(self.password, self.password_file, "q4d.password_file")

    def lane(self) -> str:
        """The engine domain of this seedbox: ``host[:port]`` from ``host``."""
        return urlsplit(self.host).netloc.rpartition("@")[2] if self.host else "seedbox"
