"""Upload jobs end to end: real engine in-process, API over a unix socket, CLI, fakes."""

from __future__ import annotations

import importlib.resources
import json
import os
from pathlib import Path
from typing import Any

import pytest
import trio
from asyncclick.testing import CliRunner

from fakes.imagehost_setup import BAM_EMAIL, TEST_ROOT, make_image, services_config
from fakes.imagehost_stack import Stack, upload_stack
from fakes.imagehosts import FakeImageBam, FakeImx, FakePixhost, FakeVipr, content_id
from hathd.client import AdminClient, AdminError
from hathd.engine.api import JobState
from hathd.events import Event, Subscription
from hathd.recipes.cli import check_recipes, upload, upload_status
from hathd.recipes.config import RecipesConfig, ServiceConfig
from hathd.recipes.uploads import UploadRequestError


async def wait_batch(stack: Stack, batch: str, *, finalized: bool = False) -> dict[str, Any]:
    """Wait (up to 60 s) until no job of ``batch`` is active (and, optionally, the batch is
    finalized); return the summary."""
    with trio.fail_after(60):
        while True:
            summary = await stack.uploads.summary(batch)
            assert summary is not None
            if summary["state"] != "active" and (
                not finalized or (summary["gallery"] or {}).get("finalized_at")
            ):
                return summary
            await trio.sleep(0.05)


