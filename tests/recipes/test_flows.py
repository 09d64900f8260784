"""The five built-in flows against their local fakes, through the runner directly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio

from fakes.imagehost_setup import (
    BAM_EMAIL,
    BAM_PASS,
    IMX_KEY,
    VIPR_PASS,
    VIPR_USER,
    uploader,
)
from fakes.imagehosts import FakeImageBam, FakeImx, FakePixhost, FakeTurbo, FakeVipr, content_id
from hathd.recipes.runner import ServiceSession


async def test_imx_api_key_upload(imx: FakeImx, images: list[Path]) -> None:
    seen: list[tuple[int, int]] = []
    async with uploader(imx_to=imx.base_url) as up:
        with trio.fail_after(30):
            result = await up.session("imx.to").upload(
                images[0], progress=lambda d, t: seen.append((d, t))
            )
    ident = content_id(images[0].read_bytes())
    assert result.url == f"https://imx.to/i/{ident}"
    assert result.thumb == f"https://imx.to/u/t/2/{ident}.jpg"
    assert imx.lines() == ["POST /v1/upload.php"]
    rec = imx.last
    assert rec.headers["x-api-key"] == IMX_KEY
    assert rec.form == {"format": "json", "thumbnail_size": "2"}
    assert rec.files["image"].filename == "photo0.jpg"
    assert rec.files["image"].content_type == "image/jpeg"
    assert rec.files["image"].data == images[0].read_bytes()
    assert int(rec.headers["content-length"]) > images[0].stat().st_size
    assert "transfer-encoding" not in rec.headers
    size = images[0].stat().st_size
    assert seen[-1] == (seen[-1][1], seen[-1][1])
    assert seen[-1][1] > size
    assert any(d >= size for d, _t in seen)


async def test_pixhost_gallery_flow(pixhost: FakePixhost, images: list[Path]) -> None:
    async with uploader(pixhost_to=pixhost.base_url) as up:
        session = up.session("pixhost.to")
        with trio.fail_after(30):
            gallery = await session.create_gallery("Holiday 2026")
            results = [await session.upload(p, extra=gallery) for p in images[:2]]
            await session.finalize_gallery(gallery)
    assert gallery["gallery_id"] == "g0001"
    assert gallery["gallery_upload_hash"] == "u0001"
    assert pixhost.lines() == [
        "POST /galleries",
        "POST /images",
        "POST /images",
        "POST /galleries/g0001/finalize",
    ]
    assert pixhost.requests[0].form == {"gallery_name": "Holiday 2026"}
    assert pixhost.requests[1].form == {
        "content_type": "0",
        "max_th_size": "200",
        "gallery_hash": "g0001",
        "gallery_upload_hash": "u0001",
    }
    assert pixhost.requests[3].form == {"gallery_upload_hash": "u0001"}
    assert pixhost.galleries["g0001"]["finalized"] is True
    assert pixhost.galleries["g0001"]["images"] == ["photo0.jpg", "photo1.jpg"]
    for path, result in zip(images[:2], results, strict=True):
        ident = content_id(path.read_bytes())
        assert result.url == f"https://pixhost.to/show/{ident}/{path.name}"
        assert result.thumb == f"https://t0.pixhost.to/thumbs/{ident}/{path.name}"


async def test_pixhost_without_gallery_sends_no_gallery_fields(
    pixhost: FakePixhost, images: list[Path]
) -> None:
    async with uploader(pixhost_to=pixhost.base_url) as up:
        with trio.fail_after(30):
            await up.session("pixhost.to").upload(images[0])
    assert pixhost.last.form == {"content_type": "0", "max_th_size": "200"}
    assert pixhost.last.headers["accept"] == "application/json"


async def test_vipr_two_step_login_reused_across_files(vipr: FakeVipr, images: list[Path]) -> None:
    async with uploader(vipr_im=vipr.base_url) as up:
        session = up.session("vipr.im")
        with trio.fail_after(30):
            results = [await session.upload(p) for p in images]
    assert vipr.lines() == [
        "POST /login.html",
        "GET /",
        "GET /",
        *["POST /cgi-bin/upload.cgi", "POST /"] * 3,
    ]
    login = vipr.requests[0]
    assert login.form == {"op": "login", "redirect": "", "login": VIPR_USER, "password": VIPR_PASS}
    # the redirect after login and the explicit home step both carry the session cookie
    cookie = vipr.requests[1].cookies["xfss"]
    sess_id = vipr.sessions[cookie]
    uploads = [r for r in vipr.requests if r.path == "/cgi-bin/upload.cgi"]
    results_asked = [r for r in vipr.requests[3:] if r.path == "/"]
    # each upload is followed by XFileSharing's op=upload_result with the reply's file code
    assert [r.form for r in results_asked] == [
        {"op": "upload_result", "fn": content_id(p.read_bytes()), "st": "OK"} for p in images
    ]
    for rec in uploads:
        assert rec.cookies == {"xfss": cookie}
        assert rec.query == {"upload_type": "file"}
        assert rec.form == {
            "upload_type": "file",
            "sess_id": sess_id,
            "thumb_size": "170x170",
            "tos": "1",
        }
    assert session.stats.logins == 1
    # every hop, the redirect after login included, went through the rate limiter
    assert session.stats.requests == len(vipr.requests) == 9
    assert session.limiter.statistics().requests == 9
    for path, result in zip(images, results, strict=True):
        link, thumb = vipr.links(content_id(path.read_bytes()), path.name)
        assert (result.url, result.thumb, result.delete) == (link, thumb, "")


async def test_vipr_expired_session_logs_in_again(vipr: FakeVipr, images: list[Path]) -> None:
    async with uploader(vipr_im=vipr.base_url) as up:
        session = up.session("vipr.im")
        with trio.fail_after(30):
            await session.upload(images[0])
            vipr.expire_sessions()
            result = await session.upload(images[1])
    assert vipr.lines()[5:] == [
        "POST /cgi-bin/upload.cgi",  # refused: redirected to the login page
        "GET /login.html",
        "POST /login.html",
        "GET /",
        "GET /",
        "POST /cgi-bin/upload.cgi",
        "POST /",  # op=upload_result
    ]
    assert session.stats.logins == 2
    assert result.url.startswith("https://vipr.im/i/")


async def test_turbo_endpoint_discovered_in_javascript(
    turbo: FakeTurbo, images: list[Path]
) -> None:
    async with uploader(turboimagehost=turbo.base_url) as up:
        with trio.fail_after(30):
            results = [await up.session("turboimagehost").upload(p) for p in images[:2]]
    assert turbo.lines() == [
        "GET /",
        "POST /upload_html5.tu",
        "GET /html5_upload_result.tu",  # the reply's newUrl
        "GET /",
        "POST /upload_html5.tu",
        "GET /html5_upload_result.tu",
    ]
    first, second = turbo.requests[1], turbo.requests[4]
    # without a gallery every file gets an upload_id of its own, 20 characters of [0-9a-z]
    ids = [first.form["upload_id"], second.form["upload_id"]]
    assert ids[0] != ids[1]
    assert all(re.fullmatch(r"[0-9a-z]{20}", i) for i in ids)
    assert [turbo.requests[2].query, turbo.requests[5].query] == [{"upload_id": i} for i in ids]
    assert first.form == {"upload_id": ids[0], "thumb_size": "180", "imcontent": "all"}
    assert list(first.files) == ["qqfile"]
    for path, result in zip(images[:2], results, strict=True):
        page, thumb = turbo.links(content_id(path.read_bytes()), path.name)
        assert (result.url, result.thumb) == (page, thumb)


async def test_imagebam_four_step_csrf_login(imagebam: FakeImageBam, images: list[Path]) -> None:
    async with uploader(imagebam=imagebam.base_url) as up:
        session = up.session("imagebam")
        with trio.fail_after(30):
            results = [await session.upload(p) for p in images[:2]]
    assert imagebam.lines() == [
        "GET /auth/login",
        "POST /auth/login",
        "GET /",  # the redirect after login
        "GET /",  # the home step
        "POST /upload/session",
        "POST /upload",
        "GET /upload/complete",
        "POST /upload",
        "GET /upload/complete",
    ]
    ((key, sess),) = imagebam.sessions.items()
    login_page, login = imagebam.requests[0], imagebam.requests[1]
    assert login_page.cookies == {}
    assert login.cookies == {"imagebam_session": key}
    assert set(login.form) == {"_token", "email", "password", "remember"}
    assert login.form["email"] == BAM_EMAIL
    assert login.form["password"] == BAM_PASS
    assert login.form["_token"] != sess["token"]  # the token rotates at login
    upload_session = imagebam.requests[4]
    assert upload_session.headers["x-csrf-token"] == sess["token"]
    assert upload_session.headers["x-requested-with"] == "XMLHttpRequest"
    assert upload_session.form == {
        "thumbnail_size": "2",
        "content_type": "sfw",
        "comments_enabled": "false",
    }
    session_id = imagebam.token_sessions[sess["upload"]]
    for rec in imagebam.requests[5::2]:
        assert rec.headers["x-csrf-token"] == sess["token"]
        assert rec.form == {"data": sess["upload"], "_token": sess["token"]}
        assert list(rec.files) == ["files[0]"]
    # each upload's {"success": URL} is followed: the session's result page
    for rec in imagebam.requests[6::2]:
        assert rec.line == "GET /upload/complete"
        assert rec.query == {"session": session_id}
    for path, result in zip(images[:2], results, strict=True):
        view, thumb = imagebam.links(content_id(path.read_bytes()))
        assert (result.url, result.thumb, result.delete) == (view, thumb, "")


async def test_empty_and_odd_sized_files_arrive_intact(imx: FakeImx, tmp_path: Path) -> None:
    sizes = [0, 1, 256 * 1024 - 1, 256 * 1024, 256 * 1024 + 1, 700_001]
    files = []
    for size in sizes:
        path = tmp_path / f"f{size}.jpg"
        path.write_bytes(bytes(i % 251 for i in range(size)))
        files.append(path)
    async with uploader(imx_to=imx.base_url) as up:
        with trio.fail_after(60):
            for path in files:
                await up.session("imx.to").upload(path)
    assert [r.files["image"].data for r in imx.requests] == [p.read_bytes() for p in files]
    assert all(r.form == {"format": "json", "thumbnail_size": "2"} for r in imx.requests)


async def test_imagebam_session_loss_answers_401_and_logs_in_again(
    imagebam: FakeImageBam, images: list[Path]
) -> None:
    async with uploader(imagebam=imagebam.base_url) as up:
        session = up.session("imagebam")
        with trio.fail_after(30):
            await session.upload(images[0])
            imagebam.expire_sessions()
            result = await session.upload(images[1])
    assert imagebam.lines()[7:] == [
        "POST /upload",  # 401: the session is gone
        "GET /auth/login",
        "POST /auth/login",
        "GET /",
        "GET /",
        "POST /upload/session",
        "POST /upload",
        "GET /upload/complete",
    ]
    assert imagebam.requests[7].cookies != {}  # the old cookie was still sent
    assert imagebam.requests[8].cookies == {}  # the jar was cleared before logging in again
    assert session.stats.logins == 2
    assert result.url == imagebam.links(content_id(images[1].read_bytes()))[0]


async def test_login_is_reused_until_its_ttl_passes(vipr: FakeVipr, images: list[Path]) -> None:
    async with uploader(vipr_im=vipr.base_url) as up:
        session = up.session("vipr.im")
        with trio.fail_after(30):
            await session.upload(images[0])
            await session.upload(images[1])
            assert session.stats.logins == 1
            # age the login past the recipe's ttl (1800 s) without waiting for it
            session._login_at -= session.recipe.session.ttl + 1
            await session.upload(images[2])
    assert session.stats.logins == 2
    assert vipr.lines().count("POST /login.html") == 2


def is_closed(session: ServiceSession) -> bool:
    """``session.closed`` read afresh (not narrowed by an earlier assert)."""
    return session.closed


async def test_shutdown_lets_a_running_upload_finish_then_closes(
    imx: FakeImx, images: list[Path]
) -> None:
    imx.gate = trio.Event()
    results = []
    async with uploader(imx_to=imx.base_url) as up:
        session = up.session("imx.to")

        async def run() -> None:
            results.append(await session.upload(images[0]))

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run)
                await imx.arrived.wait()  # the upload is at the host, its reply held
                await up.close_when_idle()
                assert not is_closed(session)
                imx.gate.set()
            assert is_closed(session)
    assert results[0].url == f"https://imx.to/i/{content_id(images[0].read_bytes())}"


async def test_idle_session_closes_at_once_and_refuses_new_work(
    imx: FakeImx, images: list[Path]
) -> None:
    from hathd.errors import RetryableError

    async with uploader(imx_to=imx.base_url) as up:
        session = up.session("imx.to")
        await up.close_when_idle()
        assert session.closed
        with pytest.raises(RetryableError, match="shutting down"):
            await session.upload(images[0])
    assert imx.requests == []


async def test_result_step_is_retried_and_paced_without_sending_the_file_again(
    turbo: FakeTurbo, images: list[Path]
) -> None:
    """A 503 from the result page is retried as any step is (the recipe's retry policy),
    through the rate limiter, and the file itself is sent once."""
    turbo.inject("/html5_upload_result.tu", 503, headers={"Retry-After": "0"})
    async with uploader(turboimagehost=turbo.base_url) as up:
        session = up.session("turboimagehost")
        with trio.fail_after(30):
            result = await session.upload(images[0])
    assert turbo.lines() == [
        "GET /",
        "POST /upload_html5.tu",
        "GET /html5_upload_result.tu",  # 503
        "GET /html5_upload_result.tu",
    ]
    assert session.stats.retries == 1
    assert session.limiter.statistics().requests == 4
    assert (result.url, result.thumb) == turbo.links(
        content_id(images[0].read_bytes()), images[0].name
    )
