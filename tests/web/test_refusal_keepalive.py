"""A refused request (401/403 before any view) on a keep-alive connection must not stall the
next request on that connection, however its body arrives (a real ``hathd run``, a raw
socket so the body can be sent after the head)."""

from __future__ import annotations

import trio

from conftest import StartDaemon


async def _read_response(stream: trio.SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = await stream.receive_some(65536)
        assert chunk
        rest += chunk
    return head


async def test_next_request_after_a_refusal_is_answered(start_daemon: StartDaemon) -> None:
    handle = await start_daemon("")
    host, _, port = handle.tcp_url.removeprefix("http://").partition(":")
    body = b'{"jobs": []}'
    for pause in (0.0, 0.3):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            # no credentials: refused before any view; the body follows the head later
            await stream.send_all(
                b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + b"Content-Length: %d\r\n\r\n" % len(body)
            )
            await trio.sleep(pause)
            await stream.send_all(body)
            with trio.fail_after(20):
                head = await _read_response(stream)
            assert head.startswith(b"HTTP/1.1 401"), head
            await stream.send_all(
                b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                + handle.token.encode()
                + b"\r\n\r\n"
            )
            with trio.fail_after(20):
                head = await _read_response(stream)
            assert head.startswith(b"HTTP/1.1 200"), head