async def test_folder_upload_through_the_api(vipr: FakeVipr, images: list[Path]) -> None:
    folder = images[0].parent
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.jpg").write_bytes(b"x")
    events: list[Event] = []

    async def collect(sub: Subscription) -> None:
        async for event in sub:
            events.append(event)

    async with (
        upload_stack(services_config(vipr_im=vipr.base_url)) as stack,
        stack.rt.bus.subscribe(["progress"]) as sub,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(collect, sub)
        async with AdminClient(stack.rt.paths.socket) as admin:
            reply = await admin.post(
                "/api/v1/uploads", {"paths": [str(folder)], "service": "vipr.im"}
            )
        assert [j["path"] for j in reply["jobs"]] == [str(p) for p in images]
        for job in reply["jobs"]:
            final = await stack.engine.wait_final(job["job"], timeout=60)
            assert final.state is JobState.DONE
            assert final.kind == "upload"
            assert final.domain == "vipr.im"
        summary = await wait_batch(stack, reply["batch"])
        nursery.cancel_scope.cancel()
    urls = [f"https://vipr.im/i/{content_id(p.read_bytes())}/{p.name}" for p in images]
    thumbs = [f"https://vipr.im/th/{content_id(p.read_bytes())}/{p.name}" for p in images]
    assert summary["state"] == "done"
    assert summary["counts"] == {"done": 3, "failed": 0, "active": 0, "cancelled": 0}
    assert [i["url"] for i in summary["items"]] == urls
    assert summary["output"]["links"] == "\n".join(urls)
    assert summary["output"]["bbcode"].splitlines() == [
        f"[url={u}][img]{t}[/img][/url]" for u, t in zip(urls, thumbs, strict=True)
    ]
    # one login for the whole batch, then three uploads
    assert vipr.lines().count("POST /login.html") == 1
    assert vipr.lines().count("POST /cgi-bin/upload.cgi") == 3
    assert sorted(r.files["file_0"].filename for r in vipr.requests if r.files) == [
        p.name for p in images
    ]
    progress = [e for e in events if e.room == "progress"]
    assert progress
    assert {e.data["id"] for e in progress} <= {j["job"] for j in reply["jobs"]}
    assert all(e.data["kind"] == "upload" for e in progress)


async def test_folder_skips_symlinks_and_names_that_are_not_utf8(
    imx: FakeImx, images: list[Path], tmp_path: Path
) -> None:
    """In a folder, a file whose name has the byte 0xff and a symbolic link to a file outside
    the folder are skipped and reported; the other files are uploaded. Named directly, the
    0xff file is refused with a clear 400 (and by the CLI before any request), while a
    symbolic link is followed."""
    folder = images[0].parent
    bad = folder / os.fsdecode(b"bad\xffname.jpg")
    with open(os.fsencode(bad), "wb") as f:
        f.write(b"not utf-8 named")
    outside = tmp_path / "private"
    outside.mkdir()
    secret = make_image(outside, "secret.jpg", 1234)
    (folder / "link.jpg").symlink_to(secret)
    async with (
        upload_stack(services_config(imx_to=imx.base_url)) as stack,
        AdminClient(stack.rt.paths.socket) as admin,
    ):
        reply = await admin.post("/api/v1/uploads", {"paths": [str(folder)], "service": "imx.to"})
        assert [j["path"] for j in reply["jobs"]] == [str(p) for p in images]
        assert reply["skipped"] == [
            {"path": f"{folder}/bad\\xffname.jpg", "reason": "name is not valid UTF-8"},
            {"path": f"{folder}/link.jpg", "reason": "symbolic link"},
        ]
        summary = await wait_batch(stack, reply["batch"])
        assert summary["state"] == "done"

        with pytest.raises(UploadRequestError) as refused:
            await stack.uploads.submit([str(bad)], "imx.to")
        assert refused.value.status == 400
        assert "bad\\xffname.jpg" in str(refused.value)
        assert "not valid UTF-8" in str(refused.value)
        cli = await CliRunner().invoke(upload, [str(bad), "--to", "imx.to"], obj=stack.cli)
        assert cli.exit_code == 1
        assert "bad\\xffname.jpg: the name is not valid UTF-8" in cli.output

        direct = await stack.uploads.submit([str(folder / "link.jpg")], "imx.to")
        job = await stack.engine.wait_final(direct.jobs[0]["job"], timeout=60)
        assert job.state is JobState.DONE
    uploaded = sorted(r.files["image"].data for r in imx.requests if r.files)
    assert uploaded == sorted([*(p.read_bytes() for p in images), secret.read_bytes()])


async def test_gallery_created_then_finalized_once(
    pixhost: FakePixhost, images: list[Path]
) -> None:
    """``hathd upload … --gallery Trip --wait``: the gallery is created first, every file
    lands in it, and it is finalized once."""
    async with upload_stack(services_config(pixhost_to=pixhost.base_url)) as stack:
        cli = await CliRunner().invoke(
            upload,
            [*(str(p) for p in images), "--to", "pixhost.to", "--gallery", "Trip", "--json"],
            obj=stack.cli,
        )
        assert cli.exit_code == 0, cli.output
        sub = json.loads(cli.output)
        summary = await wait_batch(stack, sub["batch"], finalized=True)
    assert sub["gallery"]["gallery_id"] == "g0001"
    assert summary["state"] == "done"
    assert summary["gallery"]["name"] == "Trip"
    assert summary["gallery"]["gallery_url"] == "https://pixhost.to/gallery/g0001"
    assert summary["gallery"]["finalize_error"] is None
    lines = pixhost.lines()
    assert lines[0] == "POST /galleries"
    assert lines.count("POST /images") == 3
    assert lines[-1] == "POST /galleries/g0001/finalize"
    assert lines.count("POST /galleries/g0001/finalize") == 1
    assert sorted(pixhost.galleries["g0001"]["images"]) == [p.name for p in images]
    assert pixhost.galleries["g0001"]["finalized"] is True


async def test_batch_deduplicated_into_an_earlier_job_is_finalized(
    pixhost: FakePixhost, images: list[Path]
) -> None:
    """The same file sent twice to gallery "G" while its first upload is still running: the
    second batch's item is the first batch's job, and both batches are finalized when it
    ends (each gallery once)."""
    hold = trio.Event()
    pixhost.holds["/images"] = hold
    async with upload_stack(services_config(pixhost_to=pixhost.base_url)) as stack:
        first = await stack.uploads.submit([str(images[0])], "pixhost.to", gallery="G")
        second = await stack.uploads.submit([str(images[0])], "pixhost.to", gallery="G")
        assert second.jobs[0]["job"] == first.jobs[0]["job"]
        assert second.jobs[0]["created"] is False
        hold.set()
        one = await wait_batch(stack, first.batch, finalized=True)
        two = await wait_batch(stack, second.batch, finalized=True)
    assert one["state"] == two["state"] == "done"
    assert two["items"][0]["url"] == one["items"][0]["url"]
    assert (one["gallery"]["gallery_id"], two["gallery"]["gallery_id"]) == ("g0001", "g0002")
    assert pixhost.lines().count("POST /images") == 1
    assert pixhost.lines().count("POST /galleries/g0001/finalize") == 1
    assert pixhost.lines().count("POST /galleries/g0002/finalize") == 1


async def test_refused_login_fails_the_job_permanently(
    imagebam: FakeImageBam, images: list[Path]
) -> None:
    recipes = RecipesConfig(
        services={
            "imagebam": ServiceConfig(
                base_url=imagebam.base_url,
                credentials={"email": BAM_EMAIL, "password": "wrong-pass-9"},
            )
        },
        roots=[TEST_ROOT],
    )
    async with upload_stack(recipes) as stack:
        sub = await stack.uploads.submit([str(images[0])], "imagebam")
        job = await stack.engine.wait_final(sub.jobs[0]["job"], timeout=60)
        summary = await wait_batch(stack, sub.batch)
    assert job.state is JobState.FAILED
    assert job.attempts == 1
    assert job.error is not None
    assert "login refused (HTTP 403)" in job.error
    assert "wrong-pass-9" not in job.error
    assert summary["state"] == "failed"
    assert "login refused" in summary["items"][0]["error"]
    assert imagebam.lines() == ["GET /auth/login", "POST /auth/login"]


async def test_rate_limit_goes_back_to_the_engine_and_retries(
    imx: FakeImx, images: list[Path], tmp_path: Path
) -> None:
    builtin = importlib.resources.files("hathd.recipes") / "builtin" / "imx.to.toml"
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "imx.toml").write_text(
        builtin.read_text(encoding="utf-8") + "\n[retry]\nmax_retries = 0\n", encoding="utf-8"
    )
    config = services_config(imx_to=imx.base_url)
    recipes = RecipesConfig(
        directory=str(folder), services=config.services, global_rate=0.0, roots=[TEST_ROOT]
    )
    imx.inject("/v1/upload.php", 429, headers={"Retry-After": "0"})
    async with upload_stack(recipes, retry_delays=(0.1,)) as stack:
        sub = await stack.uploads.submit([str(images[0])], "imx.to")
        job = await stack.engine.wait_final(sub.jobs[0]["job"], timeout=60)
    assert job.state is JobState.DONE
    assert job.attempts == 1  # the engine does not count a rate-limited try
    assert job.result is not None
    assert job.result["url"] == f"https://imx.to/i/{content_id(images[0].read_bytes())}"
    assert imx.lines() == ["POST /v1/upload.php", "POST /v1/upload.php"]


