"""A protocol-faithful fake of the H@H control server (RPC), its image servers and its servercmd
caller, on 127.0.0.1 over plain HTTP (the RPC protocol is ``http://``, docs/hath-protocol.md §1.1).

What it speaks, byte for byte per docs/hath-protocol.md:

* ``GET /15/rpc?clientbuild=…&act=…&add=…&cid=…&acttime=…&actkey=…`` (§1.1): ``server_stat``
  (no auth), ``client_login``, ``client_settings``, ``get_cert`` (binary PKCS#12, password = the
  client key, friendly name ``hath.network``; §5), ``client_start``, ``still_alive``,
  ``client_suspend``, ``client_resume``, ``client_stop``, ``get_blacklist``, ``overload``,
  ``srfetch`` (§1.3). Replies are ``text/plain`` with a ``Content-Length``; line 0 is the status.
  A wrong ``actkey`` or an ``acttime`` more than :attr:`FakeControlServer.key_window` seconds off
  the fake's clock gets ``KEY_EXPIRED`` (§1.2).
* ``GET /image/<fileid>``: an upstream image server for srfetch (§3.4). It records the
  ``Hath-Request`` header and every request's ``Range`` and status
  (:attr:`FakeControlServer.upstream_log`), counts fetches, and per file (:class:`Upstream`)
  can corrupt the body, answer another status, omit ``Content-Length``, hold the body at a gate,
  *truncate* it (send ``truncate_after`` bytes, then drop the connection, for the first
  ``truncations`` requests), and answers a single ``Range: bytes=…`` (RFC 9110 §14.1.2:
  ``N-``, ``N-M``, ``-N``) with 206 and ``Content-Range`` (416 when unsatisfiable; a malformed
  or multi-range header is ignored: 200), unless ``ranges=False`` (always 200, the whole body).
* :meth:`FakeControlServer.servercmd` / :meth:`speedtest_url`: the server side calling a client's
  ``/servercmd/…`` and ``/t/…`` with correct keys (§3.5, §3.6).

Extending it (the gallery downloader adds ``/15/dl``): register a handler for a path prefix or
an RPC action, or subclass and override :meth:`FakeControlServer.handle`::

    async def my_handler(req: FakeRequest) -> FakeReply: ...
    fake.add_route("/15/dl", my_handler)
    fake.add_action("dlfetch", my_handler)
    fake.script("client_start", "FAIL_CONNECT_TEST")   # next reply(ies) for that action

``FakeRequest.query`` holds the parsed query (values unquoted); ``FakeRequest.verified`` says if
``actkey`` matched. Handlers return :class:`FakeReply` (status code, body bytes, headers), or
``FakeReply.text("OK", "k=v")`` for an RPC-style body.

Usage::

    async with open_fake_control(creds) as fake:
        fake.url          # "http://127.0.0.1:<port>"
        fake.calls        # [(act, add), …] in arrival order
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

import attrs
import httpx
import trio
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from fakes.asgi import serving
from hathd.hath import protocol as p

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@attrs.define
class FakeRequest:
    """One request as the fake saw it."""

    path: str
    query: dict[str, str]
    raw_query: str
    headers: dict[str, str]
    verified: bool = False

    @property
    def act(self) -> str:
        return self.query.get("act", "")

    @property
    def add(self) -> str:
        return self.query.get("add", "")


@attrs.define
class FakeReply:
    """A reply: status code, body and extra headers; ``chunks`` streams the body instead."""

    status: int = 200
    body: bytes = b""
    headers: list[tuple[bytes, bytes]] = attrs.field(factory=list)
    chunks: Callable[[], AsyncIterator[bytes]] | None = None
    content_length: int | None = None

    @classmethod
    def text(cls, *lines: str) -> FakeReply:
        """An RPC text reply: the lines joined with ``\\n`` and a trailing ``\\n``."""
        return cls(200, ("\n".join(lines) + "\n").encode("ascii"))


Handler = Callable[[FakeRequest], Awaitable[FakeReply]]


@attrs.define
class Upstream:
    """How the fake image server answers for one fileid.

    ``corrupt``: flip the first byte. ``status``: answer this instead of 200. ``omit_length``:
    no ``Content-Length``. ``gate``/``gate_after``: hold the body at byte ``gate_after``
    (absolute offset) until the event is set. ``chunk``: bytes per body piece; ``delay``:
    seconds before each. ``truncate_after``: send only that many bytes of the (possibly ranged)
    body and then drop the connection, for the first ``truncations`` requests. ``ranges``:
    honour ``Range`` (else always 200 with the whole body).
    """

    data: bytes
    corrupt: bool = False
    status: int = 200
    omit_length: bool = False
    gate: trio.Event | None = None
    gate_after: int = 0
    chunk: int = 16384
    delay: float = 0.0
    truncate_after: int | None = None
    truncations: int = 1
    ranges: bool = True
    truncated: int = 0
    """Requests truncated so far."""


class DropConnection(Exception):
    """Raised inside a streamed body: hypercorn then closes the connection mid-body."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """A single byte range of RFC 9110 §14.1.2 against a body of ``size`` bytes:
    ``(first, last)`` (inclusive) for ``bytes=N-``, ``bytes=N-M`` and ``bytes=-N``; ``None``
    when there is no header or it is malformed or multi-range (then ignored); ``"unsatisfiable"``
    when the range starts at or beyond ``size`` (or asks for a 0-byte suffix)."""
    if header is None:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_s, dash, last_s = spec.strip().partition("-")
    if not dash:
        return None
    first_s, last_s = first_s.strip(), last_s.strip()
    if not first_s:
        if not last_s.isdigit():
            return None
        suffix = int(last_s)
        if suffix == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - suffix), size - 1
    if not first_s.isdigit() or (last_s and not last_s.isdigit()):
        return None
    first = int(first_s)
    if last_s and int(last_s) < first:
        return None
    if first >= size:
        return "unsatisfiable"
    last = int(last_s) if last_s else size - 1
    return first, min(last, size - 1)


def make_pkcs12(leaf: trustme.LeafCert, password: str) -> bytes:
    """A PKCS#12 of ``leaf`` (key + chain) encrypted with ``password``, friendly name
    ``hath.network`` (docs/hath-protocol.md §5)."""
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    pems = [blob.bytes() for blob in leaf.cert_chain_pems]
    cert = x509.load_pem_x509_certificate(pems[0])
    cas = [x509.load_pem_x509_certificate(pem) for pem in pems[1:]]
    return pkcs12.serialize_key_and_certificates(
        b"hath.network",
        key,  # type: ignore[arg-type]
        cert,
        cas or None,
        serialization.BestAvailableEncryption(password.encode("ascii")),
    )


class FakeControlServer:
    """The fake's state and request handling; see the module docstring."""

    def __init__(self, creds: p.Credentials, ca: trustme.CA | None = None) -> None:
        self.creds = creds
        self.ca = ca or trustme.CA()
        self.port = 0
        self.skew = 0
        """Seconds the fake's clock is ahead of the local clock."""
        self.key_window = 600
        """How far (seconds) ``acttime`` may be off before ``KEY_EXPIRED``."""
        self.client_port = 0
        """The ``port`` setting sent at login; tests set the image server's port (0 = any)."""
        self.settings: dict[str, str] = {
            "rpc_server_ip": "127.0.0.1",
            "host": "127.0.0.1",
            "throttle_bytes": "0",
            "disklimit_bytes": str(10 * 1024**3),
            "diskremaining_bytes": "0",
            "static_ranges": "",
            "static_range_count": "0",
        }
        self.blacklist: list[str] = []
        self.files: dict[str, Upstream] = {}
        self.srfetch_extra: list[str] = []
        """URLs listed before the real one in every srfetch reply (failover tests)."""
        self.calls: list[tuple[str, str]] = []
        self.requests: list[FakeRequest] = []
        self.upstream_hits: dict[str, int] = defaultdict(int)
        self.upstream_log: list[tuple[str, str | None, int]] = []
        """``(fileid, Range header or None, status answered)`` per ``/image/`` request."""
        self.hath_request_headers: list[str] = []
        self._scripts: dict[str, deque[str]] = defaultdict(deque)
        self._routes: dict[str, Handler] = {}
        self._actions: dict[str, Handler] = {
            "server_stat": self._server_stat,
            "client_login": self._settings_reply,
            "client_settings": self._settings_reply,
            "get_cert": self._get_cert,
            "get_blacklist": self._get_blacklist,
            "srfetch": self._srfetch,
        }
        self.leaf = self.ca.issue_cert("127.0.0.1", "localhost", "client.hath.network")
        self.cert_serial = 0
        self.started = trio.Event()
        self.stopped = trio.Event()
        self.act_events: dict[str, trio.Event] = defaultdict(trio.Event)

    # ------------------------------------------------------------------ configuration

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def rpc_host(self) -> str:
        """The ``host:port`` the client should use as its RPC server."""
        return f"127.0.0.1:{self.port}"

    def server_time(self) -> int:
        return int(time.time()) + self.skew

    def rotate_cert(self) -> None:
        """Issue a new leaf certificate; the next ``get_cert`` returns it."""
        self.leaf = self.ca.issue_cert("127.0.0.1", "localhost", "client.hath.network")
        self.cert_serial += 1

    def leaf_serial(self) -> int:
        """The serial number of the current leaf certificate."""
        pem = self.leaf.cert_chain_pems[0].bytes()
        return x509.load_pem_x509_certificate(pem).serial_number

    def script(self, act: str, *bodies: str) -> None:
        """Queue raw reply bodies (status line first, ``\\n``-separated) for ``act``; each
        request of that action pops one before normal handling."""
        self._scripts[act].extend(bodies)

    def add_route(self, prefix: str, handler: Handler) -> None:
        """Serve every path starting with ``prefix`` with ``handler``."""
        self._routes[prefix] = handler

    def add_action(self, act: str, handler: Handler) -> None:
        """Answer RPC action ``act`` with ``handler`` (after the actkey check)."""
        self._actions[act] = handler

    def add_file(self, data: bytes, *, typ: str = "jpg", **kw: Any) -> str:
        """Make ``data`` available upstream; returns its fileid ``<sha1>-<size>-1-1-<typ>``."""
        fid = f"{hashlib.sha1(data).hexdigest()}-{len(data)}-1-1-{typ}"
        self.files[fid] = Upstream(data=data, **kw)
        return fid

    def count(self, act: str) -> int:
        return sum(1 for a, _ in self.calls if a == act)

    async def wait_for(self, act: str) -> None:
        """Wait until the next (or an already seen) request of ``act``."""
        if self.count(act):
            return
        await self.act_events[act].wait()

    # ----------------------------------------------------------------- server side calls

    def servercmd_path(self, command: str, additional: str = "", when: int | None = None) -> str:
        """``/servercmd/<cmd>/<additional>/<time>/<key>`` with a correct key (§3.5)."""
        t = self.server_time() if when is None else when
        key = p.servercmd_key(command, additional, self.creds.client_id, t, self.creds.client_key)
        return f"/servercmd/{command}/{additional}/{t}/{key}"

    def speedtest_path(self, size: int, when: int | None = None) -> str:
        """``/t/<size>/<time>/<key>/<random>`` with a correct key (§3.6)."""
        t = self.server_time() if when is None else when
        key = p.speedtest_key(size, t, self.creds.client_id, self.creds.client_key)
        return f"/t/{size}/{t}/{key}/12345"

    def keystamped_path(self, fileid: str, *, when: int | None = None, name: str = "x.jpg") -> str:
        """``/h/<fileid>/keystamp=…;fileindex=1;xres=org/<name>`` (§3.3)."""
        t = self.server_time() if when is None else when
        stamp = p.make_keystamp(fileid, t, self.creds.client_key)
        return f"/h/{fileid}/keystamp={stamp};fileindex=1;xres=org/{name}"

    async def servercmd(
        self, client_base: str, command: str, additional: str = "", *, timeout: float = 30.0
    ) -> httpx.Response:
        """Call a client's servercmd over HTTPS, trusting the fake's CA."""
        ctx = self.ca_context()
        async with httpx.AsyncClient(verify=ctx, timeout=timeout) as c:
            return await c.get(client_base + self.servercmd_path(command, additional))

    def ca_context(self) -> Any:
        import ssl

        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx

    # ------------------------------------------------------------------------ handling

    async def handle(self, req: FakeRequest) -> FakeReply:
        """Route one request; override to add behaviour."""
        for prefix, handler in self._routes.items():
            if req.path.startswith(prefix):
                return await handler(req)
        if req.path.startswith("/image/"):
            return await self._image(req)
        if req.path == "/15/rpc":
            return await self._rpc(req)
        return FakeReply(404, b"not found")

    async def _rpc(self, req: FakeRequest) -> FakeReply:
        act = req.act
        self.calls.append((act, req.add))
        self.act_events[act].set()
        self.act_events[act] = trio.Event()
        if act != "server_stat":
            try:
                t = int(req.query.get("acttime", ""))
                cid = int(req.query.get("cid", ""))
            except ValueError:
                return FakeReply.text("KEY_EXPIRED")
            want = p.actkey(act, req.add, cid, t, self.creds.client_key)
            req.verified = cid == self.creds.client_id and req.query.get("actkey") == want
            if not req.verified or abs(t - self.server_time()) > self.key_window:
                return FakeReply.text("KEY_EXPIRED")
        if self._scripts[act]:
            body = self._scripts[act].popleft()
            return FakeReply(200, (body + "\n").encode("ascii") if body else b"")
        handler = self._actions.get(act)
        if handler is None:
            return FakeReply.text("OK")
        return await handler(req)

    async def _server_stat(self, req: FakeRequest) -> FakeReply:
        return FakeReply.text(
            "OK",
            f"server_time={self.server_time()}",
            "min_client_build=160",
            f"cur_client_build={p.CLIENT_BUILD}",
        )

    async def _settings_reply(self, req: FakeRequest) -> FakeReply:
        settings = dict(self.settings)
        settings.setdefault("rpc_server_port", str(self.port))
        if self.client_port:
            settings["port"] = str(self.client_port)
        return FakeReply.text("OK", *(f"{k}={v}" for k, v in settings.items()))

    async def _get_cert(self, req: FakeRequest) -> FakeReply:
        body = make_pkcs12(self.leaf, self.creds.client_key)
        return FakeReply(200, body, [(b"content-type", b"application/x-pkcs12")])

    async def _get_blacklist(self, req: FakeRequest) -> FakeReply:
        return FakeReply.text("OK", *self.blacklist)

    async def _srfetch(self, req: FakeRequest) -> FakeReply:
        parts = req.add.split(";")
        if len(parts) != 3 or parts[2] not in self.files:
            return FakeReply.text("OK")  # an empty URL list counts as a failure (§1.3)
        return FakeReply.text("OK", *self.srfetch_extra, f"{self.url}/image/{parts[2]}")

    async def _image(self, req: FakeRequest) -> FakeReply:
        reply = await self._image_reply(req)
        fid = req.path[len("/image/") :]
        self.upstream_log.append((fid, req.headers.get("range"), reply.status))
        return reply

    async def _image_reply(self, req: FakeRequest) -> FakeReply:
        fid = req.path[len("/image/") :]
        self.upstream_hits[fid] += 1
        self.hath_request_headers.append(req.headers.get("hath-request", ""))
        up = self.files.get(fid)
        if up is None:
            return FakeReply(404, b"no such file")
        if up.status != 200:
            return FakeReply(up.status, b"upstream error")
        data = up.data
        if up.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        headers = [(b"content-type", b"image/jpeg")]
        status, start, end = 200, 0, len(data)  # body = data[start:end]
        wanted = parse_range(req.headers.get("range"), len(data)) if up.ranges else None
        if wanted == "unsatisfiable":
            headers.append((b"content-range", f"bytes */{len(data)}".encode()))
            return FakeReply(416, b"", headers)
        if isinstance(wanted, tuple):
            status, start, end = 206, wanted[0], wanted[1] + 1
            headers.append((b"content-range", f"bytes {start}-{end - 1}/{len(data)}".encode()))
        cut: int | None = None
        if up.truncate_after is not None and up.truncated < up.truncations:
            up.truncated += 1
            cut = start + up.truncate_after

        async def chunks() -> AsyncIterator[bytes]:
            pos = start
            while pos < end:
                if cut is not None and pos >= cut:
                    raise DropConnection(f"truncated {fid} at byte {pos}")
                if up.gate is not None and pos >= up.gate_after:
                    await up.gate.wait()
                if up.delay:
                    await trio.sleep(up.delay)
                stop = min(pos + up.chunk, end)
                if up.gate is not None and pos < up.gate_after:
                    stop = min(stop, up.gate_after)
                if cut is not None:
                    stop = min(stop, cut)
                yield data[pos:stop]
                pos = stop

        return FakeReply(
            status,
            headers=headers,
            chunks=chunks,
            content_length=None if up.omit_length else end - start,
        )

    # ----------------------------------------------------------------------- ASGI app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        raw_query = scope.get("query_string", b"").decode("latin-1")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        req = FakeRequest(
            path=scope["path"],
            query=dict(parse_qsl(raw_query, keep_blank_values=True)),
            raw_query=raw_query,
            headers=headers,
        )
        self.requests.append(req)
        reply = await self.handle(req)
        length = reply.content_length if reply.chunks is not None else len(reply.body)
        out = list(reply.headers)
        if not any(k == b"content-type" for k, _ in out):
            out.append((b"content-type", b"text/plain; charset=ISO-8859-1"))
        if length is not None:
            out.append((b"content-length", str(length).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": out})
        if reply.chunks is None:
            await send({"type": "http.response.body", "body": reply.body})
            return
        async for piece in reply.chunks():
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


@asynccontextmanager
async def open_fake_control(
    creds: p.Credentials, ca: trustme.CA | None = None
) -> AsyncIterator[FakeControlServer]:
    """Run a :class:`FakeControlServer` on 127.0.0.1 (a free port) for the ``with`` block."""
    fake = FakeControlServer(creds, ca)
    async with serving(fake) as port:
        fake.port = port
        fake.started.set()
        try:
            yield fake
        finally:
            fake.stopped.set()
