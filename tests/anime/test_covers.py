"""Series covers: fetched from the provider (a real HTTP server on 127.0.0.1) through the
politeness gate, checked to be an image, cached in a folder, refused when foreign or broken."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from fakes.anime_site import FakeProviderSite, catalogue, open_fake_provider
from hathd.anime.covers import (
    MAX_COVER,
    RETRY_AFTER,
    CoverCache,
    CoverError,
    allowed_url,
    check_image,
    sniff,
)
from hathd.anime.fetch import ProviderFetcher
from hathd.anime.gate import DomainGate
from hathd.engine.lanes import LaneSettings


def png(width: int = 24, height: int = 36, colour: tuple[int, int, int] = (200, 40, 90)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (20, 30), (10, 120, 200)).save(out, format="JPEG")
    return out.getvalue()


def test_sniff_and_check() -> None:
    assert sniff(png()) == "image/png"
    assert sniff(jpeg()) == "image/jpeg"
    assert sniff(b"GIF89a....") == "image/gif"
    assert sniff(b"RIFF\x10\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff(b"<svg xmlns=...") is None
    assert check_image("image/png; charset=binary", png()) == "image/png"
    with pytest.raises(CoverError, match="Content-Type 'text/html'"):
        check_image("text/html", png())
    with pytest.raises(CoverError, match="not image/jpeg"):
        check_image("image/jpeg", png())  # the bytes must agree with the declared type
    with pytest.raises(CoverError, match="image/svg"):
        check_image("image/svg+xml", b"<svg/>")


def test_allowed_url() -> None:
    assert allowed_url("https://aniworld.to/public/img/cover/x.jpg", "aniworld.to")
    assert allowed_url("https://img.aniworld.to/x.jpg", "aniworld.to")
    assert not allowed_url("https://evil.example/x.jpg", "aniworld.to")
    assert not allowed_url("https://notaniworld.to/x.jpg", "aniworld.to")
    assert not allowed_url("file:///etc/passwd", "aniworld.to")
    assert not allowed_url("ftp://aniworld.to/x.jpg", "aniworld.to")


@pytest.fixture
async def site() -> AsyncIterator[FakeProviderSite]:
    async with open_fake_provider(FakeProviderSite(series=catalogue())) as fake:
        yield fake


@pytest.fixture
async def fetcher() -> AsyncIterator[ProviderFetcher]:
    client = ProviderFetcher(DomainGate(default=LaneSettings(concurrency=1, rate=50, burst=5)))
    yield client
    await client.aclose()


def cover_requests(site: FakeProviderSite) -> list[str]:
    return [p for _, p in site.requests if p.startswith("/public/img/cover/")]


async def test_cover_is_fetched_once_and_cached(
    site: FakeProviderSite, fetcher: ProviderFetcher, tmp_path: Path
) -> None:
    image = png()
    site.covers["frieren"] = ("image/png", image)
    covers = CoverCache(tmp_path / "covers", fetcher)
    url = f"{site.base_url}/public/img/cover/frieren-cover.jpg"
    assert await covers.get("frieren", url, "127.0.0.1") == (image, "image/png")
    assert await covers.get("frieren", url, "127.0.0.1") == (image, "image/png")
    assert len(cover_requests(site)) == 1, "the second answer came from the cache"
    [kept] = (tmp_path / "covers").iterdir()
    assert kept.name.startswith("frieren-")
    assert kept.suffix == ".png"
    assert kept.read_bytes() == image
    # a new cache over the same folder (a restart) serves the file without a request
    again = CoverCache(tmp_path / "covers", fetcher)
    assert await again.get("frieren", url, "127.0.0.1") == (image, "image/png")
    assert len(cover_requests(site)) == 1
    # a changed cover URL fetches the new image and drops the old file
    site.covers["frieren"] = ("image/jpeg", jpeg())
    moved = url + "?v=2"
    assert await covers.get("frieren", moved, "127.0.0.1") == (jpeg(), "image/jpeg")
    assert [p.suffix for p in (tmp_path / "covers").iterdir()] == [".jpg"]


async def test_broken_covers_give_none_and_are_not_refetched_at_once(
    site: FakeProviderSite, fetcher: ProviderFetcher, tmp_path: Path
) -> None:
    now = [1000.0]
    covers = CoverCache(tmp_path / "covers", fetcher, clock=lambda: now[0])
    base = f"{site.base_url}/public/img/cover"
    site.covers["html"] = ("text/html", b"<html>not an image</html>")
    site.covers["liar"] = ("image/png", b"<script>alert(1)</script>")
    site.covers["huge"] = ("image/png", png()[:8] + b"\0" * MAX_COVER)
    for key in ("html", "liar", "huge", "absent"):
        assert await covers.get(key, f"{base}/{key}-cover.jpg", "127.0.0.1") is None, key
    folder = tmp_path / "covers"
    assert not folder.exists() or not list(folder.iterdir()), "nothing broken is kept"
    asked = len(cover_requests(site))
    assert asked == 4
    # a failure is remembered: no new request until RETRY_AFTER has passed
    site.covers["absent"] = ("image/png", png())
    assert await covers.get("absent", f"{base}/absent-cover.jpg", "127.0.0.1") is None
    assert len(cover_requests(site)) == asked
    now[0] += RETRY_AFTER + 1
    assert await covers.get("absent", f"{base}/absent-cover.jpg", "127.0.0.1") is not None
    # foreign hosts, no URL and hostile keys are refused without any request
    assert await covers.get("frieren", "http://127.0.0.2:9/x.png", "127.0.0.1") is None
    assert await covers.get("frieren", None, "127.0.0.1") is None
    assert await covers.get("../x", f"{base}/absent-cover.jpg", "127.0.0.1") is None
    assert len(cover_requests(site)) == asked + 1