async def test_api_rejects_bad_submissions(imx: FakeImx, images: list[Path]) -> None:
    cases: list[tuple[Any, int, str]] = [
        ({"paths": [str(images[0])], "service": "nope"}, 400, "unknown service 'nope'"),
        ({"paths": ["pics/a.jpg"], "service": "imx.to"}, 400, "paths must be absolute"),
        ({"paths": [str(images[0]) + ".gone"], "service": "imx.to"}, 400, "no such file"),
        (
            {"paths": [str(images[0])], "service": "plain.example", "gallery": "G"},
            400,
            "does not support galleries",
        ),
        ({"paths": [], "service": "imx.to"}, 400, "non-empty list"),
        (
            {"paths": [str(images[0])], "service": "imx.to", "priority": "high"},
            400,
            "'priority' must be an integer",
        ),
        ([1, 2], 400, "must be a JSON object"),
    ]
    txt = images[0].parent / "readme.txt"
    txt.write_text("x")
    cases.append(({"paths": [str(txt)], "service": "imx.to"}, 400, "accepts only"))
    # a host without galleries (every built-in one has them)
    folder = images[0].parent.parent / "recipes"
    folder.mkdir()
    (folder / "plain.toml").write_text(
        'id = "plain.example"\nbase_url = "https://plain.example"\n[upload]\nurl = "/up"\n'
        '[upload.fields.f]\ntype = "file"\n[upload.response]\nurl = "{link}"\n'
        'extract = { link = "json:url" }\n',
        encoding="utf-8",
    )
    config = services_config(imx_to=imx.base_url)
    config = RecipesConfig(
        services=config.services,
        global_rate=config.global_rate,
        roots=config.roots,
        directory=str(folder),
    )
    async with (
        upload_stack(config) as stack,
        AdminClient(stack.rt.paths.socket) as admin,
    ):
        for body, status, message in cases:
            with pytest.raises(AdminError) as caught:
                await admin.post("/api/v1/uploads", body)
            assert caught.value.status == status, body
            assert message in caught.value.body["error"], (body, caught.value.body)
        with pytest.raises(AdminError) as missing:
            await admin.get("/api/v1/uploads/doesnotexist")
        assert missing.value.status == 404
        listing = await admin.get("/api/v1/recipes")
    assert imx.requests == []
    by_id = {r["id"]: r for r in listing["recipes"]}
    hosts = sorted(k for k, r in by_id.items() if r["kind"] == "upload")
    assert hosts == [
        "imagebam",
        "imx.to",
        "pixhost.to",
        "plain.example",
        "turboimagehost",
        "vipr.im",
    ]
    assert by_id["vbulletin"]["kind"] == "forum"
    assert by_id["vbulletin"]["limits"] == {"rate": 1.0, "burst": 3, "concurrency": 1}
    assert by_id["imx.to"]["credentials"] == [
        {"name": "api_key", "required": True, "configured": True, "source": "config"},
        {"name": "username", "required": False, "configured": True, "source": "config"},
        {"name": "password", "required": False, "configured": True, "source": "config"},
    ]
    assert by_id["imagebam"]["credentials"][1] == {
        "name": "password",
        "required": True,
        "configured": False,
        "source": None,
    }
    assert by_id["pixhost.to"]["gallery"] is True
    assert "api_key" not in str(listing).replace('"api_key"', "").replace("'api_key'", "")


