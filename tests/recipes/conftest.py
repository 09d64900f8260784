"""Fixtures of the recipe tests: sample images and the five fake image hosts, running."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fakes.forum import FakeVBulletin
from fakes.imagehost_setup import (
    BAM_EMAIL,
    BAM_PASS,
    FORUM_PASS,
    FORUM_USER,
    IMX_KEY,
    IMX_PASS,
    IMX_USER,
    VIPR_PASS,
    VIPR_USER,
    make_image,
)
from fakes.imagehosts import (
    FakeImageBam,
    FakeImx,
    FakePixhost,
    FakeTurbo,
    FakeVipr,
    running,
)


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "pics"
    folder.mkdir()
    return [make_image(folder, f"photo{i}.jpg", 2000 + 700 * i, i) for i in range(3)]


@pytest.fixture
async def imx() -> AsyncIterator[FakeImx]:
    async with running(FakeImx(IMX_KEY, IMX_USER, IMX_PASS)) as host:
        assert isinstance(host, FakeImx)
        yield host


@pytest.fixture
async def pixhost() -> AsyncIterator[FakePixhost]:
    async with running(FakePixhost()) as host:
        assert isinstance(host, FakePixhost)
        yield host


@pytest.fixture
async def vipr() -> AsyncIterator[FakeVipr]:
    async with running(FakeVipr(VIPR_USER, VIPR_PASS)) as host:
        assert isinstance(host, FakeVipr)
        yield host


@pytest.fixture
async def turbo() -> AsyncIterator[FakeTurbo]:
    async with running(FakeTurbo()) as host:
        assert isinstance(host, FakeTurbo)
        yield host


@pytest.fixture
async def imagebam() -> AsyncIterator[FakeImageBam]:
    async with running(FakeImageBam(BAM_EMAIL, BAM_PASS)) as host:
        assert isinstance(host, FakeImageBam)
        yield host


@pytest.fixture
async def forum() -> AsyncIterator[FakeVBulletin]:
    async with running(FakeVBulletin({FORUM_USER: FORUM_PASS})) as host:
        assert isinstance(host, FakeVBulletin)
        yield host


@pytest.fixture
def sets(tmp_path: Path) -> list[Path]:
    """Two folders of three images each."""
    out = []
    for n in (1, 2):
        folder = tmp_path / f"set{n}"
        folder.mkdir()
        for i in range(3):
            make_image(folder, f"img{i}.jpg", 1500 + 300 * i, 10 * n + i)
        out.append(folder)
    return out
