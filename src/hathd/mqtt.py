"""An MQTT 3.1.1 client for Trio: paho-mqtt 2.x driven through its external-loop API.

Usage::

    client = MqttClient(config, subscriptions=[("Down", 1)])
    async with trio.open_nursery() as nursery:
        await nursery.start(client.serve)          # returns once connected and subscribed
        async for message in client.messages:      # Message(topic, payload, qos, mid, …)
            await store_it(message)
            client.ack(message)                    # PUBACK only now (manual_ack)
        await client.publish("Label", b"HASH\\tDONE", qos=2)   # waits for PUBACK/PUBCOMP

How it works (paho-mqtt 2.2 ``Client``; paho-mqtt documentation, "External event loop
support": ``loop_read``, ``loop_write``, ``loop_misc``):

- ``connect()``/``reconnect()`` block (DNS, TCP, TLS handshake, CONNECT), so they run in a
  worker thread; then three tasks drive the socket: a reader (``wait_readable`` →
  ``loop_read``), a writer (woken by ``on_socket_register_write`` → ``wait_writable`` →
  ``loop_write``) and a keep-alive task (``loop_misc`` every second).
- Socket lifetime. Trio must hear of a socket's closing *before* the descriptor goes away:
  a task parked in ``wait_readable``/``wait_writable`` on a descriptor closed behind Trio's
  back gets ``OSError: [Errno 9] Bad file descriptor``, and once the number is reused by
  another component (an lftp pipe), that component's wait fails with
  :class:`trio.BusyResourceError`. So every close goes through :func:`trio.lowlevel.notify_closing`
  first: paho's own closes (connection lost in ``loop_read``/``loop_write``, keep-alive
  timeout in ``loop_misc``, DISCONNECT written) reach ``on_socket_close``, which notifies in
  the Trio thread (parked tasks get :class:`trio.ClosedResourceError`, a disconnect); and when
  a connection's tasks have ended, the socket is closed here, in the Trio thread, so the
  ``connect()``/``reconnect()`` of the next attempt (in a worker thread) never closes a socket
  Trio still knows. A connect abandoned by cancellation closes its own new socket in its
  thread (no Trio task has seen it).
- ``manual_ack=True``: an incoming QoS 1 message is acknowledged only when :meth:`ack` is
  called, after the consumer has stored it. Until then the broker redelivers it after a
  reconnect (MQTT 3.1.1 §4.4). A QoS 2 message is PUBREC'd by paho on arrival and delivered on
  PUBREL, so a crash between PUBREC and our commit loses it; use QoS 1 subscriptions for
  at-least-once processing.
- A fixed ``client_id`` with ``persistent_session`` (``clean_session = 0``, MQTT 3.1.1 §3.1.2.4)
  keeps the subscriptions and queued QoS ≥ 1 messages on the broker while we are away
  (mosquitto bounds that queue with ``max_queued_messages``, default 1000).
- Incoming messages go through a bounded channel; when the consumer falls behind the reader
  stops reading the socket (back-pressure) instead of dropping messages.
- Reconnect: after the first successful connection, a lost connection is retried with
  exponential backoff (``reconnect_min`` → ``reconnect_max`` seconds, back to
  ``reconnect_min`` after a connection that lasted :data:`STABLE_AFTER` seconds). A failure
  *before* the first connection raises :class:`MqttError` from :meth:`serve`, so a supervisor
  sees it.

Errors: :class:`MqttError` (connection refused, CONNACK refused, subscription refused,
timeout); :class:`MqttNotConnected` from :meth:`publish` when the connection drops before the
broker acknowledged.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import paho.mqtt.client as paho
import trio
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from hathd.errors import HathdError
from hathd.q4d.config import MqttConfig

log = logging.getLogger(__name__)

MISC_INTERVAL = 1.0
"""Seconds between ``loop_misc`` calls (keep-alive PINGREQ and its timeout check)."""

STABLE_AFTER = 30.0
"""Seconds a connection must have lasted for the reconnect backoff to start over."""


class MqttError(HathdError):
    """The broker could not be reached, refused the connection or a subscription."""


class MqttNotConnected(MqttError):
    """No connection, or it dropped before the broker acknowledged a publication."""


@attrs.frozen
class Message:
    """An incoming PUBLISH. ``generation`` counts connections: an ack is sent only on the
    connection the message arrived on (after a reconnect the broker redelivers it)."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    retain: bool
    dup: bool
    generation: int


