"""Shared pieces of the hath tests: credentials, a running node against the fake, TLS clients."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio
import trio.testing

from fakes.hath_control import FakeControlServer
from hathd.events import EventBus
from hathd.hath.config import HathConfig
from hathd.hath.node import HathNode
from hathd.hath.protocol import Credentials, FileId
from hathd.store import Store, open_store

CREDS = Credentials(31337, "Zx9Qw2Er4Ty6Ui8Op0As")


def node_config(fake: FakeControlServer, **overrides: Any) -> HathConfig:
    values: dict[str, Any] = {
        "enabled": True,
        "client_id": CREDS.client_id,
        "client_key": CREDS.client_key,
        "rpc_server": fake.rpc_host,
        "listen_host": "127.0.0.1",
        "prune_interval": 3600.0,
        "rpc_timeout": 30.0,
        "upstream_timeout": 20.0,
        "request_timeout": 30.0,
    }
    values.update(overrides)
    return HathConfig(**values)


def new_node(
    tmp_path: Path,
    fake: FakeControlServer,
    store: Store,
    *,
    local_exempt: bool = True,
    **overrides: Any,
) -> HathNode:
    """A :class:`HathNode` against ``fake`` on ``store``, data and cache under ``tmp_path``."""
    return HathNode(
        node_config(fake, **overrides),
        CREDS,
        store=store,
        bus=EventBus(),
        data_dir=tmp_path / "data",
        cache_root=tmp_path / "cache",
        local_exempt=local_exempt,
    )


@asynccontextmanager
async def run_node(
    tmp_path: Path, fake: FakeControlServer, *, local_exempt: bool = True, **overrides: Any
) -> AsyncIterator[HathNode]:
    """A started :class:`HathNode` (own store under ``tmp_path``), cancelled on exit."""
    async with open_store(tmp_path / "hathd.sqlite3") as store, trio.open_nursery() as nursery:
        node = new_node(tmp_path, fake, store, local_exempt=local_exempt, **overrides)
        await nursery.start(node.serve)
        try:
            yield node
        finally:
            nursery.cancel_scope.cancel()


def base_url(node: HathNode) -> str:
    assert node.server is not None
    return f"https://127.0.0.1:{node.server.port}"


def client(fake: FakeControlServer, **kw: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(verify=fake.ca_context(), timeout=30, **kw)


async def raw_request(fake: FakeControlServer, port: int, data: bytes) -> bytes:
    """Send raw bytes over a fresh TLS connection; return everything until the server closes."""
    ctx = fake.ca_context()
    stream = await trio.open_ssl_over_tcp_stream(
        "127.0.0.1", port, ssl_context=ctx, https_compatible=True
    )
    out = bytearray()
    async with stream:
        await stream.send_all(data)
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                break
            if not chunk:
                break
            out += chunk
    return bytes(out)


async def peer_cert_serial(fake: FakeControlServer, port: int) -> int:
    """The serial number of the certificate the server presents on a new connection."""
    from cryptography import x509

    ctx = fake.ca_context()
    stream = await trio.open_ssl_over_tcp_stream(
        "127.0.0.1", port, ssl_context=ctx, https_compatible=True
    )
    async with stream:
        await stream.do_handshake()
        der = stream.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


async def context_serial(fake: FakeControlServer, context: ssl.SSLContext) -> int:
    """The serial number of the certificate that a server-side ``context`` presents, from a
    handshake over an in-memory stream (no listener involved)."""
    from cryptography import x509

    server_raw, client_raw = trio.testing.memory_stream_pair()
    server = trio.SSLStream(server_raw, context, server_side=True)
    peer = trio.SSLStream(client_raw, fake.ca_context(), server_hostname="127.0.0.1")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.do_handshake)
        await peer.do_handshake()
    der = peer.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def weak_pkcs12(password: str) -> bytes:
    """A PKCS#12 that decodes but that OpenSSL refuses in ``load_cert_chain`` (a 1024-bit RSA
    key: ``EE_KEY_TOO_SMALL``), i.e. an ``ssl.SSLError`` as from a key/certificate mismatch
    (which ``cryptography`` refuses to even serialise)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client.hath.network")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return pkcs12.serialize_key_and_certificates(
        b"hath.network",
        key,
        cert,
        None,
        serialization.BestAvailableEncryption(password.encode("ascii")),
    )


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def split_response(raw: bytes) -> tuple[str, list[str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return lines[0], lines[1:], body


def server_port(node: HathNode) -> int:
    """The port the node's HTTPS server listens on."""
    assert node.server is not None
    return node.server.port


async def cached_file(node: HathNode, tmp_path: Path, data: bytes) -> str:
    """Import ``data`` into the node's cache as a 640x480 JPEG fileid; returns the fileid."""
    assert node.cache is not None
    fid = FileId.parse(f"{hashlib.sha1(data).hexdigest()}-{len(data)}-640-480-jpg")
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    assert await node.cache.import_file(src, fid)
    return str(fid)
