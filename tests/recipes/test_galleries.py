"""Galleries per folder on every built-in host that has them, against their fakes: created
before the first file, every file in it, finalized or renamed after the last, the link."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import trio
from asyncclick.testing import CliRunner

from fakes.imagehost_setup import IMX_KEY, IMX_PASS, IMX_USER, VIPR_USER, services_config, uploader
from fakes.imagehost_stack import upload_stack
from fakes.imagehosts import (
    FakeImageBam,
    FakeImx,
    FakePixhost,
    FakeTurbo,
    FakeVipr,
    content_id,
    running,
)
from hathd.errors import PermanentError
from hathd.recipes.cli import upload
from hathd.recipes.config import ServiceConfig
from hathd.recipes.loader import configured_recipes
from hathd.recipes.uploader import Uploader


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
            results = [await session.upload(path, extra=gallery) for path in images]
            found = await session.finalize_gallery(gallery)
    assert imagebam.galleries[ident]["title"] == "Trip [1]"
    assert imagebam.galleries[ident]["images"] == [p.name for p in images]
    session_id = gallery["gallery_id"]
    assert imagebam.upload_sessions[session_id] == ident
    # until the uploads end, the link is the session's page; afterwards the gallery's own,
    # read from that page's a#gallery-name
    assert gallery["gallery_url"] == (
        f"https://www.imagebam.com/upload/complete?session={session_id}"
    )
    assert found == {"gallery_url": f"https://www.imagebam.com/gallery/{ident}"}
    assert imagebam.session_forms[-1] == {
        "thumbnail_size": "2",
        "content_type": "sfw",
        "comments_enabled": "false",
        "gallery": "true",
        "gallery_token": "",
        "gallery_title": "Trip [1]",
    }
    # every upload is followed by its result page (the gallery session's, listing the files
    # so far), and the gallery's link is read once after the last file
    assert imagebam.lines()[-7:] == [
        *["POST /upload", "GET /upload/complete"] * 3,
        "GET /upload/complete",
    ]
    assert {r.query["session"] for r in imagebam.requests if r.path == "/upload/complete"} == {
        session_id
    }
    gallery_token = gallery["upload_token"]
    assert imagebam.upload_tokens[gallery_token] == ident
    assert [r.form["data"] for r in imagebam.requests if r.path == "/upload"] == [gallery_token] * 3
    # each file got its own links, not the first or last of the page
    assert [(r.url, r.thumb) for r in results] == [
        imagebam.links(content_id(p.read_bytes())) for p in images
    ]


async def test_turbo_gallery_is_one_upload_id_and_its_link_comes_from_the_result_page(
    turbo: FakeTurbo, images: list[Path]
) -> None:
    async with uploader(turboimagehost=turbo.base_url) as up:
        session = up.session("turboimagehost")
        with trio.fail_after(30):
            gallery = await session.create_gallery("Beach 2026")
            results = [await session.upload(path, extra=gallery) for path in images]
            found = await session.finalize_gallery(gallery)
    upload_id = gallery["gallery_id"]
    assert re.fullmatch(r"[0-9a-z]{20}", upload_id)
    assert "gallery_url" not in gallery  # no request made it: known only at the end
    assert turbo.lines()[-1] == "GET /html5_upload_result.tu"
    assert turbo.requests[-1].query == {"upload_id": upload_id}
    uploads = [r for r in turbo.requests if r.path == "/upload_html5.tu"]
    assert [r.form for r in uploads] == [
        {
            "upload_id": upload_id,
            "thumb_size": "180",
            "imcontent": "all",
            "galleryAN": "1",
            "galleryN": "Beach 2026",
        }
    ] * 3
    assert turbo.uploads[upload_id]["images"] == [
        (p.name, content_id(p.read_bytes())) for p in images
    ]
    assert found == {"gallery_url": turbo.album_url(upload_id)}
    assert [(r.url, r.thumb) for r in results] == [
        turbo.links(content_id(p.read_bytes()), p.name) for p in images
    ]


async def test_result_page_without_the_links_is_a_clear_error(
    vipr: FakeVipr, turbo: FakeTurbo, images: list[Path]
) -> None:
    """A result page that lacks a value the recipe reads fails the upload naming the recipe,
    the step and the value; no result with an empty link is made."""
    turbo.inject("/html5_upload_result.tu", 200, body=b"<html><body>No images</body></html>")
    async with uploader(vipr_im=vipr.base_url, turboimagehost=turbo.base_url) as up:
        with trio.fail_after(30):
            session = up.session("vipr.im")
            # the login's own POST / is not a result page: log in first
            await session.login()
            vipr.inject("/", 200, body=b"<html><body>Files uploaded</body></html>")
            with pytest.raises(PermanentError) as caught:
                await session.upload(images[0])
            with pytest.raises(PermanentError) as turbo_caught:
                await up.session("turboimagehost").upload(images[0])
    message = str(caught.value)
    assert message.startswith("vipr.im: upload.result step 'upload_result' (HTTP 200): field")
    assert "'link_url'" in message
    turbo_message = str(turbo_caught.value)
    assert turbo_message.startswith("turboimagehost: upload.result step 'result_page'")
    assert "'image_url'" in turbo_message


@pytest.mark.parametrize(
    "service", ["imx.to", "vipr.im", "imagebam", "pixhost.to", "turboimagehost"]
)
async def test_one_gallery_per_folder_through_the_cli(service: str, sets: list[Path]) -> None:
    """``hathd upload set1 set2 --host SERVICE --per-folder --wait``: each folder becomes a
    gallery named after it holding its files, finalized, and the output gives each file's
    links and the gallery's link exactly as the host's pages show them."""
    from fakes.imagehost_setup import BAM_EMAIL, BAM_PASS, VIPR_PASS

    fakes = {
        "imx.to": lambda: FakeImx(IMX_KEY, IMX_USER, IMX_PASS),
        "vipr.im": lambda: FakeVipr(VIPR_USER, VIPR_PASS),
        "imagebam": lambda: FakeImageBam(BAM_EMAIL, BAM_PASS),
        "pixhost.to": FakePixhost,
        "turboimagehost": FakeTurbo,
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
    galleries: dict[str, str] = {}
    links: dict[str, tuple[str, str]] = {}
    if isinstance(host, FakeImx):
        held = {g["name"]: g["images"] for g in host.galleries.values()}
        galleries = {g["name"]: f"https://imx.to/g/{i}" for i, g in host.galleries.items()}
        for folder in sets:
            for path in folder.iterdir():
                ident = content_id(path.read_bytes())
                links[str(path)] = (
                    f"https://imx.to/i/{ident}",
                    f"https://imx.to/u/t/2/{ident}.jpg",
                )
    elif isinstance(host, FakeVipr):
        held = {f["name"]: f["images"] for f in host.folders.values()}
        galleries = {
            f["name"]: f"https://vipr.im/users/{VIPR_USER}/{i}" for i, f in host.folders.items()
        }
        for folder in sets:
            for path in folder.iterdir():
                links[str(path)] = host.links(content_id(path.read_bytes()), path.name)
    elif isinstance(host, FakeImageBam):
        held = {g["title"]: g["images"] for g in host.galleries.values()}
        galleries = {
            g["title"]: f"https://www.imagebam.com/gallery/{i}" for i, g in host.galleries.items()
        }
        for folder in sets:
            for path in folder.iterdir():
                links[str(path)] = host.links(content_id(path.read_bytes()))
    elif isinstance(host, FakeTurbo):
        held = {u["gallery"]: [n for n, _i in u["images"]] for u in host.uploads.values()}
        galleries = {u["gallery"]: host.album_url(i) for i, u in host.uploads.items()}
        for folder in sets:
            for path in folder.iterdir():
                links[str(path)] = host.links(content_id(path.read_bytes()), path.name)
    else:
        assert isinstance(host, FakePixhost)
        held = {g["name"]: g["images"] for g in host.galleries.values()}
        assert all(g["finalized"] for g in host.galleries.values())
        galleries = {
            g["name"]: f"https://pixhost.to/gallery/{h}" for h, g in host.galleries.items()
        }
        for folder in sets:
            for path in folder.iterdir():
                ident = content_id(path.read_bytes())
                links[str(path)] = (
                    f"https://pixhost.to/show/{ident}/{path.name}",
                    f"https://t0.pixhost.to/thumbs/{ident}/{path.name}",
                )
    assert {k: sorted(v) for k, v in held.items()} == {
        "set1": ["img0.jpg", "img1.jpg", "img2.jpg"],
        "set2": ["img0.jpg", "img1.jpg", "img2.jpg"],
    }
    for summary in summaries:
        assert summary["state"] == "done"
        gallery = summary["gallery"]
        assert gallery["finalize_error"] is None
        assert gallery["gallery_url"] == galleries[gallery["name"]]
        assert summary["gallery_output"]["links"] == galleries[gallery["name"]]
        assert [(i["url"], i["thumb"]) for i in summary["items"]] == [
            links[i["path"]] for i in summary["items"]
        ]
        assert len(summary["items"]) == 3


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


async def test_upload_refused_before_its_result_page_gives_the_hosts_message(
    vipr: FakeVipr, images: list[Path]
) -> None:
    """An upload reply without the hand-over (no file code) is a refused upload carrying the
    host's own message; no result request is sent."""
    async with uploader(vipr_im=vipr.base_url) as up:
        session = up.session("vipr.im")
        with trio.fail_after(30):
            await session.login()
            vipr.inject(
                "/cgi-bin/upload.cgi",
                200,
                body=b'<html><div class="err">Quota exceeded</div></html>',
            )
            with pytest.raises(PermanentError) as caught:
                await session.upload(images[0])
    assert str(caught.value) == "vipr.im: upload of photo0.jpg refused: Quota exceeded"
    assert vipr.lines()[-1] == "POST /cgi-bin/upload.cgi"
