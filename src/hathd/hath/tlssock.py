"""Server-side TLS on the socket itself: OpenSSL reads and writes the file descriptor.

``trio.SSLStream`` runs OpenSSL over memory BIOs and moves every record through Python (socket
``recv``/``send`` into the BIO, a retry loop around each call). On the H@H load — a new TLS
connection for every request — that cost ~40 % of the node's CPU (docs/perf-hath.md). Here the
``ssl.SSLSocket`` is non-blocking and owns the socket, so a handshake or a 2 MB ``send`` is one
call into OpenSSL that writes records straight to the kernel; Trio is only asked to wait
(``trio.lowlevel.wait_readable`` / ``wait_writable``) when OpenSSL reports
``SSLWantReadError`` / ``SSLWantWriteError``.

Stream contract (the subset the image server uses, shaped like ``trio.abc.Stream``):
``do_handshake``, ``receive_some``, ``send_all``, ``aclose``. Every operation is a Trio
checkpoint. Peer resets, TLS alerts and broken pipes raise ``trio.BrokenResourceError``;
using a closed stream raises ``trio.ClosedResourceError``. A peer that closes without
``close_notify`` reads as end of file (the ``https_compatible`` behaviour of
``trio.SSLStream``). Timeouts (slowloris) stay with the caller: wrap the calls in a Trio
cancel scope, as the server does with ``request_timeout``.

Retry rule (OpenSSL ``SSL_write``): after ``SSLWantWriteError`` the write is repeated with the
same bytes; Python enables ``SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER`` and no partial writes, so a
successful ``send`` has written everything it was given
(https://docs.openssl.org/3.0/man3/SSL_write/).
"""

from __future__ import annotations

import socket
import ssl

import trio


class TLSSocketStream:
    """One server-side TLS connection over a connected, non-blocking ``socket.socket``.

    Takes ownership of ``sock`` (``SSLContext.wrap_socket`` detaches it). Errors: see the
    module docstring.
    """

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        sock.setblocking(False)
        self.tls: ssl.SSLSocket = context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        )
        self._closed = False

    @property
    def session_reused(self) -> bool:
        """Whether the handshake resumed a TLS session (a ticket or session id)."""
        return bool(self.tls.session_reused)

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("TLS stream is closed")

    async def do_handshake(self) -> None:
        """Run the TLS handshake to completion.

        :raises trio.BrokenResourceError: the peer sent no TLS, a bad TLS message, or closed.
        """
        self._check_open()
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                waited = True
                await trio.lowlevel.wait_readable(self.tls)
            except ssl.SSLWantWriteError:
                waited = True
                await trio.lowlevel.wait_writable(self.tls)
            except (ssl.SSLError, OSError, ValueError) as exc:
                raise trio.BrokenResourceError(f"TLS handshake failed: {exc}") from exc
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Up to ``max_bytes`` (default 65536) of decrypted data; ``b""`` at end of file.

        :raises trio.BrokenResourceError: reset or TLS error.
        """
        self._check_open()
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while True:
            try:
                data = self.tls.recv(max_bytes or 65536)
                break
            except ssl.SSLWantReadError:
                waited = True
                await trio.lowlevel.wait_readable(self.tls)
            except ssl.SSLWantWriteError:
                waited = True
                await trio.lowlevel.wait_writable(self.tls)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                data = b""
                break
            except (ssl.SSLError, OSError, ValueError) as exc:
                raise trio.BrokenResourceError(f"TLS receive failed: {exc}") from exc
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt and send all of ``data``.

        :raises trio.BrokenResourceError: the peer is gone (reset, broken pipe, TLS error).
        """
        self._check_open()
        await trio.lowlevel.checkpoint_if_cancelled()
        view = memoryview(data)
        waited = False
        while view:
            try:
                sent = self.tls.send(view)
            except ssl.SSLWantWriteError:
                waited = True
                await trio.lowlevel.wait_writable(self.tls)
                continue
            except ssl.SSLWantReadError:
                waited = True
                await trio.lowlevel.wait_readable(self.tls)
                continue
            except (ssl.SSLError, OSError, ValueError) as exc:
                raise trio.BrokenResourceError(f"TLS send failed: {exc}") from exc
            view = view[sent:]
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()

    def close(self, *, notify: bool = True) -> None:
        """Close now (never blocks). With ``notify``, first try once to send the TLS
        ``close_notify`` alert without waiting for the peer's; idempotent."""
        if self._closed:
            return
        self._closed = True
        if notify:
            try:
                self.tls.unwrap()
            except (ssl.SSLError, OSError, ValueError):
                pass  # alert queued or peer gone: nothing more to do for a one-shot connection
        trio.lowlevel.notify_closing(self.tls)
        self.tls.close()

    async def aclose(self) -> None:
        """:meth:`close` with ``close_notify``, as a Trio checkpoint."""
        self.close()
        await trio.lowlevel.checkpoint()
