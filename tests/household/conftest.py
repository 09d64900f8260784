"""Fixtures of the household features: an Apprise ``json://`` receiver on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakes.apprise_receiver import serve_receiver
from fanfic.support import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An HTTP server recording the JSON bodies Apprise POSTs; shut down afterwards."""
    with serve_receiver() as running:
        yield running
