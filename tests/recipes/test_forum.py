"""Posting upload batches to a vBulletin forum: reply parsing, the login chain, the durable
``forum-post`` job (sent once, also across a stop in the middle of the request)."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import trio

from fakes.forum import FakeVBulletin
from fakes.imagehost_setup import FORUM_PASS, FORUM_USER, services_config
from fakes.imagehost_stack import Stack, upload_stack
from fakes.imagehosts import FakePixhost, running
from hathd.client import AdminClient, AdminError
from hathd.engine.api import JobState
from hathd.errors import PermanentError
from hathd.recipes.extract import ResponseView
from hathd.recipes.forum import find_post, marker_of, read_reply
from hathd.recipes.loader import builtin_recipes, configured_recipes
from hathd.recipes.model import ForumRecipe
from hathd.recipes.post_message import render_message
from hathd.recipes.posts import PostRequestError, PostTarget, get_post
from hathd.recipes.uploader import Uploader


def vb_spec() -> ForumRecipe:
    recipe = builtin_recipes()["vbulletin"]
    assert isinstance(recipe, ForumRecipe)
    return recipe


def page(
    body: str, url: str = "https://forum.example/newreply.php?do=postreply&t=1"
) -> ResponseView:
    return ResponseView(200, {"content-type": "text/html"}, url, body.encode())


# -- pure -----------------------------------------------------------------------------------


def test_reply_outcomes_on_vbulletin_pages() -> None:
    spec = vb_spec().forum
    posted = read_reply(spec, page("<html></html>", "https://f.example/showthread.php?p=4711"))
    assert (posted.kind, posted.post_id) == ("posted", "4711")
    flood = read_reply(
        spec,
        page(
            '<div class="blockrow restore">This forum requires that you wait 30 seconds'
            " between posts. Please try again in 17 seconds.</div>"
        ),
    )
    assert (flood.kind, flood.wait) == ("rate_limited", 17.0)
    assert "try again in 17 seconds" in flood.message
    must = read_reply(spec, page("You must wait 12 seconds before posting again."))
    assert (must.kind, must.wait) == ("rate_limited", 12.0)
    token = read_reply(
        spec,
        page("Your submission could not be processed because a security token was invalid."),
    )
    assert token.kind == "relogin"
    closed = read_reply(spec, page("<div>This thread is closed.</div>"))
    assert closed.kind == "refused"
    unknown = read_reply(spec, page("<html><body>Something else</body></html>"))
    assert unknown.kind == "unknown"
    assert "no post id" in unknown.message


def test_find_post_by_its_first_link() -> None:
    spec = vb_spec().forum
    body = (
        '<ol id="posts">'
        '<li id="post_11"><div id="post_message_11"><blockquote>older'
        ' <a href="https://pixhost.to/gallery/g0001">x</a></blockquote></div></li>'
        '<li id="post_12"><div id="post_message_12"><blockquote><b>set2</b><br />'
        '<a href="https://pixhost.to/gallery/g0002?a=1&amp;b=2">link</a></blockquote></div></li>'
        "</ol>"
    )
    view = page(body)
    assert find_post(spec, view, "https://pixhost.to/gallery/g0002?a=1&b=2") == "12"
    assert find_post(spec, view, "https://pixhost.to/gallery/g0001") == "11"
    assert find_post(spec, view, "https://pixhost.to/gallery/g0003") is None
    assert find_post(spec, view, "") is None


def test_marker_and_message() -> None:
    text = render_message(
        "",
        [
            {"name": "set [url=javascript:x]1", "gallery_url": "https://h/g/1", "output": "A"},
            {"name": "set2", "gallery_url": "javascript:alert(1)", "output": "B"},
        ],
    )
    assert text == (
        "[b]set (url=javascript:x)1[/b]\n[url=https://h/g/1]https://h/g/1[/url]\nA\n\n"
        "[b]set2[/b]\nB\n"
    )
    assert marker_of(text) == "https://h/g/1"
    assert marker_of("no links here") == ""


def test_post_targets() -> None:
    assert PostTarget.parse("vbulletin:123") == PostTarget("vbulletin", thread_id="123")
    new = PostTarget.parse("vbulletin:forum=7", subject="Sets of the week")
    assert (new.forum_id, new.subject) == ("7", "Sets of the week")
    for bad in ("vbulletin", "vbulletin:", "vbulletin:12a", "vbulletin:0", ":5", "x:../1"):
        with pytest.raises(PostRequestError):
            PostTarget.parse(bad)
    with pytest.raises(PostRequestError, match="subject"):
        PostTarget.parse("vbulletin:forum=7")


# -- the session against the fake forum -------------------------------------------------------


async def test_login_md5_token_and_reply(forum: FakeVBulletin) -> None:
    config = services_config(vbulletin=forum.base_url)
    up = Uploader(configured_recipes(config), config, timeout=30.0)
    spec = vb_spec().forum
    try:
        session = up.session("vbulletin")
        values = {"message": "[url=https://x.example/a]a[/url] hello", "thread_id": "123"}
        view = await session.exchange(spec.reply, values)
        outcome = read_reply(spec, view)
        assert outcome.kind == "posted"
        assert forum.posts[0].message == values["message"]
        assert outcome.post_id == str(forum.posts[0].id)
        login = next(r for r in forum.requests if r.path == "/login.php")
        assert login.form["vb_login_md5password"] == hashlib.md5(FORUM_PASS.encode()).hexdigest()
        assert login.form["vb_login_password"] == ""
        reply = next(r for r in forum.requests if r.path == "/newreply.php")
        assert reply.form["securitytoken"].count("-") == 1
        assert FORUM_PASS not in str([r.form for r in forum.requests])

        # an expired token: the forum's error page makes the session log in again, once
        forum.expire_tokens()
        forum._sessions.clear()
        view = await session.exchange(
            spec.reply, {**values, "message": "second post here"}, expired=lambda v: (
                read_reply(spec, v).kind == "relogin"
            )
        )  # fmt: skip
        assert read_reply(spec, view).kind == "posted"
        assert forum.logins == 2
        assert [p.message for p in forum.posts] == [values["message"], "second post here"]
    finally:
        await up.aclose()


async def test_wrong_password_is_a_clear_permanent_error(forum: FakeVBulletin) -> None:
    config = services_config(vbulletin=forum.base_url)
    config.services["vbulletin"].credentials["password"] = "wrong"
    up = Uploader(configured_recipes(config), config, timeout=30.0)
    try:
        with pytest.raises(PermanentError) as refused:
            await up.session("vbulletin").exchange(
                vb_spec().forum.reply, {"message": "hello there", "thread_id": "123"}
            )
        assert "login" in str(refused.value)
        assert "wrong" not in str(refused.value)
        assert not forum.posts
    finally:
        await up.aclose()


# -- the pipeline ------------------------------------------------------------------------------


async def wait_post(stack: Stack, post_id: str, state: str = "posted") -> dict[str, Any]:
    with trio.fail_after(60):
        while True:
            post = await get_post(stack.rt.store, post_id)
            assert post is not None
            if post.state == state:
                return post.to_json()
            await trio.sleep(0.05)


async def test_two_folders_two_galleries_one_post(forum: FakeVBulletin, sets: list[Path]) -> None:
    async with (
        running(FakePixhost()) as pixhost,
        upload_stack(
            services_config(pixhost_to=pixhost.base_url, vbulletin=forum.base_url)
        ) as stack,
        AdminClient(stack.rt.paths.socket) as admin,
    ):
        assert isinstance(pixhost, FakePixhost)
        reply = await admin.post(
            "/api/v1/uploads",
            {
                "paths": [str(s) for s in sets],
                "service": "pixhost.to",
                "per_folder": True,
                "post_to": {"forum": "vbulletin", "thread_id": "123"},
            },
        )
        assert [b["gallery"]["gallery_name"] for b in reply["batches"]] == ["set1", "set2"]
        assert reply["post"]["state"] in ("waiting", "queued")
        done = await wait_post(stack, reply["post"]["id"])
        fetched = await admin.get(f"/api/v1/posts/{done['id']}")
    assert fetched["state"] == "posted"
    assert [g["name"] for g in pixhost.galleries.values()] == ["set1", "set2"]
    assert all(g["finalized"] for g in pixhost.galleries.values())
    assert len(forum.posts) == 1
    message = forum.posts[0].message
    assert message.index("[b]set1[/b]") < message.index("[b]set2[/b]")
    for ghash in pixhost.galleries:
        assert f"https://pixhost.to/gallery/{ghash}" in message
    assert message.count("[img]") == 6
    assert fetched["post_id"] == str(forum.posts[0].id)
    assert (
        fetched["post_url"]
        == f"{forum.base_url}/showthread.php?p={forum.posts[0].id}#post{forum.posts[0].id}"
    )


async def test_bad_requests_create_nothing(forum: FakeVBulletin, sets: list[Path]) -> None:
    async with (
        running(FakePixhost()) as pixhost,
        upload_stack(
            services_config(pixhost_to=pixhost.base_url, vbulletin=forum.base_url)
        ) as stack,
        AdminClient(stack.rt.paths.socket) as admin,
    ):
        for post_to, words in (
            ({"forum": "nope", "thread_id": "1"}, "unknown forum"),
            ({"forum": "vbulletin", "thread_id": "1; DROP"}, "not a thread or forum id"),
            ({"forum": "vbulletin", "forum_id": "7"}, "subject"),
            ({"forum": "vbulletin", "thread_id": "1", "extra": "x"}, "unknown key"),
            ("vbulletin:1", "object"),
        ):
            with pytest.raises(AdminError) as refused:
                await admin.post(
                    "/api/v1/uploads",
                    {"paths": [str(sets[0])], "service": "pixhost.to", "post_to": post_to},
                )
            assert refused.value.status == 400
            assert words in str(refused.value)
        batches = await admin.get("/api/v1/uploads")
        posts = await admin.get("/api/v1/posts")
    assert batches["batches"] == []
    assert posts["posts"] == []
    assert pixhost.requests == []


async def test_flood_control_waits_and_posts_once(sets: list[Path]) -> None:
    async with (
        running(FakeVBulletin({FORUM_USER: FORUM_PASS}, flood_seconds=2.0)) as forum,
        running(FakePixhost()) as pixhost,
        upload_stack(
            services_config(pixhost_to=pixhost.base_url, vbulletin=forum.base_url)
        ) as stack,
    ):
        assert isinstance(forum, FakeVBulletin)
        first, _ = await stack.uploads.submit_sets(
            [str(sets[0])], "pixhost.to", post=PostTarget("vbulletin", thread_id="123")
        )
        second, _ = await stack.uploads.submit_sets(
            [str(sets[1])], "pixhost.to", post=PostTarget("vbulletin", thread_id="123")
        )
        rows = await stack.rt.store.query("SELECT id FROM forum_posts ORDER BY created_at")
        for row in rows:
            await wait_post(stack, row["id"])
        jobs, _total = await stack.engine.list_jobs(kind="forum-post")
    assert len(forum.posts) == 2
    refused = [r for r in forum.requests if r.path == "/newreply.php"]
    assert len(refused) == 3  # one post was turned away by flood control, then sent again
    assert sorted(j.attempts for j in jobs)[0] <= 1
    assert first[0].batch != second[0].batch


async def test_a_post_whose_reply_was_lost_is_found_not_sent_again(
    forum: FakeVBulletin, sets: list[Path], tmp_path: Path
) -> None:
    """The stack stops while the forum holds its reply (the post is stored there): on the
    next start the job finds its post on the thread's last page instead of posting again."""
    state = Path(tempfile.mkdtemp(prefix="hf", dir="/tmp"))  # unix socket paths are short
    forum.hang_replies = trio.Event()
    async with running(FakePixhost()) as pixhost:
        config = services_config(pixhost_to=pixhost.base_url, vbulletin=forum.base_url)
        async with upload_stack(config, state_dir=state) as stack:
            _subs, post = await stack.uploads.submit_sets(
                [str(sets[0])], "pixhost.to", post=PostTarget("vbulletin", thread_id="123")
            )
            assert post is not None
            with trio.fail_after(60):
                while not forum.posts:
                    await trio.sleep(0.05)
            sending = await get_post(stack.rt.store, post.id)
            assert sending is not None
            assert sending.state == "sending"
        forum.hang_replies.set()
        forum.hang_replies = None
        async with upload_stack(config, state_dir=state) as stack:
            done = await wait_post(stack, post.id)
            job = await stack.engine.get(done["job"])
            assert job is not None
            assert job.state is JobState.DONE
    shutil.rmtree(state, ignore_errors=True)
    assert len(forum.posts) == 1
    assert [r.path for r in forum.requests].count("/newreply.php") == 1
    assert done["post_id"] == str(forum.posts[0].id)
    assert any(r.path == "/showthread.php" for r in forum.requests)
