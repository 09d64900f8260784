"""Galleries per folder on every built-in host that has them, against their fakes: created
before the first file, every file in it, finalized or renamed after the last, the link."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio
from asyncclick.testing import CliRunner

from fakes.imagehost_setup import IMX_KEY, IMX_PASS, IMX_USER, VIPR_USER, services_config
from fakes.imagehost_stack import upload_stack
from fakes.imagehosts import FakeImageBam, FakeImx, FakePixhost, FakeVipr, content_id, running
from hathd.errors import PermanentError
from hathd.recipes.cli import upload
from hathd.recipes.config import ServiceConfig
from hathd.recipes.loader import configured_recipes
from hathd.recipes.uploader import Uploader


@asynccontextmanager
async def uploader(**base_urls: str) -> AsyncIterator[Uploader]:
    config = services_config(**base_urls)
    up = Uploader(configured_recipes(config), config, timeout=30.0)
    try:
        yield up
    finally:
        await up.aclose()


async def test_imx_gallery_made_on_the_web_site_then_used_by_the_api(
    imx: FakeImx, images: list[Path]
) -> None:
    async with uploader(imx_to=imx.base_url) as up:
        session = up.session("imx.to")
        with trio.fail_after(30):
            gallery = await session.create_gallery("Holiday 2026")
            for path in images[:2]:
                await session.upload(path, extra=gallery)
            await session.finalize_gallery(gallery)
    [ident] = imx.galleries
    assert gallery["gallery_id"] == ident
    assert gallery["gallery_url"] == f"https://imx.to/g/{ident}"
    assert imx.galleries[ident] == {
        "name": "Holiday 2026",
        "public": True,
        "images": ["photo0.jpg", "photo1.jpg"],
    }
    assert imx.lines() == [
        "POST /login.php",
        "GET /user/dashboard",
        "POST /user/gallery/add",
        "GET /user/gallery/manage",
        "POST /v1/upload.php",
        "POST /v1/upload.php",
    ]
    assert imx.requests[0].form == {
        "usr_email": IMX_USER,
        "pwd": IMX_PASS,
        "remember": "1",
        "doLogin": "Login",
    }
    upload_form = imx.requests[-1].form
    assert upload_form["gallery_id"] == ident
    assert imx.requests[-1].headers["x-api-key"] == IMX_KEY


async def test_imx_gallery_without_web_login_is_refused_before_any_request(
    imx: FakeImx,
) -> None:
    config = services_config(imx_to=imx.base_url)
    settings = config.services["imx.to"]
    config.services["imx.to"] = ServiceConfig(
        base_url=settings.base_url,
        credentials={"api_key": IMX_KEY},
        options=settings.options,
    )
    up = Uploader(configured_recipes(config), config, timeout=30.0)
    try:
        with pytest.raises(PermanentError, match=r"galleries on 'imx.to' need credential"):
            await up.session("imx.to").create_gallery("x")
    finally:
        await up.aclose()
    assert imx.requests == []


async def test_imx_wrong_web_password_is_a_clear_error(imx: FakeImx) -> None:
    imx.password = "another"
    async with uploader(imx_to=imx.base_url) as up:
        with pytest.raises(PermanentError) as caught:
            await up.session("imx.to").create_gallery("x")
    assert "web_login" in str(caught.value)
    assert "login may have been refused" in str(caught.value)
    assert IMX_PASS not in str(caught.value)
    assert imx.galleries == {}


async def test_vipr_gallery_is_a_folder_made_by_ajax_new_folder(
    vipr: FakeVipr, images: list[Path]
) -> None:
    async with uploader(vipr_im=vipr.base_url) as up:
        session = up.session("vipr.im")
        with trio.fail_after(30):
            gallery = await session.create_gallery("Beach <2026> & co")
            for path in images:
                await session.upload(path, extra=gallery)
            await session.finalize_gallery(gallery)
    assert vipr.folders == {
        "101": {"name": "Beach <2026> & co", "images": [p.name for p in images]},
    }
    assert gallery["gallery_id"] == "101"
    assert gallery["gallery_url"] == f"https://vipr.im/users/{VIPR_USER}/101"
    # login, its redirect, the home page (sess_id), then the gallery
    assert vipr.lines()[:4] == ["POST /login.html", "GET /", "GET /", "POST /"]
    create = vipr.requests[3]
    assert create.form == {"op": "ajax_new_folder", "folder": "Beach <2026> & co"}
    assert create.headers["x-requested-with"] == "XMLHttpRequest"
    assert [r.form.get("fld_id") for r in vipr.requests if r.path == "/cgi-bin/upload.cgi"] == [
        "101"
    ] * 3


async def test_vipr_gallery_refused_is_a_clear_error(vipr: FakeVipr) -> None:
    """A reply that is not an ``<option>`` (the site's error text) fails the creation with the
    step's name, and no upload is made."""
    async with uploader(vipr_im=vipr.base_url) as up:
        with pytest.raises(PermanentError) as caught:
            await up.session("vipr.im").create_gallery("   ")
    assert "new_folder" in str(caught.value)
    assert vipr.folders == {}
    assert "/cgi-bin/upload.cgi" not in [r.path for r in vipr.requests]


async def test_imagebam_gallery_named_by_its_upload_session(
    imagebam: FakeImageBam, images: list[Path]
) -> None:
    async with uploader(imagebam=imagebam.base_url) as up:
        session = up.session("imagebam")
        with trio.fail_after(30):
            gallery = await session.create_gallery("Trip [1]")
            [ident] = imagebam.galleries
            assert imagebam.galleries[ident]["title"] == "Trip [1]"  # named at once
            for path in images:
                await session.upload(path, extra=gallery)
            await session.finalize_gallery(gallery)
            async with httpx.AsyncClient() as client:
                page = await client.get(
                    gallery["gallery_url"].replace("https://www.imagebam.com", imagebam.base_url)
                )
    assert imagebam.galleries[ident]["title"] == "Trip [1]"
    assert imagebam.galleries[ident]["images"] == [p.name for p in images]
    session_id = gallery["gallery_id"]
    assert imagebam.upload_sessions[session_id] == ident
    assert gallery["gallery_url"] == (
        f"https://www.imagebam.com/upload/complete?session={session_id}"
    )
    # the session's page links the gallery by its title
    assert page.status_code == 200
    assert f'<a id="gallery-name" href="https://www.imagebam.com/gallery/{ident}">' in page.text
    assert imagebam.session_forms[-1] == {
        "thumbnail_size": "2",
        "content_type": "sfw",
        "comments_enabled": "false",
        "gallery": "true",
        "gallery_token": "",
        "gallery_title": "Trip [1]",
    }
    # the gallery session's own upload token carries the files; no step runs afterwards
    # (the last request is the test's own look at the session's page)
    assert imagebam.lines()[-4:] == ["POST /upload"] * 3 + ["GET /upload/complete"]
    gallery_token = gallery["upload_token"]
    assert imagebam.upload_tokens[gallery_token] == ident
    assert [r.form["data"] for r in imagebam.requests if r.path == "/upload"] == [gallery_token] * 3


@pytest.mark.parametrize("service", ["imx.to", "vipr.im", "imagebam", "pixhost.to"])
async def test_one_gallery_per_folder_through_the_cli(service: str, sets: list[Path]) -> None:
    """``hathd upload set1 set2 --host SERVICE --per-folder --wait``: each folder becomes a
    gallery named after it holding its files, finalized, and the summary gives its link."""
    from fakes.imagehost_setup import BAM_EMAIL, BAM_PASS, VIPR_PASS

    fakes = {
        "imx.to": lambda: FakeImx(IMX_KEY, IMX_USER, IMX_PASS),
        "vipr.im": lambda: FakeVipr(VIPR_USER, VIPR_PASS),
        "imagebam": lambda: FakeImageBam(BAM_EMAIL, BAM_PASS),
        "pixhost.to": FakePixhost,
    }
    async with running(fakes[service]()) as host:
        key = service.replace(".", "_")
        async with upload_stack(services_config(**{key: host.base_url})) as stack:
            cli = await CliRunner().invoke(
                upload,
                [*map(str, sets), "--host", service, "--per-folder", "--wait", "--json"],
                obj=stack.cli,
            )
            assert cli.exit_code == 0, cli.output
    summaries = json.loads(cli.output)["batches"]
    names = [s["gallery"]["name"] for s in summaries]
    assert names == ["set1", "set2"]
    for summary in summaries:
        assert summary["state"] == "done"
        assert summary["gallery"]["finalize_error"] is None
        assert summary["gallery"]["gallery_url"].startswith("https://")
    if isinstance(host, FakeImx):
        held = {g["name"]: g["images"] for g in host.galleries.values()}
    elif isinstance(host, FakeVipr):
        held = {f["name"]: f["images"] for f in host.folders.values()}
    elif isinstance(host, FakeImageBam):
        held = {g["title"]: g["images"] for g in host.galleries.values()}
    else:
        assert isinstance(host, FakePixhost)
        held = {g["name"]: g["images"] for g in host.galleries.values()}
        assert all(g["finalized"] for g in host.galleries.values())
    assert {k: sorted(v) for k, v in held.items()} == {
        "set1": ["img0.jpg", "img1.jpg", "img2.jpg"],
        "set2": ["img0.jpg", "img1.jpg", "img2.jpg"],
    }


async def test_wait_prints_the_gallery_link_before_the_images(
    pixhost: FakePixhost, images: list[Path]
) -> None:
    async with upload_stack(services_config(pixhost_to=pixhost.base_url)) as stack:
        cli = await CliRunner().invoke(
            upload,
            [str(images[0]), "--to", "pixhost.to", "--gallery", "Trip [1]", "--wait"],
            obj=stack.cli,
        )
        assert cli.exit_code == 0, cli.output
    ident = content_id(images[0].read_bytes())
    assert cli.stdout.splitlines() == [
        "[url=https://pixhost.to/gallery/g0001]Trip (1)[/url]",
        f"[url=https://pixhost.to/show/{ident}/photo0.jpg]"
        f"[img]https://t0.pixhost.to/thumbs/{ident}/photo0.jpg[/img][/url]",
    ]


def test_gallery_line_in_each_format() -> None:
    from hathd.recipes.output import render_gallery

    url = "https://h.example/g/1?a=1&b=2"
    assert render_gallery("bbcode", "x [b]", url) == f"[url={url}]x (b)[/url]"
    assert render_gallery("html", "<i>", url) == (
        '<a href="https://h.example/g/1?a=1&amp;b=2">&lt;i&gt;</a>'
    )
    assert render_gallery("markdown", "a]b", url) == f"[a\\]b]({url})"
    assert render_gallery("links", "n", url) == url
    assert render_gallery("bbcode", "n", "javascript:alert(1)") == ""
    assert render_gallery("mine", "n", url) == ""
