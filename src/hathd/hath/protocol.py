"""The Hentai@Home client protocol as pure functions (sans-IO).

Nothing here opens a socket, reads a clock or touches a file: every time check takes the
server-corrected time (:class:`ServerClock`) or an explicit ``server_time``. The Trio shells
(:mod:`hathd.hath.rpc`, :mod:`hathd.hath.server`) and the gallery downloader call into it.

Facts are restated from ``docs/hath-protocol.md`` (cited as "§n"), which in turn names the
public source of each one: J162 = the official Java client 1.6.2, J165f = official 1.6.5 files,
RS = hath-rust. hathd behaves as client build 178 (1.6.5).

Key formulas (§3.7), ``sha1(x)`` = lowercase hex SHA-1 of the ASCII bytes of ``x``:

=================  ====================================================================  ========
check              formula                                                               window
=================  ====================================================================  ========
RPC actkey         ``sha1("hentai@home-{act}-{add}-{cid}-{t}-{key}")``                  KEY_EXPIRED
/h/ keystamp       first 10 hex of ``sha1("{time}-{fileid}-{key}-hotlinkthis")``         ``< 900 s``
/servercmd/ key    ``sha1("hentai@home-servercmd-{cmd}-{add}-{cid}-{time}-{key}")``     ``<= 300 s``
/t/ key            ``sha1("hentai@home-speedtest-{size}-{time}-{cid}-{key}")``          ``<= 300 s``
Hath-Request       ``"{cid}-" + sha1(key + fileid)``                                     --
=================  ====================================================================  ========
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping
from urllib.parse import quote

import attrs

CLIENT_BUILD = 178
"""The build number sent as ``clientbuild`` (official 1.6.5; §0, RS ``rpc.rs``)."""

CLIENT_VERSION = "1.6.5"
"""The version string matching :data:`CLIENT_BUILD` (§0)."""

USER_AGENT = f"Hentai@Home {CLIENT_VERSION}"
"""``User-Agent`` of every outgoing request (J162 ``FileDownloader``; §1.1)."""

SERVER_HEADER = f"Genetic Lifeform and Distributed Open Server {CLIENT_VERSION}"
"""``Server`` header of every reply of the image server (J162 ``HTTPSession``; §3.1)."""

DEFAULT_RPC_HOST = "rpc.hentaiathome.net"
"""The bootstrap RPC host (J162 ``Settings``; §1.1)."""

DEFAULT_RPC_PATH = "15/rpc?"
"""The default RPC path; the ``?`` is part of it (J162 ``Settings``; §1.1)."""

DL_PATH = "15/dl?"
"""The downloader endpoint of ``fetchqueue``; hard-coded, not ``rpc_path`` (J162
``GalleryDownloader``; §1.3, §6)."""

KEYSTAMP_WINDOW = 900
"""/h/ keystamps are valid while ``|server_time - time| < 900`` seconds (strict; J162, §3.3)."""

SERVERCMD_WINDOW = 300
"""servercmd and speed-test keys are valid while ``|Δt| <= 300`` seconds
(``MAX_KEY_TIME_DRIFT``; J162 ``HTTPResponse.parseRequest``, §3.5, §3.6)."""

FILE_TYPES: Mapping[str, str] = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "mp4": "video/mp4",
    "wbm": "video/webm",
    "wbp": "image/webp",
    "avf": "image/avif",
    "jxl": "image/jxl",
}
"""fileid type → MIME type (J162 ``HVFile``; RS ``cache_manager.rs FileType``; §3.3)."""

OCTET_STREAM = "application/octet-stream"

_FILEID_RE = re.compile(
    r"^(?P<hash>[0-9a-f]{40})-(?P<size>[0-9]{1,10})"
    r"(?:-(?P<xres>[0-9]{1,5})-(?P<yres>[0-9]{1,5}))?-(?P<type>[a-z0-9]{3})$"
)
_CLIENT_KEY_RE = re.compile(r"^[A-Za-z0-9]{20}$")


def sha1_hex(text: str | bytes) -> str:
    """Lowercase hex SHA-1 of ``text`` (str encoded as ASCII, as Java's platform default does in
    practice; J162 ``Tools.getSHA1String``).

    :raises UnicodeEncodeError: ``text`` holds non-ASCII characters.
    """
    data = text.encode("ascii") if isinstance(text, str) else text
    return hashlib.sha1(data).hexdigest()


class ProtocolError(ValueError):
    """Input that does not follow the H@H protocol (a bad fileid, credentials or reply)."""


# --------------------------------------------------------------------------------- clock


@attrs.define
class ServerClock:
    """The offset between our clock and the server's, in whole seconds.

    ``server_time(now)`` = ``int(now) + offset`` (J162 ``Settings.getServerTime``; §1.1). The
    offset is set from ``server_stat``'s ``server_time`` (§1.3); RS adds RTT/4, so
    :meth:`sync` takes the round-trip time in seconds.
    """

    offset: int = 0

    def server_time(self, now: float) -> int:
        """Server-corrected Unix time (seconds) for local Unix time ``now`` (seconds)."""
        return int(now) + self.offset

    def sync(self, server_time: int, now: float, rtt: float = 0.0) -> None:
        """Set the offset so that :meth:`server_time` (``now``) equals ``server_time + rtt/4``
        (RS ``rpc.rs check_stat``; J162 uses rtt 0)."""
        self.offset = int(server_time + rtt / 4) - int(now)


# -------------------------------------------------------------------------------- fileid


@attrs.frozen
class FileId:
    """A cache file's identity: ``<sha1>-<size>[-<xres>-<yres>]-<type>`` (J162 ``HVFile``; §3.3).

    ``size`` is in bytes; ``xres``/``yres`` are pixels or ``None`` for the short form.
    """

    hash: str
    size: int
    xres: int | None
    yres: int | None
    type: str

    @classmethod
    def parse(cls, text: str) -> FileId:
        """Parse a fileid.

        :raises ProtocolError: not a fileid (wrong shape, upper-case hash, too many digits).
        """
        m = _FILEID_RE.match(text)
        if m is None:
            raise ProtocolError(f"not a fileid: {text[:120]!r}")
        xres = m.group("xres")
        yres = m.group("yres")
        return cls(
            hash=m.group("hash"),
            size=int(m.group("size")),
            xres=int(xres) if xres is not None else None,
            yres=int(yres) if yres is not None else None,
            type=m.group("type"),
        )

    @classmethod
    def try_parse(cls, text: str) -> FileId | None:
        """Like :meth:`parse`, but ``None`` instead of an error."""
        try:
            return cls.parse(text)
        except ProtocolError:
            return None

    def __str__(self) -> str:
        if self.xres is None or self.yres is None:
            return f"{self.hash}-{self.size}-{self.type}"
        return f"{self.hash}-{self.size}-{self.xres}-{self.yres}-{self.type}"

    @property
    def static_range(self) -> str:
        """The static range: the first 4 hex chars of the hash (J162 ``HVFile``; §4.1)."""
        return self.hash[:4]

    @property
    def mime_type(self) -> str:
        """MIME type from :data:`FILE_TYPES`, else ``application/octet-stream`` (§3.3)."""
        return FILE_TYPES.get(self.type, OCTET_STREAM)

    @property
    def relpath(self) -> str:
        """Path under ``cache/``: ``<hash[0:2]>/<hash[2:4]>/<fileid>`` (J162
        ``HVFile.getLocalFileRef``; §4.1)."""
        return f"{self.hash[:2]}/{self.hash[2:4]}/{self}"

    @property
    def lru_slot(self) -> tuple[int, int]:
        """``(index, bit)`` in the official LRU table: ``int(hash[4:9], 16)`` and
        ``int(hash[9], 16)`` (J165f ``CacheHandler.markRecentlyAccessed``; §4.3)."""
        return int(self.hash[4:9], 16), int(self.hash[9], 16)


# ---------------------------------------------------------------------------- credentials


@attrs.frozen
class Credentials:
    """A client ID (integer >= 1000 in the official prompt) and its 20-char key (J162 ``Settings``;
    §1.1). ``repr`` hides the key."""

    client_id: int
    client_key: str = attrs.field(repr=False)

    def __attrs_post_init__(self) -> None:
        if self.client_id < 1:
            raise ProtocolError(f"client id must be a positive integer, got {self.client_id}")
        if not _CLIENT_KEY_RE.match(self.client_key):
            raise ProtocolError("client key must be exactly 20 characters [A-Za-z0-9]")

    @classmethod
    def parse_login_file(cls, text: str) -> Credentials:
        """Parse ``data/client_login`` content ``<id>-<key>`` (J162 ``Settings``; §1.1).

        :raises ProtocolError: not of that shape.
        """
        line = text.strip()
        cid, sep, key = line.partition("-")
        if not sep or not cid.isdigit():
            raise ProtocolError("client_login must hold '<id>-<key>'")
        return cls(int(cid), key)

    def login_file_text(self) -> str:
        """The ``data/client_login`` content for these credentials."""
        return f"{self.client_id}-{self.client_key}"


# ------------------------------------------------------------------------------ keystamps


def keystamp_hash(fileid: str, time: int, client_key: str) -> str:
    """The 10-hex-char keystamp hash: first 10 of ``sha1("{time}-{fileid}-{key}-hotlinkthis")``
    (J162/J165f ``HTTPResponse``; §3.3)."""
    return sha1_hex(f"{time}-{fileid}-{client_key}-hotlinkthis")[:10]


def make_keystamp(fileid: str, time: int, client_key: str) -> str:
    """A ``keystamp`` value ``<time>-<hash10>`` as the server hands out (§3.3)."""
    return f"{time}-{keystamp_hash(fileid, time, client_key)}"


def check_keystamp(keystamp: str | None, fileid: str, client_key: str, server_time: int) -> bool:
    """Whether a ``keystamp=<time>-<hash10>`` is valid now.

    Valid iff ``|server_time - time| < 900`` (strict) and ``hash10`` equals, case-insensitively
    and exactly (10 chars, not a prefix), the first 10 hex of the keystamp SHA-1
    (J162/J165f ``HTTPResponse``; §3.3). ``server_time`` in Unix seconds.
    """
    if not keystamp:
        return False
    time_s, sep, given = keystamp.partition("-")
    if not sep or not time_s.isdigit() or len(given) != 10:
        return False
    stamp_time = int(time_s)
    if abs(server_time - stamp_time) >= KEYSTAMP_WINDOW:
        return False
    return given.lower() == keystamp_hash(fileid, stamp_time, client_key)


def parse_additional(text: str) -> dict[str, str]:
    """Parse the ``additional`` path part: ``;``-separated ``k=v`` pairs; pairs shorter than 3
    chars are skipped; split on the first ``=``; key and value trimmed (J162
    ``Tools.parseAdditional``; §3.3). A pair without ``=`` is skipped."""
    out: dict[str, str] = {}
    for pair in text.split(";"):
        if len(pair) < 3:
            continue
        key, sep, value = pair.partition("=")
        if not sep:
            continue
        out[key.strip()] = value.strip()
    return out


def format_additional(values: Mapping[str, str]) -> str:
    """The inverse of :func:`parse_additional`: ``k=v;k=v``."""
    return ";".join(f"{k}={v}" for k, v in values.items())


def servercmd_key(command: str, additional: str, client_id: int, time: int, client_key: str) -> str:
    """``sha1("hentai@home-servercmd-{cmd}-{additional}-{cid}-{time}-{key}")`` (J162
    ``HTTPResponse.parseRequest``; §3.5)."""
    return sha1_hex(f"hentai@home-servercmd-{command}-{additional}-{client_id}-{time}-{client_key}")


def check_servercmd(
    command: str,
    additional: str,
    time: int,
    key: str,
    creds: Credentials,
    server_time: int,
) -> bool:
    """Whether a servercmd request is authentic: ``|time - server_time| <= 300`` and ``key``
    equals :func:`servercmd_key` (J162; §3.5). Times in Unix seconds."""
    if abs(time - server_time) > SERVERCMD_WINDOW:
        return False
    want = servercmd_key(command, additional, creds.client_id, time, creds.client_key)
    return key == want


def speedtest_key(testsize: int, testtime: int, client_id: int, client_key: str) -> str:
    """``sha1("hentai@home-speedtest-{size}-{time}-{cid}-{key}")`` (J162; §3.6)."""
    return sha1_hex(f"hentai@home-speedtest-{testsize}-{testtime}-{client_id}-{client_key}")


def check_speedtest(
    testsize: int, testtime: int, testkey: str, creds: Credentials, server_time: int
) -> bool:
    """Whether a ``/t/`` request is authentic: ``|testtime - server_time| <= 300`` and the key
    matches :func:`speedtest_key` (J162; RS ``route/speed_test.rs``; §3.6)."""
    if abs(testtime - server_time) > SERVERCMD_WINDOW:
        return False
    return testkey == speedtest_key(testsize, testtime, creds.client_id, creds.client_key)


def hath_request_header(creds: Credentials, fileid: str) -> str:
    """The ``Hath-Request`` header of an srfetch download: ``<cid>-<sha1(key + fileid)>``
    (J162 ``ProxyFileDownloader``; §3.4)."""
    return f"{creds.client_id}-{sha1_hex(creds.client_key + fileid)}"


# ---------------------------------------------------------------------------------- RPC


def actkey(act: str, add: str, client_id: int, time: int, client_key: str) -> str:
    """``sha1("hentai@home-{act}-{add}-{cid}-{t}-{key}")`` over the raw, unencoded ``add``
    (J162 ``ServerHandler.getURLQueryString``; §1.1)."""
    return sha1_hex(f"hentai@home-{act}-{add}-{client_id}-{time}-{client_key}")


def rpc_host(host: str, port: int = 80) -> str:
    """``host`` or ``host:port`` when ``port != 80`` (1.6.5 ``Settings.getRPCServerHost``;
    §1.1). IPv6 literals are bracketed."""
    if host.count(":") > 1 and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal; "host:port" (one colon) passes through
    return host if port == 80 else f"{host}:{port}"


def _query(act: str, add: str, creds: Credentials, time: int, build: int) -> str:
    # Java sends add literally; RS percent-encodes it; the hash is over the raw add (§1.1).
    return (
        f"clientbuild={build}&act={act}&add={quote(add, safe='')}&cid={creds.client_id}"
        f"&acttime={time}&actkey={actkey(act, add, creds.client_id, time, creds.client_key)}"
    )


def rpc_url(
    host: str,
    act: str,
    add: str,
    creds: Credentials,
    server_time: int,
    *,
    port: int = 80,
    rpc_path: str = DEFAULT_RPC_PATH,
    build: int = CLIENT_BUILD,
) -> str:
    """The URL of an authenticated RPC action:
    ``http://<host>/<rpc_path>clientbuild=…&act=…&add=…&cid=…&acttime=…&actkey=…``
    (J162 ``ServerHandler.getServerConnectionURL``/``getURLQueryString``; §1.1).

    ``server_time`` is :meth:`ServerClock.server_time` (Unix seconds). ``add`` is
    percent-encoded in the URL (as RS does) and hashed raw.
    """
    path = rpc_path.lstrip("/")
    return f"http://{rpc_host(host, port)}/{path}{_query(act, add, creds, server_time, build)}"


def server_stat_url(
    host: str, *, port: int = 80, rpc_path: str = DEFAULT_RPC_PATH, build: int = CLIENT_BUILD
) -> str:
    """``server_stat`` carries no cid and no key: ``…/<rpc_path>clientbuild=<B>&act=server_stat``
    (J162; RS ``check_stat``; §1.1)."""
    path = rpc_path.lstrip("/")
    return f"http://{rpc_host(host, port)}/{path}clientbuild={build}&act=server_stat"


def dl_url(
    host: str,
    add: str,
    creds: Credentials,
    server_time: int,
    *,
    act: str = "fetchqueue",
    port: int = 80,
    build: int = CLIENT_BUILD,
) -> str:
    """The downloader endpoint URL ``http://<host>/15/dl?`` + the usual query (§1.3, §6;
    J162 ``GalleryDownloader.initializeNewGalleryMeta``). ``add`` is ``""`` or
    ``<gid>;<minxres>`` of the gallery just finished. Its reply is not OK-prefixed."""
    return f"http://{rpc_host(host, port)}/{DL_PATH}{_query(act, add, creds, server_time, build)}"


# -------------------------------------------------------------------------------- replies

STATUS_OK = "OK"
STATUS_KEY_EXPIRED = "KEY_EXPIRED"
STATUS_TEMPORARILY_UNAVAILABLE = "TEMPORARILY_UNAVAILABLE"


@attrs.frozen
class RpcReply:
    """A parsed RPC reply: ``status`` = line 0, ``lines`` = the rest (§1.2; J162
    ``ServerResponse``). An empty body has status ``""``."""

    status: str
    lines: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Status is exactly ``OK``."""
        return self.status == STATUS_OK

    @property
    def key_expired(self) -> bool:
        """``KEY_EXPIRED``: resync the clock with ``server_stat`` and retry (§1.2)."""
        return self.status.startswith(STATUS_KEY_EXPIRED)

    @property
    def is_null(self) -> bool:
        """Empty body or ``TEMPORARILY_UNAVAILABLE…``: a network-type failure; mark the host
        failed and try another (J162 ``ServerResponse``; §1.2)."""
        return self.status == "" or self.status.startswith(STATUS_TEMPORARILY_UNAVAILABLE)

    def failed_with(self, code: str) -> bool:
        """Whether the fail code on line 0 starts with ``code`` (prefix match; RS 0e27314; §1.2)."""
        return not self.ok and self.status.startswith(code)

    def settings(self) -> dict[str, str]:
        """The payload as settings: ``key=value`` lines split on the first ``=``, key
        lower-cased with ``-`` → ``_``, value stripped; lines without ``=`` ignored (J162
        ``Settings.parseAndUpdateSettings``; §1.2, §2)."""
        out: dict[str, str] = {}
        for line in self.lines:
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                continue
            out[key.strip().lower().replace("-", "_")] = value.strip()
        return out

    def nonempty_lines(self) -> list[str]:
        """Payload lines with empty ones dropped (srfetch URLs, blacklist fileids; §1.3)."""
        return [line for line in self.lines if line.strip()]