@attrs.frozen
class MqttStatistics:
    """Counters: connected now, connections made, connections lost, messages in, acks sent,
    publications acknowledged by the broker, last error text."""

    connected: bool
    connects: int
    disconnects: int
    received: int
    acked: int
    published: int
    last_error: str | None


def _in_trio_thread() -> bool:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


class _TrackingContext(ssl.SSLContext):
    """An SSLContext that remembers the last socket it wrapped: paho leaves a socket whose
    TLS handshake failed unclosed (paho-mqtt 2.2 ``Client._ssl_wrap_socket``)."""

    last: ssl.SSLSocket | None = None

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        sock = super().wrap_socket(*args, **kwargs)
        self.last = sock
        return sock

    def close_last(self) -> None:
        if self.last is not None:
            self.last.close()
            self.last = None


def _close_quietly(sock: object) -> None:
    """Close a socket paho left behind (any thread; only for sockets Trio never waited on)."""
    if isinstance(sock, socket.socket):
        sock.close()


class MqttClient:
    """One MQTT session: connection, reconnection, subscriptions, acks and publications.

    :param config: broker address, TLS, credentials, client id, session, timeouts (seconds).
    :param subscriptions: ``(topic filter, qos)`` pairs, (re)subscribed on every connection.
    :param buffer: incoming messages held before the reader pauses.
    """

    def __init__(
        self,
        config: MqttConfig,
        *,
        subscriptions: Sequence[tuple[str, int]] = (),
        buffer: int = 256,
    ) -> None:
        self.config = config
        self.subscriptions = list(subscriptions)
        self._send, self.messages = trio.open_memory_channel[Message](buffer)
        self._generation = 0
        self._connected = False
        self._connected_event = trio.Event()
        self._client: paho.Client | None = None
        self._write_wakeup = trio.Event()
        self._lost = trio.Event()
        self._connack: trio.Event = trio.Event()
        self._connack_rc: str | None = None
        self._suback: dict[int, trio.Event] = {}
        self._suback_codes: dict[int, list[Any]] = {}
        self._pub_waiters: dict[int, trio.Event] = {}
        self._pub_acked: set[int] = set()
        self._incoming: deque[Message] = deque()
        self._connects = 0
        self._disconnects = 0
        self._received = 0
        self._acked = 0
        self._published = 0
        self._last_error: str | None = None
        self._error_noted = False
        self._on_connected: list[Callable[[], None]] = []
        self._ready = False
        self._configured = False
        self._tls_context: _TrackingContext | None = None

    # ---- public API -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True between a successful CONNACK+SUBACK and the loss of that connection."""
        return self._connected

    async def wait_connected(self) -> None:
        """Return once the client is connected (at once if it is)."""
        while not self._connected:
            await self._connected_event.wait()

    def on_connected(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` (synchronously, in Trio) after every successful (re)connection."""
        self._on_connected.append(fn)

    def ack(self, message: Message) -> bool:
        """Acknowledge ``message`` (PUBACK for QoS 1, PUBCOMP for QoS 2).

        Returns ``False`` when it cannot be acked on this connection (it was received on an
        earlier one, which the broker will redeliver, or we are disconnected); QoS 0 needs
        no ack and returns ``True``.
        """
        if message.qos == 0:
            return True
        if self._client is None or not self._connected or message.generation != self._generation:
            return False
        rc = self._client.ack(message.mid, message.qos)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        self._acked += 1
        return True

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1) -> None:
        """Publish and wait until the broker acknowledged (QoS 1/2) or it was sent (QoS 0).

        :raises MqttNotConnected: not connected, or the connection dropped before the ack.
        """
        if self._client is None or not self._connected:
            raise MqttNotConnected("not connected to the broker")
        info = self._client.publish(topic, payload, qos=qos)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise MqttNotConnected(f"publish failed: {paho.error_string(info.rc)}")
        if qos == 0:
            self._published += 1
            return
        done = trio.Event()
        self._pub_waiters[info.mid] = done
        try:
            await done.wait()
        finally:
            self._pub_waiters.pop(info.mid, None)
        if info.mid not in self._pub_acked:
            raise MqttNotConnected("connection lost before the broker acknowledged")
        self._pub_acked.discard(info.mid)
        self._published += 1

    def statistics(self) -> MqttStatistics:
        """The client's counters."""
        return MqttStatistics(
            self._connected,
            self._connects,
            self._disconnects,
            self._received,
            self._acked,
            self._published,
            self._last_error,
        )

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, subscribe, report ready, then keep the session up until cancelled.

        :raises MqttError: the first connection attempt failed (later ones are retried with
            backoff from ``reconnect_min`` to ``reconnect_max`` seconds).
        """
        cfg = self.config
        client = self._make_client()
        self._client = client
        backoff = cfg.reconnect_min
        try:
            while True:
                try:
                    sock = await self._connect(client)
                    began = trio.current_time()
                    await self._run_connection(client, sock, task_status)
                except MqttError as exc:
                    self._last_error = str(exc)
                    if not self._ready:
                        raise
                    log.warning("MQTT: %s; retrying in %.1f s", exc, backoff)
                else:
                    # A connection that held a while earns a quick reconnect; one dropped at
                    # once (e.g. a second client with our id) keeps the backoff growing.
                    if trio.current_time() - began >= STABLE_AFTER:
                        backoff = cfg.reconnect_min
                    log.info("MQTT reconnecting in %.1f s", backoff)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, cfg.reconnect_max)
        finally:
            self._send.close()

    # ---- connection -------------------------------------------------------------------

    def _make_client(self) -> paho.Client:
        cfg = self.config
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            clean_session=not cfg.persistent_session,
            protocol=paho.MQTTv311,
            manual_ack=True,
        )
        client.connect_timeout = cfg.connect_timeout
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        return client

    def _configure_blocking(self, client: paho.Client) -> None:
        """TLS and credentials (reads files, so it runs in a worker thread)."""
        cfg = self.config
        password = cfg.read_password()
        if cfg.username:
            client.username_pw_set(cfg.username, password)
        if cfg.tls:
            context = _TrackingContext(ssl.PROTOCOL_TLS_CLIENT)
            if cfg.ca_file:
                context.load_verify_locations(cfg.ca_file)
            else:
                context.load_default_certs()
            if cfg.cert_file:
                context.load_cert_chain(cfg.cert_file, cfg.key_file or None)
            self._tls_context = context
            client.tls_set_context(context)

    async def _connect(self, client: paho.Client) -> socket.socket:
        """Open the TCP (+TLS) connection and send CONNECT, in a worker thread."""
        cfg = self.config
        first = not self._configured
        self._lost = trio.Event()
        self._connack = trio.Event()
        self._connack_rc = None
        self._error_noted = False
        self._generation += 1

        lock = threading.Lock()
        abandoned = False
        finished = False

        def connect() -> None:
            nonlocal finished
            try:
                if first:
                    self._configure_blocking(client)
                    client.connect(cfg.host, cfg.port, keepalive=cfg.keepalive)
                else:
                    client.reconnect()
            finally:
                with lock:
                    finished = True
                    if abandoned:
                        # Nobody will drive this connection, and no Trio task has seen its
                        # socket: close it here rather than leak it.
                        _close_quietly(client.socket())

        try:
            await trio.to_thread.run_sync(connect, abandon_on_cancel=True)
        except trio.Cancelled:
            with lock:
                abandoned = True
                done = finished
            if done:  # the thread returned just as we were cancelled
                left = client.socket()
                if isinstance(left, socket.socket):
                    self._drop_socket(left)
            raise
        except (OSError, ValueError, HathdError) as exc:
            if self._tls_context is not None:
                self._tls_context.close_last()
            raise MqttError(f"cannot connect to {cfg.host}:{cfg.port}: {exc}") from exc
        self._configured = True
        sock = client.socket()
        if not isinstance(sock, socket.socket):
            raise MqttError("paho returned no socket after connect")
        return sock

    async def _run_connection(
        self, client: paho.Client, sock: socket.socket, task_status: trio.TaskStatus[None]
    ) -> None:
        """Drive one connection until it is lost; report ready after the first handshake.

        :raises MqttError: CONNACK or SUBACK refused or missing.
        """
        problem: MqttError | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reader, client, sock)
                nursery.start_soon(self._writer, client, sock)
                nursery.start_soon(self._misc, client)
                try:
                    await self._handshake(client)
                except MqttError as exc:
                    problem = exc
                else:
                    if not self._ready:
                        self._ready = True
                        task_status.started()
                    await self._lost.wait()
                nursery.cancel_scope.cancel()
        finally:
            # Here only when the connection is over or we are cancelled (shutdown); the
            # reader, writer and keep-alive tasks have ended either way.
            clean = problem is None and not self._lost.is_set()
            if clean:
                with trio.CancelScope(shield=True):
                    await self._goodbye(client, sock)
            self._set_disconnected(clean=clean)
            self._drop_socket(sock)
        if problem is not None:
            raise problem

    def _drop_socket(self, sock: socket.socket) -> None:
        """Close ``sock`` in the Trio thread, telling Trio first (no-op if already closed)."""
        if sock.fileno() >= 0:
            trio.lowlevel.notify_closing(sock)
            sock.close()

    async def _handshake(self, client: paho.Client) -> None:
        cfg = self.config
        if not await self._await_reply(self._connack):
            raise MqttError(self._no_reply("CONNACK"))
        if self._connack_rc is not None:
            raise MqttError(f"broker refused the connection: {self._connack_rc}")
        for topic, qos in self.subscriptions:
            rc, mid = client.subscribe(topic, qos)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
                raise MqttError(f"cannot subscribe to {topic!r}: {paho.error_string(rc)}")
            done = trio.Event()
            self._suback[mid] = done
            try:
                answered = await self._await_reply(done)
            finally:
                self._suback.pop(mid, None)
            codes = self._suback_codes.pop(mid, [])
            if not answered:
                raise MqttError(self._no_reply(f"SUBACK for {topic!r}"))
            if any(getattr(code, "is_failure", False) for code in codes):
                raise MqttError(f"broker refused the subscription to {topic!r}: {codes}")
        self._connected = True
        self._connects += 1
        self._connected_event.set()
        self._connected_event = trio.Event()
        log.info("MQTT connected to %s:%d as %s", cfg.host, cfg.port, cfg.client_id)
        for fn in self._on_connected:
            try:
                fn()
            except Exception:
                log.exception("on_connected callback failed")

    async def _await_reply(self, event: trio.Event) -> bool:
        """Wait up to ``connect_timeout`` for ``event``; ``False`` on timeout or a lost
        connection (no point waiting for a reply on a socket that is gone)."""
        lost = self._lost
        with trio.move_on_after(self.config.connect_timeout):
            async with trio.open_nursery() as nursery:

                async def on_loss() -> None:
                    await lost.wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(on_loss)
                await event.wait()
                nursery.cancel_scope.cancel()
        return event.is_set()

    def _no_reply(self, what: str) -> str:
        cfg = self.config
        if self._lost.is_set():
            return f"connection to {cfg.host}:{cfg.port} lost before {what} ({self._last_error})"
        return f"no {what} from {cfg.host}:{cfg.port} in {cfg.connect_timeout:g} s"

    def _set_disconnected(self, *, clean: bool) -> None:
        if self._connected:
            self._disconnects += 1
            if clean:
                log.info("MQTT connection to %s:%d closing", self.config.host, self.config.port)
            else:
                log.warning(
                    "MQTT connection to %s:%d lost: %s",
                    self.config.host,
                    self.config.port,
                    self._last_error or "closed",
                )
        self._connected = False
        self._lost.set()
        for waiter in self._pub_waiters.values():
            waiter.set()

    async def _goodbye(self, client: paho.Client, sock: socket.socket) -> None:
        """Send DISCONNECT on a live connection (best effort, at most 1 s). paho closes the
        socket once DISCONNECT is written (through ``on_socket_close``)."""
        if client.socket() is not sock or sock.fileno() < 0:
            return
        client.disconnect()
        with trio.move_on_after(1.0):
            while client.want_write() and client.socket() is sock:
                try:
                    await trio.lowlevel.wait_writable(sock)
                except (trio.ClosedResourceError, OSError):
                    break
                if client.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break

    # ---- socket tasks -----------------------------------------------------------------

    def _gone(self, sock: socket.socket) -> bool:
        """The connection is over: lost, or paho closed the socket (fd -1)."""
        return self._lost.is_set() or sock.fileno() < 0

    async def _reader(self, client: paho.Client, sock: socket.socket) -> None:
        try:
            while not self._gone(sock):
                await trio.lowlevel.wait_readable(sock)
                while True:
                    rc = client.loop_read()
                    await self._deliver()
                    if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                        self._note_error(f"read: {paho.error_string(rc)}")
                        self._lost.set()
                        return
                    pending = getattr(client.socket(), "pending", None)
                    if not (callable(pending) and pending() > 0):
                        break
        except trio.ClosedResourceError:
            self._note_error("read: socket closed")
        except OSError as exc:
            self._socket_fault("read", exc)
        self._lost.set()

    async def _deliver(self) -> None:
        while self._incoming:
            message = self._incoming.popleft()
            try:
                await self._send.send(message)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._incoming.clear()
                return

    async def _writer(self, client: paho.Client, sock: socket.socket) -> None:
        try:
            while not self._gone(sock):
                if client.want_write():
                    await trio.lowlevel.wait_writable(sock)
                    rc = client.loop_write()
                    if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                        self._note_error(f"write: {paho.error_string(rc)}")
                        self._lost.set()
                        return
                else:
                    await self._write_wakeup.wait()
                    self._write_wakeup = trio.Event()
        except trio.ClosedResourceError:
            self._note_error("write: socket closed")
        except OSError as exc:
            self._socket_fault("write", exc)
        self._lost.set()

    async def _misc(self, client: paho.Client) -> None:
        while True:
            await trio.sleep(MISC_INTERVAL)
            rc = client.loop_misc()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._note_error(f"keep-alive: {paho.error_string(rc)}")
                self._lost.set()
                return

    def _note_error(self, text: str) -> None:
        """Record why this connection ended (the first reason given wins)."""
        if not self._error_noted:
            self._error_noted = True
            self._last_error = text

    def _socket_fault(self, side: str, exc: OSError) -> None:
        """An ``OSError`` from ``wait_readable``/``wait_writable``: the descriptor was closed
        without :func:`trio.lowlevel.notify_closing`, a bug in the socket lifetime above.
        Logged loudly, then handled as a lost connection."""
        log.error("MQTT %s: socket closed behind Trio's back: %s", side, exc)
        self._note_error(f"{side}: {exc}")

    # ---- paho callbacks (run inside loop_read/loop_write/loop_misc, in the Trio thread,
    # except during connect()/reconnect() in the worker thread) ---------------------------

    def _on_connect(self, _c: paho.Client, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        if getattr(reason, "is_failure", False):
            self._connack_rc = str(reason)
        if _in_trio_thread():
            self._connack.set()

    def _on_disconnect(self, _c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if _in_trio_thread():
            self._lost.set()

    def _on_subscribe(self, _c: paho.Client, _u: Any, mid: int, codes: list[Any], _p: Any) -> None:
        self._suback_codes[mid] = list(codes)
        event = self._suback.get(mid)
        if event is not None:
            event.set()

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        self._received += 1
        self._incoming.append(
            Message(
                msg.topic,
                bytes(msg.payload),
                msg.qos,
                msg.mid,
                bool(msg.retain),
                bool(msg.dup),
                self._generation,
            )
        )

    def _on_publish(self, _c: paho.Client, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        waiter = self._pub_waiters.get(mid)
        if waiter is not None:
            self._pub_acked.add(mid)
            waiter.set()

    def _on_socket_close(self, _c: paho.Client, _u: Any, sock: Any) -> None:
        # paho calls this right before it closes ``sock``. In the Trio thread (loop_read,
        # loop_write, loop_misc): wake the tasks parked on it. In the connect thread the
        # socket is already closed (see _run_connection) or was never seen by Trio.
        if _in_trio_thread() and isinstance(sock, socket.socket) and sock.fileno() >= 0:
            trio.lowlevel.notify_closing(sock)

    def _on_register_write(self, _c: paho.Client, _u: Any, _sock: Any) -> None:
        if _in_trio_thread():
            self._write_wakeup.set()
