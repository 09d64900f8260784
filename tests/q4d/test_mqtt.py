"""The Trio MQTT client against a real mosquitto broker on 127.0.0.1."""

from __future__ import annotations

import logging
import signal
import socket
from pathlib import Path

import pytest
import trio
import trustme

from hathd.mqtt import Message, MqttClient, MqttError
from hathd.q4d.config import MqttConfig
from q4d.rig import mosquitto_pub, open_mosquitto, watch_labels


def cfg(port: int, **kw: object) -> MqttConfig:
    base: dict[str, object] = {
        "port": port,
        "client_id": "hathd-test",
        "reconnect_min": 0.1,
        "reconnect_max": 0.5,
        "connect_timeout": 10.0,
    }
    base.update(kw)
    return MqttConfig(**base)  # type: ignore[arg-type]


async def next_message(client: MqttClient, timeout: float = 20) -> Message:
    with trio.fail_after(timeout):
        return await client.messages.receive()


def socket_faults(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Errors logged by the MQTT client (a descriptor closed behind Trio's back, EBADF)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "hathd.mqtt" and r.levelno >= logging.ERROR
    ]


async def test_receive_ack_and_publish(tmp_path: Path) -> None:
    async with open_mosquitto(tmp_path / "mq") as broker:
        client = MqttClient(cfg(broker.port), subscriptions=[("Down", 1)])
        async with trio.open_nursery() as nursery:
            with trio.fail_after(20):
                await nursery.start(client.serve)
            assert client.connected
            await mosquitto_pub(broker.port, "Down", b"/f/a b\tHASH\tM")
            msg = await next_message(client)
            assert (msg.topic, msg.payload, msg.qos) == ("Down", b"/f/a b\tHASH\tM", 1)
            assert client.ack(msg)
            async with watch_labels(broker.port) as watcher:
                with trio.fail_after(20):
                    await client.publish("Label", b"HASH\tDONE", qos=2)
                await watcher.wait_for({"HASH\tDONE"})
            stats = client.statistics()
            assert stats.connected
            assert (stats.received, stats.acked, stats.published) == (1, 1, 1)
            nursery.cancel_scope.cancel()
        assert not client.connected


async def run_session(port: int, want: int, *, ack: bool) -> list[Message]:
    """Connect as the fixed client id, take ``want`` messages (acking them or not), leave."""
    client = MqttClient(cfg(port), subscriptions=[("Down", 1)])
    got: list[Message] = []
    async with trio.open_nursery() as nursery:
        with trio.fail_after(20):
            await nursery.start(client.serve)
        for _ in range(want):
            msg = await next_message(client)
            got.append(msg)
            if ack:
                assert client.ack(msg)
        nursery.cancel_scope.cancel()
    return got


async def test_unacked_message_is_redelivered_to_the_next_session(tmp_path: Path) -> None:
    async with open_mosquitto(tmp_path / "mq") as broker:
        await run_session(broker.port, 0, ack=True)  # create the persistent session
        await mosquitto_pub(broker.port, "Down", b"first")
        (msg,) = await run_session(broker.port, 1, ack=False)
        assert msg.payload == b"first"
        (again,) = await run_session(broker.port, 1, ack=True)
        assert again.payload == b"first"
        assert again.dup
        await mosquitto_pub(broker.port, "Down", b"second")
        (after,) = await run_session(broker.port, 1, ack=True)
        assert after.payload == b"second"  # "first" was acked and is not sent again


async def test_messages_published_while_away_arrive_on_return(tmp_path: Path) -> None:
    async with open_mosquitto(tmp_path / "mq") as broker:
        await run_session(broker.port, 0, ack=True)
        for i in range(5):
            await mosquitto_pub(broker.port, "Down", f"offline {i}".encode())
        got = await run_session(broker.port, 5, ack=True)
        assert [m.payload for m in got] == [f"offline {i}".encode() for i in range(5)]


async def test_clean_session_loses_offline_messages(tmp_path: Path) -> None:
    # The contrast that motivates persistent_session (docs/q4d.md, "The broker").
    async with open_mosquitto(tmp_path / "mq") as broker:
        config = cfg(broker.port, persistent_session=False)
        client = MqttClient(config, subscriptions=[("Down", 1)])
        async with trio.open_nursery() as nursery:
            await nursery.start(client.serve)
            nursery.cancel_scope.cancel()
        await mosquitto_pub(broker.port, "Down", b"lost")
        client = MqttClient(config, subscriptions=[("Down", 1)])
        async with trio.open_nursery() as nursery:
            await nursery.start(client.serve)
            await mosquitto_pub(broker.port, "Down", b"live")
            msg = await next_message(client)
            assert msg.payload == b"live"
            nursery.cancel_scope.cancel()


async def test_reconnects_after_broker_restart(tmp_path: Path) -> None:
    async with open_mosquitto(tmp_path / "mq") as broker:
        client = MqttClient(cfg(broker.port), subscriptions=[("Down", 1)])
        async with trio.open_nursery() as nursery:
            await nursery.start(client.serve)
            await mosquitto_pub(broker.port, "Down", b"before")
            msg = await next_message(client)
            assert client.ack(msg)
            await broker.stop()
            await broker.start()
            # Published before hathd is back: the broker kept the session (persistence).
            await mosquitto_pub(broker.port, "Down", b"after")
            seen = []
            while not seen or seen[-1] != b"after":
                msg = await next_message(client, timeout=30)
                seen.append(msg.payload)
                with trio.fail_after(20):
                    await client.wait_connected()
                client.ack(msg)
            # "before" comes again only if its PUBACK was cut off by the restart.
            assert set(seen) <= {b"before", b"after"}
            stats = client.statistics()
            assert stats.connects == 2
            assert stats.disconnects == 1
            nursery.cancel_scope.cancel()


async def test_broker_killed_repeatedly_resubscribes_each_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # SIGKILL: the broker saves nothing, so each time it comes back without hathd's session;
    # the client must notice the dead socket, reconnect with backoff and subscribe again.
    caplog.set_level(logging.INFO)
    async with open_mosquitto(tmp_path / "mq") as broker:
        client = MqttClient(cfg(broker.port), subscriptions=[("Down", 1)])
        async with trio.open_nursery() as nursery:
            with trio.fail_after(20):
                await nursery.start(client.serve)
            for round_ in range(3):
                await mosquitto_pub(broker.port, "Down", f"round {round_}".encode())
                msg = await next_message(client)
                assert msg.payload == f"round {round_}".encode()
                assert client.ack(msg)
                assert broker.proc is not None
                broker.proc.send_signal(signal.SIGKILL)
                await broker.proc.wait()
                broker.proc = None
                with trio.fail_after(20):
                    while client.connected:
                        await trio.sleep(0.01)
                await broker.start()
                with trio.fail_after(20):
                    await client.wait_connected()
            await mosquitto_pub(broker.port, "Down", b"last")
            assert (await next_message(client)).payload == b"last"
            stats = client.statistics()
            assert (stats.connects, stats.disconnects) == (4, 3)
            assert stats.last_error is not None
            nursery.cancel_scope.cancel()
    assert socket_faults(caplog) == []


async def test_paho_closing_the_socket_frees_its_descriptor_for_reuse(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # paho closes the socket by itself (keep-alive timeout, EOF, DISCONNECT written) while the
    # reader is parked on it. Trio must hear of it first: otherwise the parked reader stays
    # registered on the descriptor number, and the next file that gets that number (another
    # component's pipe or socket) cannot be waited on ("another task is already reading") or
    # wakes the reader with EBADF.
    caplog.set_level(logging.INFO)
    async with open_mosquitto(tmp_path / "mq") as broker:
        client = MqttClient(cfg(broker.port), subscriptions=[("Down", 1)])
        async with trio.open_nursery() as nursery:
            with trio.fail_after(20):
                await nursery.start(client.serve)
            await trio.sleep(0.1)  # the reader is parked in wait_readable
            paho_client = client._client
            assert paho_client is not None
            fd = paho_client.socket().fileno()  # type: ignore[union-attr]
            paho_client._sock_close()  # paho's own close path (loop_misc, loop_read, …)
            kept = []
            while True:  # descriptors are allocated lowest first: this reaches ``fd``
                pair = socket.socketpair()
                kept.append(pair)
                if pair[0].fileno() >= fd:
                    break
            reused = next(a for a, _b in kept if a.fileno() == fd)
            with trio.move_on_after(0.2):
                await trio.lowlevel.wait_readable(reused)  # no BusyResourceError
            for a, b in kept:
                a.close()
                b.close()
            with trio.fail_after(20):
                while client.statistics().connects < 2:
                    await trio.sleep(0.01)
            await mosquitto_pub(broker.port, "Down", b"still working")
            assert (await next_message(client)).payload == b"still working"
            nursery.cancel_scope.cancel()
    assert socket_faults(caplog) == []


@pytest.mark.slow
async def test_keepalive_timeout_on_a_hung_broker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A stopped (SIGSTOP) broker keeps the TCP connection open but answers nothing. The
    # keep-alive task must notice (PINGREQ unanswered for a keep-alive period; paho then closes
    # the socket under the parked reader) and reconnect once the broker is back.
    caplog.set_level(logging.INFO)
    async with open_mosquitto(tmp_path / "mq") as broker:
        config = cfg(broker.port, keepalive=5, connect_timeout=2.0)
        client = MqttClient(config, subscriptions=[("Down", 1)])
        async with trio.open_nursery() as nursery:
            with trio.fail_after(20):
                await nursery.start(client.serve)
            assert broker.proc is not None
            broker.proc.send_signal(signal.SIGSTOP)
            try:
                with trio.fail_after(20):  # PINGREQ at ~5 s, given up at ~10 s
                    while client.connected:
                        await trio.sleep(0.05)
            finally:
                broker.proc.send_signal(signal.SIGCONT)
            assert "keep-alive" in (client.statistics().last_error or "")
            with trio.fail_after(20):
                await client.wait_connected()
            await mosquitto_pub(broker.port, "Down", b"after the stall")
            msg = await next_message(client)
            assert msg.payload == b"after the stall"
            assert client.ack(msg)
            nursery.cancel_scope.cancel()
    assert socket_faults(caplog) == []


async def test_qos2_subscription_is_acked_with_pubcomp(tmp_path: Path) -> None:
    async with open_mosquitto(tmp_path / "mq") as broker:
        client = MqttClient(cfg(broker.port), subscriptions=[("Down", 2)])
        async with trio.open_nursery() as nursery:
            with trio.fail_after(20):
                await nursery.start(client.serve)
            await mosquitto_pub(broker.port, "Down", b"exactly once", qos=2)
            msg = await next_message(client)
            assert (msg.payload, msg.qos) == (b"exactly once", 2)
            assert client.ack(msg)
            nursery.cancel_scope.cancel()
        # Completed: the next session of the same client id does not get it again.
        client = MqttClient(cfg(broker.port), subscriptions=[("Down", 2)])
        async with trio.open_nursery() as nursery:
            with trio.fail_after(20):
                await nursery.start(client.serve)
            await mosquitto_pub(broker.port, "Down", b"next", qos=2)
            assert (await next_message(client)).payload == b"next"
            nursery.cancel_scope.cancel()


async def test_first_connection_failure_raises(tmp_path: Path) -> None:
    async with open_mosquitto(tmp_path / "mq") as broker:
        port = broker.port
    client = MqttClient(cfg(port), subscriptions=[("Down", 1)])
    with trio.fail_after(20), pytest.raises(MqttError, match="cannot connect"):
        await client.serve()


async def test_password_auth(tmp_path: Path) -> None:
    users = {"q4d": "s3cret pw"}
    async with open_mosquitto(tmp_path / "mq", users=users) as broker:
        bad = MqttClient(cfg(broker.port, username="q4d", password="wrong"))
        with trio.fail_after(20), pytest.raises(MqttError, match="refused"):
            await bad.serve()
        (tmp_path / "pw").write_text("s3cret pw\n")
        good = MqttClient(
            cfg(broker.port, username="q4d", password_file=str(tmp_path / "pw")),
            subscriptions=[("Down", 1)],
        )
        async with trio.open_nursery() as nursery:
            with trio.fail_after(20):
                await nursery.start(good.serve)
            assert good.connected
            nursery.cancel_scope.cancel()


async def test_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    async with open_mosquitto(tmp_path / "mq", tls=(cert_file, key_file)) as broker:
        client = MqttClient(
            cfg(broker.port, host="127.0.0.1", tls=True, ca_file=str(ca_file)),
            subscriptions=[("Down", 1)],
        )
        async with trio.open_nursery() as nursery:
            with trio.fail_after(20):
                await nursery.start(client.serve)
            sender = MqttClient(
                cfg(broker.port, tls=True, ca_file=str(ca_file), client_id="sender")
            )
            await nursery.start(sender.serve)
            await sender.publish("Down", b"over tls", qos=1)
            msg = await next_message(client)
            assert msg.payload == b"over tls"
            assert client.ack(msg)
            nursery.cancel_scope.cancel()
        untrusting = MqttClient(cfg(broker.port, tls=True, client_id="x"))
        with trio.fail_after(20), pytest.raises(MqttError, match="cannot connect"):
            await untrusting.serve()