def parse_reply(body: bytes | str) -> RpcReply:
    """Split an RPC reply body on ``\\n`` (``\\r`` stripped, as RS does); line 0 is the status
    (J162 ``ServerResponse``; §1.2). Bytes are decoded as ASCII with replacement."""
    text = body.decode("ascii", "replace") if isinstance(body, bytes) else body
    lines = [line.rstrip("\r") for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        return RpcReply("", ())
    return RpcReply(lines[0].strip(), tuple(lines[1:]))


def srfetch_add(fileindex: str, xres: str, fileid: str) -> str:
    """The ``add`` of ``srfetch``: ``<fileindex>;<xres>;<fileid>`` (J162
    ``getStaticRangeFetchURL``; §1.3)."""
    return f"{fileindex};{xres};{fileid}"


def parse_ip_list(value: str) -> tuple[list[str], list[str]]:
    """Split ``rpc_server_ip=a;b;c`` (§2) into ``(valid, rejected)``.

    ``valid``: the entries that are IP literals, in order, normalised by :mod:`ipaddress`
    (``str(ip_address(x))``, so they compare equal to a peer address), IPv4-mapped IPv6 as IPv4
    (RS), duplicates dropped. ``rejected``: every other non-empty entry as given (not an IP
    literal, or an IPv6 address with a ``%zone``); these must not become RPC hosts (an
    unparsable host makes every RPC URL invalid) nor servercmd allow-list entries.
    """
    valid: list[str] = []
    rejected: list[str] = []
    for item in value.split(";"):
        text = item.strip()
        if not text:
            continue
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            rejected.append(text)
            continue
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.scope_id is not None:
                rejected.append(text)
                continue
            if ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
        normal = str(ip)
        if normal not in valid:
            valid.append(normal)
    return valid, rejected


def max_connections(throttle_bytes: int, override: int | None = None) -> int:
    """``20 + min(480, throttle_bytes // 10000)`` unless ``max_connections`` overrides it
    (J162 ``Settings``; §2). ``throttle_bytes`` in bytes/s."""
    if override:
        return override
    return 20 + min(480, max(0, throttle_bytes) // 10000)
