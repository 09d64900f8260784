"""Fixtures of the fanfic tests: dovecot on 127.0.0.1, an Apprise notification receiver."""

from __future__ import annotations

import shutil
import signal
from collections.abc import AsyncIterator, Iterator

import pytest
import trio

from fakes.apprise_receiver import serve_receiver
from fanfic.support import Dovecot, Receiver, free_port, make_rig, write_dovecot_config


@pytest.fixture
async def dovecot() -> AsyncIterator[Dovecot]:
    """A running dovecot with user ``fanfic`` / ``pw`` on a plain (STARTTLS-capable) port and
    an implicit-TLS port (certificate from ``rig/ca.pem``); stopped and removed afterwards."""
    rig, user, group = make_rig()
    server = Dovecot(rig, free_port(), free_port())
    write_dovecot_config(server, user, group)
    await server.start()
    try:
        yield server
    finally:
        with trio.CancelScope(shield=True):
            await server.stop(signal.SIGKILL)
        shutil.rmtree(rig, ignore_errors=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A notification receiver; shut down afterwards."""
    with serve_receiver() as running:
        yield running
