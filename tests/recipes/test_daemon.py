"""The recipes plugin inside a real ``hathd run`` process, driven by the real CLI."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from fakes.forum import FakeVBulletin
from fakes.imagehost_setup import FORUM_PASS, FORUM_USER, IMX_KEY
from fakes.imagehosts import FakeImx, FakePixhost, content_id, running


@pytest.mark.slow
async def test_upload_through_daemon_and_cli(
    start_daemon: Callable[..., Awaitable[Any]], imx: FakeImx, images: list[Path]
) -> None:
    config = (
        f"[recipes]\nroots = [{str(images[0].parent)!r}]\n"
        '[recipes.services."imx.to"]\n'
        f'base_url = "{imx.base_url}"\n'
        f'credentials = {{ api_key = "{IMX_KEY}" }}\n'
    )
    handle = await start_daemon(config_toml_text=config)
    argv = [sys.executable, "-m", "hathd", "--state-dir", str(handle.state_dir)]
    with trio.fail_after(120):
        done = await trio.run_process(
            [*argv, "upload", *map(str, images[:2]), "--to", "imx.to", "--wait",
             "--format", "links", "--timeout", "60"],
            capture_stdout=True, capture_stderr=True, env=handle.env, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        assert done.stdout.decode().splitlines() == [
            f"https://imx.to/i/{content_id(p.read_bytes())}" for p in images[:2]
        ]
        listed = await trio.run_process(
            [*argv, "recipes", "list"], capture_stdout=True, env=handle.env
        )
        assert "imx.to           2 req/s burst 5, 2 at once" in listed.stdout.decode()
        async with handle.admin() as admin:
            shown = await admin.get("/api/v1/config")
            status = await admin.get("/api/v1/status")
        assert shown["recipes"]["services"]["imx.to"]["credentials"] == "***"
        assert IMX_KEY not in str(shown)
        uploads = [s for s in status["services"] if s["name"] == "uploads"]
        assert uploads
        assert await handle.stop() == 0
    assert imx.lines() == ["POST /v1/upload.php", "POST /v1/upload.php"]
    assert IMX_KEY not in handle.log()


@pytest.mark.slow
async def test_two_sets_to_pixhost_one_post_across_a_kill(
    start_daemon: Callable[..., Awaitable[Any]], forum: FakeVBulletin, sets: list[Path]
) -> None:
    """The README's flow: ``hathd upload set1 set2 --host pixhost.to --post-to
    vbulletin:123`` makes two galleries and posts one reply with both; the daemon is killed
    (SIGKILL) while the forum holds its reply to the post, and the restarted daemon finds the
    post on the thread instead of posting again."""
    async with running(FakePixhost()) as pixhost:
        assert isinstance(pixhost, FakePixhost)
        config = (
            f"[recipes]\nroots = [{str(sets[0].parent)!r}]\n"
            f'[recipes.services."pixhost.to"]\nbase_url = "{pixhost.base_url}"\n'
            f'[recipes.services."vbulletin"]\nbase_url = "{forum.base_url}"\n'
            f'credentials = {{ username = "{FORUM_USER}", password = "{FORUM_PASS}" }}\n'
        )
        forum.hang_replies = trio.Event()
        handle = await start_daemon(config_toml_text=config)
        argv = [sys.executable, "-m", "hathd", "--state-dir", str(handle.state_dir)]
        with trio.fail_after(120):
            done = await trio.run_process(
                [*argv, "upload", *map(str, sets), "--host", "pixhost.to",
                 "--post-to", "vbulletin:123"],
                capture_stdout=True, capture_stderr=True, env=handle.env, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr.decode()
            assert done.stdout.decode().count("upload job(s) queued") == 2
            while not forum.posts:
                await trio.sleep(0.05)
        handle.kill()
        await handle.proc.wait()
        forum.hang_replies.set()
        forum.hang_replies = None
        again = await start_daemon(config_toml_text=config, state_dir=handle.state_dir)
        with trio.fail_after(120):
            while True:
                async with again.admin() as admin:
                    posts = (await admin.get("/api/v1/posts"))["posts"]
                if posts and posts[0]["state"] == "posted":
                    break
                assert not posts or posts[0]["state"] != "failed", posts
                await trio.sleep(0.1)
        assert await again.stop() == 0
    assert len(forum.posts) == 1
    assert [r.path for r in forum.requests].count("/newreply.php") == 1
    assert posts[0]["post_id"] == str(forum.posts[0].id)
    assert [g["name"] for g in pixhost.galleries.values()] == ["set1", "set2"]
    message = forum.posts[0].message
    for ghash in pixhost.galleries:
        assert f"https://pixhost.to/gallery/{ghash}" in message
    assert message.count("[img]") == 6
    assert FORUM_PASS not in again.log() + handle.log()