async def test_cli_upload_wait_and_status(imx: FakeImx, tmp_path: Path) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    files = [make_image(folder, f"s{i}.png", 1500 + i) for i in range(2)]
    async with upload_stack(services_config(imx_to=imx.base_url)) as stack:
        runner = CliRunner()
        result = await runner.invoke(
            upload,
            [str(folder), "--to", "imx.to", "--wait", "--format", "links", "--timeout", "60"],
            obj=stack.cli,
        )
        assert result.exit_code == 0, result.output
        urls = [f"https://imx.to/i/{content_id(f.read_bytes())}" for f in files]
        assert result.stdout.splitlines() == urls
        batches = await stack.uploads.recent()
        assert len(batches) == 1
        status = await runner.invoke(
            upload_status, [batches[0]["batch"], "--format", "markdown"], obj=stack.cli
        )
        assert status.exit_code == 0, status.output
        thumbs = [f"https://imx.to/u/t/2/{content_id(f.read_bytes())}.jpg" for f in files]
        assert status.stdout.splitlines() == [
            f"[![{f.name}]({t})]({u})" for f, t, u in zip(files, thumbs, urls, strict=True)
        ]
        bad = await runner.invoke(upload, [str(files[0]), "--to", "nope"], obj=stack.cli)
        assert bad.exit_code == 1
        assert "unknown service 'nope'" in bad.output


