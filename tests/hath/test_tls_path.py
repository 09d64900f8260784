"""The socket-TLS serving path: slowloris in and after the handshake, clients that vanish
mid-body, session resumption, and the piecewise page-cache reads of a hit."""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path

import trio

from fakes.hath_control import open_fake_control
from hath.helpers import cached_file, server_port
from hathd.hath import hitread
from hathd.hath import protocol as p

from .helpers import CREDS, raw_request, run_node, split_response

# the first bytes of a TLS 1.x ClientHello record: record header, then a handshake header
PARTIAL_HELLO = bytes.fromhex("160301020001") + b"\x00\x01\xfc\x03\x03"


async def _closed_within(stream: trio.SocketStream, seconds: float) -> None:
    """Read until the server closes the connection; fail if it takes longer than ``seconds``."""
    with trio.fail_after(seconds):
        try:
            while await stream.receive_some(4096):
                pass
        except trio.BrokenResourceError:
            pass


async def test_stalled_handshake_and_stalled_head_are_cut_at_the_timeout(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with (
            open_fake_control(CREDS) as fake,
            run_node(tmp_path, fake, request_timeout=0.5) as node,
        ):
            # half a ClientHello, then nothing: the handshake never completes
            tcp = await trio.open_tcp_stream("127.0.0.1", server_port(node))
            async with tcp:
                await tcp.send_all(PARTIAL_HELLO)
                began = trio.current_time()
                await _closed_within(tcp, 10)
                assert trio.current_time() - began >= 0.4
            # a complete handshake, then half a request head
            tls = await trio.open_ssl_over_tcp_stream(
                "127.0.0.1", server_port(node), ssl_context=fake.ca_context(), https_compatible=True
            )
            async with tls:
                await tls.do_handshake()
                await tls.send_all(b"GET /robots.txt HT")
                with trio.fail_after(10):
                    try:
                        assert await tls.receive_some(4096) == b""  # no response, closed
                    except trio.BrokenResourceError:
                        pass
            assert node.server is not None
            with trio.fail_after(5):
                while node.server.open:
                    await trio.sleep(0.01)
            raw = await raw_request(fake, server_port(node), b"GET /robots.txt HTTP/1.1\r\n\r\n")
            assert split_response(raw)[0] == "HTTP/1.1 200 OK"


async def test_client_vanishing_mid_body_leaves_the_server_healthy(tmp_path: Path) -> None:
    data = os.urandom(3 * hitread.PIECE + 1234)  # several pieces
    with trio.fail_after(60):
        async with (
            open_fake_control(CREDS) as fake,
            run_node(tmp_path, fake, verify_on_serve=False) as node,
        ):
            fid = await cached_file(node, tmp_path, data)
            request = f"GET {fake.keystamped_path(fid)} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            for _ in range(5):
                tls = await trio.open_ssl_over_tcp_stream(
                    "127.0.0.1", server_port(node), ssl_context=fake.ca_context()
                )
                await tls.send_all(request)
                assert (await tls.receive_some(100)).startswith(b"HTTP/1.1 200 OK")
                sock = tls.transport_stream.socket  # type: ignore[attr-defined]
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
                await trio.aclose_forcefully(tls)  # RST with most of the body unread
            assert node.server is not None
            with trio.fail_after(10):
                while node.server.open:
                    await trio.sleep(0.01)
            # the whole file still arrives intact, piece after piece
            raw = await raw_request(fake, server_port(node), request)
            status, headers, body = split_response(raw)
            assert status == "HTTP/1.1 200 OK"
            assert f"Content-Length: {len(data)}" in headers
            assert body == data


def _handshake(port: int, ctx: ssl.SSLContext, session: ssl.SSLSession | None) -> ssl.SSLSession:
    """One blocking TLS connection with a request; returns its session (for resumption)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as tls:
        tls.sendall(b"GET /robots.txt HTTP/1.1\r\n\r\n")
        while tls.recv(4096):
            pass  # the server's TLS 1.3 tickets arrive with the response
        assert tls.session is not None
        if session is not None:
            assert tls.session_reused, "the server did not resume the session"
        return tls.session


async def test_tls_sessions_resume(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake, run_node(tmp_path, fake) as node:
            ctx = fake.ca_context()
            first = await trio.to_thread.run_sync(_handshake, server_port(node), ctx, None)
            await trio.to_thread.run_sync(_handshake, server_port(node), ctx, first)


def test_piecewise_reads_assemble_the_file(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert hitread.open_hit(path, len(data) + 1) is None  # size rule: not a hit
    assert hitread.open_hit(tmp_path / "missing", 1) is None
    opened = hitread.open_hit(path, len(data))
    assert opened is not None
    fd, _mtime = opened
    try:
        buf = bytearray(100_000)
        view = memoryview(buf)
        got = bytearray()
        for offset in range(0, len(data), len(buf)):
            done = hitread.read_cached(fd, view, offset)
            assert 0 <= done <= len(buf)
            assert hitread.read_rest(fd, view, done, offset)  # completes a cold remainder
            got += buf
        assert bytes(got) == data
        # a file that ends early is reported, not padded
        os.truncate(path, 250_000)
        assert not hitread.read_rest(fd, view, 0, 200_000)
    finally:
        os.close(fd)


async def test_cold_remainder_is_read_in_a_thread(tmp_path: Path) -> None:
    """A hit whose pages left the page cache (``POSIX_FADV_DONTNEED``) is served intact."""
    data = os.urandom(2 * hitread.PIECE)
    with trio.fail_after(60):
        async with (
            open_fake_control(CREDS) as fake,
            run_node(tmp_path, fake, verify_on_serve=False) as node,
        ):
            fid = await cached_file(node, tmp_path, data)
            assert node.cache is not None
            fd = os.open(node.cache.path_of(p.FileId.parse(fid)), os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
            raw = await raw_request(
                fake,
                server_port(node),
                f"GET {fake.keystamped_path(fid)} HTTP/1.1\r\n\r\n".encode(),
            )
            assert split_response(raw)[2] == data


async def test_a_burst_of_queued_connections_is_served_in_full(tmp_path: Path) -> None:
    from hathd.hath.server import ACCEPT_BATCH

    count = 3 * ACCEPT_BATCH + 1
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake, run_node(tmp_path, fake) as node:
            assert node.server is not None
            accepted_before = node.server.statistics().accepted
            # connect them all without yielding to the server: they wait in the listen queue
            # and are accepted in batches on the next wake-ups of the accept loop
            plain = [
                socket.create_connection(("127.0.0.1", server_port(node))) for _ in range(count)
            ]
            answers: list[bytes] = []

            async def one(sock: socket.socket) -> None:
                tcp = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
                tls = trio.SSLStream(
                    tcp, fake.ca_context(), server_hostname="127.0.0.1", https_compatible=True
                )
                out = bytearray()
                async with tls:
                    await tls.send_all(b"GET /robots.txt HTTP/1.1\r\n\r\n")
                    while chunk := await tls.receive_some(65536):
                        out += chunk
                answers.append(bytes(out))

            async with trio.open_nursery() as nursery:
                for sock in plain:
                    nursery.start_soon(one, sock)
            assert len(answers) == count
            assert all(split_response(a)[0] == "HTTP/1.1 200 OK" for a in answers)
            assert node.server.statistics().accepted - accepted_before == count
