"""Credentials, sample files and a ``[recipes]`` section for tests against the fake hosts."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from hathd.recipes.config import RecipesConfig, ServiceConfig
from hathd.recipes.loader import configured_recipes
from hathd.recipes.uploader import Uploader

IMX_KEY = "imx-key-7f3a9c"
IMX_USER, IMX_PASS = "imx@example.org", "imx-pass-3d8e"
VIPR_USER, VIPR_PASS = "viprfan", "vipr-pass-55e1"
BAM_EMAIL, BAM_PASS = "bam@example.org", "bam-pass-0c4d"
FORUM_USER, FORUM_PASS = "poster", "forum-pass-91b2"
TEST_ROOT = tempfile.gettempdir()
"""The upload root of the tests: pytest's temporary folders live below it."""


def make_image(folder: Path, name: str, size: int = 3000, seed: int = 0) -> Path:
    """A file of ``size`` bytes whose content depends on ``name`` and ``seed``."""
    block = (name.encode() + bytes([seed % 256])) * (size // (len(name) + 1) + 1)
    path = folder / name
    path.write_bytes(block[:size])
    return path


def services_config(**base_urls: str) -> RecipesConfig:
    """A ``[recipes]`` section pointing the built-ins at fakes, with the test credentials;
    keyword names use ``_`` for ``.`` (``imx_to`` → ``imx.to``)."""
    creds = {
        "imx.to": {"api_key": IMX_KEY, "username": IMX_USER, "password": IMX_PASS},
        "vipr.im": {"username": VIPR_USER, "password": VIPR_PASS},
        "imagebam": {"email": BAM_EMAIL, "password": BAM_PASS},
        "vbulletin": {"username": FORUM_USER, "password": FORUM_PASS},
    }
    services = {}
    for key, url in base_urls.items():
        sid = {"imx_to": "imx.to", "pixhost_to": "pixhost.to", "vipr_im": "vipr.im"}.get(key, key)
        # the IMX web site (galleries) is served by the same fake as its API
        options = {"web_url": url} if sid == "imx.to" else {}
        services[sid] = ServiceConfig(
            base_url=url, credentials=creds.get(sid, {}), options=options, rate=50.0, burst=50
        )
    return RecipesConfig(services=services, global_rate=0.0, roots=[TEST_ROOT])


@asynccontextmanager
async def uploader(**base_urls: str) -> AsyncIterator[Uploader]:
    """An :class:`Uploader` with the built-in recipes pointed at the fakes' ``base_urls``
    (``services_config``); closed on exit."""
    config = services_config(**base_urls)
    up = Uploader(configured_recipes(config), config, timeout=30.0)
    try:
        yield up
    finally:
        await up.aclose()