async def test_cli_recipes_check(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    builtin = importlib.resources.files("hathd.recipes") / "builtin" / "vipr.im.toml"
    good.write_text(builtin.read_text(encoding="utf-8"))
    bad = tmp_path / "bad.toml"
    bad.write_text(builtin.read_text(encoding="utf-8").replace('type = "file"', 'type = "path"'))
    result = await CliRunner().invoke(check_recipes, [str(good), str(bad)])
    assert result.exit_code == 1
    assert f"{good}: ok (vipr.im)" in result.stdout
    assert "bad.toml: upload.fields.file_0.type: must be one of file, text, value" in result.output


async def test_uploads_read_only_below_their_roots(
    imx: FakeImx, images: list[Path], tmp_path: Path
) -> None:
    """``[recipes] roots`` confines every path: a file outside (``/etc/shadow``), a symbolic
    link inside a root that leads out of it, and a path naming ``..`` are refused with a
    clear error before any request; the same paths inside the root go through."""
    root = images[0].parent
    outside = tmp_path / "private"
    outside.mkdir()
    secret = make_image(outside, "secret.jpg", 999)
    (root / "escape.jpg").symlink_to(secret)
    recipes = services_config(imx_to=imx.base_url)
    recipes = RecipesConfig(services=recipes.services, global_rate=0.0, roots=[str(root)])
    async with (
        upload_stack(recipes) as stack,
        AdminClient(stack.rt.paths.socket) as admin,
    ):
        refused = {
            "/etc/shadow": "outside the upload roots",
            str(root / "escape.jpg"): "outside the upload roots",
            str(root / ".." / "private" / "secret.jpg"): "'..' is refused",
            str(outside): "outside the upload roots",
        }
        for path, words in refused.items():
            with pytest.raises(AdminError) as caught:
                await admin.post("/api/v1/uploads", {"paths": [path], "service": "imx.to"})
            assert caught.value.status in (400, 403)
            assert words in str(caught.value)
        # a batch with one bad path creates nothing, not even for its good paths
        with pytest.raises(AdminError):
            await admin.post(
                "/api/v1/uploads",
                {"paths": [str(images[0]), "/etc/passwd"], "service": "imx.to"},
            )
        assert imx.requests == []
        assert (await admin.get("/api/v1/uploads"))["batches"] == []
        reply = await admin.post("/api/v1/uploads", {"paths": [str(root)], "service": "imx.to"})
        assert [j["path"] for j in reply["jobs"]] == [str(p) for p in images]
        assert reply["skipped"] == [{"path": str(root / "escape.jpg"), "reason": "symbolic link"}]
        summary = await wait_batch(stack, reply["batch"])
    assert summary["state"] == "done"
    assert len(imx.requests) == 3
    assert all(r.files["image"].data != secret.read_bytes() for r in imx.requests)


async def test_a_job_whose_file_left_the_roots_fails_without_a_request(
    imx: FakeImx, images: list[Path], tmp_path: Path
) -> None:
    """Checked again when the job runs: a folder swapped for a symbolic link out of the root
    between submission and upload fails the job permanently and sends nothing."""
    root = tmp_path / "root"
    sub = root / "sub"
    sub.mkdir(parents=True)
    target = make_image(sub, "a.jpg", 1200)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    make_image(outside, "a.jpg", 1300, 5)
    recipes = services_config(imx_to=imx.base_url)
    recipes = RecipesConfig(services=recipes.services, global_rate=0.0, roots=[str(root)])
    async with upload_stack(recipes) as stack:
        await stack.engine.pause_queue()
        submitted = await stack.uploads.submit([str(target)], "imx.to")
        sub.rename(root / "old")
        sub.symlink_to(outside)
        await stack.engine.resume_queue()
        final = await stack.engine.wait_final(submitted.jobs[0]["job"], timeout=60)
    assert final.state is JobState.FAILED
    assert "outside the upload roots" in (final.error or "")
    assert imx.requests == []


async def test_direct_upload_jobs_are_checked_at_submit(imx: FakeImx, images: list[Path]) -> None:
    """An ``upload`` job sent to ``POST /api/v1/jobs`` (not through ``/api/v1/uploads``) gets
    the same path checks, answered 400 naming the field."""
    txt = images[0].parent / "notes.txt"
    txt.write_text("x")
    cases = [
        ({"service": "imx.to", "path": "relative.jpg"}, "path", "absolute"),
        ({"service": "imx.to", "path": str(images[0].parent / "gone.jpg")}, "path", "no such"),
        ({"service": "imx.to", "path": str(txt)}, "path", "accepts only"),
        ({"service": "imx.to", "path": str(images[0].parent)}, "path", "not a file"),
        ({"service": "nope.example", "path": str(images[0])}, "service", "nope.example"),
        ({"path": str(images[0])}, "service", "recipe"),
    ]
    async with (
        upload_stack(services_config(imx_to=imx.base_url)) as stack,
        AdminClient(stack.rt.paths.socket) as admin,
    ):
        await admin.post("/api/v1/queue/pause")
        for params, field, message in cases:
            body = {"kind": "upload", "target": "x", "domain": "imx.to", "params": params}
            with pytest.raises(AdminError) as caught:
                await admin.post("/api/v1/jobs", body)
            assert caught.value.status == 400, params
            assert caught.value.body["field"] == field, caught.value.body
            assert message in caught.value.body["error"], caught.value.body
        good = {"service": "imx.to", "path": str(images[0])}
        reply = await admin.post(
            "/api/v1/jobs", {"kind": "upload", "target": "x", "domain": "imx.to", "params": good}
        )
        assert reply["created"] is True
