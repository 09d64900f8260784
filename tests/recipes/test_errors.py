"""Retries, rate limits, refused logins, refused files and secret redaction."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from fakes.imagehost_setup import BAM_PASS, IMX_KEY, VIPR_PASS, services_config
from fakes.imagehosts import FakeImageBam, FakeImx, FakeVipr
from hathd.errors import ConfigError, PermanentError, RateLimitedError, RetryableError
from hathd.recipes.config import RecipesConfig, ServiceConfig
from hathd.recipes.loader import configured_recipes, parse_recipe_text
from hathd.recipes.model import Recipe, Step
from hathd.recipes.plan import FileRefusedError
from hathd.recipes.runner import ServiceSession
from hathd.recipes.uploader import Uploader


def fast(recipe: Recipe, **retry: Any) -> Recipe:
    """``recipe`` with near-zero backoff (and any other retry settings given)."""
    policy = attrs.evolve(recipe.retry, initial_backoff=0.01, max_backoff=0.05, **retry)
    return attrs.evolve(recipe, retry=policy)


@asynccontextmanager
async def session_for(service: str, base_url: str, **retry: Any) -> AsyncIterator[ServiceSession]:
    config = services_config(**{service.replace(".", "_"): base_url})
    recipes = configured_recipes(config)
    recipes[service] = fast(recipes[service], **retry)
    up = Uploader(recipes, config, timeout=30.0)
    try:
        yield up.session(service)
    finally:
        await up.aclose()


async def test_429_with_retry_after_is_waited_then_retried(
    imx: FakeImx, images: list[Path]
) -> None:
    imx.inject("/v1/upload.php", 429, headers={"Retry-After": "1"})
    async with session_for("imx.to", imx.base_url) as session:
        with trio.fail_after(30):
            start = trio.current_time()
            result = await session.upload(images[0])
            waited = trio.current_time() - start
    assert imx.lines() == ["POST /v1/upload.php", "POST /v1/upload.php"]
    assert waited >= 0.95  # the 1 s Retry-After, not the 0.01 s backoff
    assert result.url.startswith("https://imx.to/i/")
    assert session.stats.retries == 1
    # the retried request is complete again (a fresh body stream)
    assert imx.last.files["image"].data == images[0].read_bytes()


async def test_5xx_retried_as_the_recipe_says(imx: FakeImx, images: list[Path]) -> None:
    imx.inject("/v1/upload.php", 503, times=2)
    imx.inject("/v1/upload.php", 500, times=1)
    async with session_for("imx.to", imx.base_url, max_retries=3) as session:
        with trio.fail_after(30):
            result = await session.upload(images[0])
    assert len(imx.requests) == 4
    assert session.stats.retries == 3
    assert result.url.startswith("https://imx.to/i/")


async def test_5xx_beyond_max_retries_is_retryable(imx: FakeImx, images: list[Path]) -> None:
    imx.inject("/v1/upload.php", 502, times=5)
    async with session_for("imx.to", imx.base_url, max_retries=2) as session:
        with trio.fail_after(30), pytest.raises(RetryableError) as caught:
            await session.upload(images[0])
    assert not isinstance(caught.value, RateLimitedError)
    assert "HTTP 502 after 2 retries" in str(caught.value)
    assert len(imx.requests) == 3


async def test_non_retryable_code_is_not_retried(imx: FakeImx, images: list[Path]) -> None:
    imx.inject("/v1/upload.php", 503, times=1)
    async with session_for("imx.to", imx.base_url, retryable_codes=[429]) as session:
        with trio.fail_after(30), pytest.raises(RetryableError, match="HTTP 503"):
            await session.upload(images[0])
    assert len(imx.requests) == 1


async def test_429_beyond_max_retries_is_rate_limited(imx: FakeImx, images: list[Path]) -> None:
    imx.inject("/v1/upload.php", 429, headers={"Retry-After": "0"}, times=3)
    async with session_for("imx.to", imx.base_url, max_retries=1) as session:
        with trio.fail_after(30), pytest.raises(RateLimitedError) as caught:
            await session.upload(images[0])
    assert caught.value.retry_after == 0.0
    assert len(imx.requests) == 2


async def test_long_retry_after_goes_back_to_the_engine(imx: FakeImx, images: list[Path]) -> None:
    imx.inject("/v1/upload.php", 429, headers={"Retry-After": "3600"})
    async with session_for("imx.to", imx.base_url) as session:
        with trio.fail_after(30), pytest.raises(RateLimitedError) as caught:
            await session.upload(images[0])
    assert caught.value.retry_after == 3600.0
    assert len(imx.requests) == 1


async def test_network_error_is_retried_then_retryable(images: list[Path]) -> None:
    with trio.socket.socket() as sock:  # a port nothing listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with session_for("imx.to", f"http://127.0.0.1:{port}", max_retries=2) as session:
        with trio.fail_after(30), pytest.raises(RetryableError, match="ConnectError"):
            await session.upload(images[0])
    assert session.stats.retries == 2
    assert session.stats.requests == 3


async def test_403_on_login_is_permanent_and_clear(
    imagebam: FakeImageBam, images: list[Path]
) -> None:
    config = RecipesConfig(
        services={
            "imagebam": ServiceConfig(
                base_url=imagebam.base_url,
                credentials={"email": "bam@example.org", "password": "wrong-password-1"},
            )
        }
    )
    up = Uploader(configured_recipes(config), config, timeout=30.0)
    try:
        with trio.fail_after(30), pytest.raises(PermanentError) as caught:
            await up.session("imagebam").upload(images[0])
    finally:
        await up.aclose()
    message = str(caught.value)
    assert "step 'login'" in message
    assert "login refused (HTTP 403)" in message
    assert "check the credentials of service 'imagebam'" in message
    assert "wrong-password-1" not in message
    assert imagebam.lines() == ["GET /auth/login", "POST /auth/login"]


async def test_secret_echoed_by_the_host_is_redacted(
    imagebam: FakeImageBam, images: list[Path]
) -> None:
    imagebam.inject("/auth/login", 403, body=f"bad password {BAM_PASS} for you".encode())
    async with session_for("imagebam", imagebam.base_url) as session:
        with trio.fail_after(30), pytest.raises(PermanentError) as caught:
            await session.upload(images[0])
    assert BAM_PASS not in str(caught.value)
    assert "bad password *** for you" in str(caught.value)


async def test_wrong_vipr_password_fails_on_missing_sess_id(
    vipr: FakeVipr, images: list[Path]
) -> None:
    config = RecipesConfig(
        services={
            "vipr.im": ServiceConfig(
                base_url=vipr.base_url,
                credentials={"username": "viprfan", "password": "not-" + VIPR_PASS},
            )
        }
    )
    up = Uploader(configured_recipes(config), config, timeout=30.0)
    try:
        with trio.fail_after(30), pytest.raises(PermanentError) as caught:
            await up.session("vipr.im").upload(images[0])
    finally:
        await up.aclose()
    assert "step 'home'" in str(caught.value)
    assert "could not extract 'sess_id'" in str(caught.value)
    assert VIPR_PASS not in str(caught.value)
    # no upload was attempted: GET / was redirected to the login page
    assert vipr.lines() == ["POST /login.html", "GET /", "GET /login.html"]


async def test_missing_credential_names_the_config_key(images: list[Path]) -> None:
    config = RecipesConfig()
    up = Uploader(configured_recipes(config), config)
    try:
        with pytest.raises(PermanentError, match=r'\[recipes.services."imx.to"\].credentials'):
            await up.session("imx.to").upload(images[0])
    finally:
        await up.aclose()


async def test_host_rejection_is_permanent_with_its_message(
    imx: FakeImx, images: list[Path]
) -> None:
    config = RecipesConfig(
        services={
            "imx.to": ServiceConfig(base_url=imx.base_url, credentials={"api_key": "bad-key-123"})
        }
    )
    up = Uploader(configured_recipes(config), config, timeout=30.0)
    try:
        with trio.fail_after(30), pytest.raises(PermanentError) as caught:
            await up.session("imx.to").upload(images[0])
    finally:
        await up.aclose()
    assert "HTTP 401" in str(caught.value)
    assert "bad-key-123" not in str(caught.value)


async def test_hostile_reply_links_never_become_results(imx: FakeImx, images: list[Path]) -> None:
    """A host answering with a ``javascript:`` image URL fails the upload (nothing reaches the
    HTML/BBCode output); a ``javascript:`` thumbnail next to a good URL is dropped."""
    hostile = b'{"status": "success", "data": {"image_url": "javascript:alert(1)//"}}'
    imx.inject("/v1/upload.php", 200, headers={"Content-Type": "application/json"}, body=hostile)
    good_url_bad_thumb = (
        b'{"status": "success", "data": {"image_url": "https://imx.to/i/ok",'
        b' "thumbnail_url": "JavaScript:alert(2)"}}'
    )
    imx.inject(
        "/v1/upload.php", 200, headers={"Content-Type": "application/json"}, body=good_url_bad_thumb
    )
    async with session_for("imx.to", imx.base_url) as session:
        with trio.fail_after(30), pytest.raises(PermanentError) as caught:
            await session.upload(images[0])
        with trio.fail_after(30):
            result = await session.upload(images[0])
    assert "not an http(s) URL: 'javascript:alert(1)//'" in str(caught.value)
    assert (result.url, result.thumb) == ("https://imx.to/i/ok", "")


EVIL = """
id = "evil"
base_url = "{base}"
[upload]
url = "/v1/upload.php"
headers = {{ "X-API-KEY" = "{key}" }}
[upload.fields.image]
type = "file"
value = "{value}"
[upload.response]
url = "{{u}}"
extract = {{ u = "json:data.image_url" }}
"""


@pytest.mark.parametrize(
    "value",
    ["/etc/passwd", "{file}/../../secret.txt", "{base_url}", "{file}/../photo1.jpg"],
)
def test_recipe_naming_another_file_is_rejected_when_loaded(value: str) -> None:
    text = EVIL.format(base="http://127.0.0.1:9", key=IMX_KEY, value=value)
    with pytest.raises(ConfigError) as caught:
        parse_recipe_text(text, source="evil.toml")
    assert caught.value.problems == [
        (
            "evil.toml: upload.fields.image.value",
            "a file field sends the job's own file and nothing else: leave value out or"
            f" write '{{file}}'; got {value!r}",
        )
    ]


async def test_recipe_built_in_code_cannot_read_another_file_nor_log_in(
    imx: FakeImx, images: list[Path]
) -> None:
    """A recipe that bypassed the loader is refused before any request, login included."""
    loaded = parse_recipe_text(EVIL.format(base=imx.base_url, key=IMX_KEY, value="{file}"))
    field = attrs.evolve(loaded.upload.fields["image"], value="{file}/../photo1.jpg")
    recipe = attrs.evolve(
        loaded,
        login=[Step(name="login", url="/login", method="POST")],
        upload=attrs.evolve(loaded.upload, fields={"image": field}),
    )
    session = ServiceSession(recipe, {}, timeout=30.0)
    try:
        with trio.fail_after(30), pytest.raises(FileRefusedError) as caught:
            await session.upload(images[0])
    finally:
        await session.aclose()
    assert "may read only the job's own file" in str(caught.value)
    assert imx.requests == []


async def test_recipe_may_name_its_own_file_explicitly(imx: FakeImx, images: list[Path]) -> None:
    recipe = parse_recipe_text(EVIL.format(base=imx.base_url, key=IMX_KEY, value="{file}"))
    session = ServiceSession(recipe, {}, timeout=30.0)
    try:
        with trio.fail_after(30):
            result = await session.upload(images[0])
    finally:
        await session.aclose()
    assert result.url.startswith("https://imx.to/i/")


async def test_file_above_the_size_limit_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    with big.open("wb") as f:
        f.truncate(10485761)
    config = services_config(imx_to="http://127.0.0.1:9")
    up = Uploader(configured_recipes(config), config)
    try:
        with pytest.raises(PermanentError, match=r"above imx\.to's limit of 10485760 bytes"):
            await up.session("imx.to").upload(big)
        with pytest.raises(PermanentError, match="cannot read"):
            await up.session("imx.to").upload(tmp_path / "missing.jpg")
    finally:
        await up.aclose()


async def test_secret_in_a_query_string_is_redacted_from_http_logs(
    imx: FakeImx, images: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    text = EVIL.format(base=imx.base_url, key=IMX_KEY, value="{file}").replace(
        'url = "/v1/upload.php"', 'url = "/v1/upload.php"\nquery = { key = "{api_key}" }'
    )
    text += '\n[[credentials]]\nname = "api_key"\n'
    recipe = parse_recipe_text(text)
    session = ServiceSession(recipe, {"api_key": "query-secret-42"}, timeout=30.0)
    caplog.set_level(logging.DEBUG, logger="httpx")
    try:
        with trio.fail_after(30):
            await session.upload(images[0])
    finally:
        await session.aclose()
    assert imx.last.query == {"key": "query-secret-42"}
    logged = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert any("key=***" in line for line in logged), logged
    assert not any("query-secret-42" in line for line in logged)
