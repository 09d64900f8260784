"""A local fake vBulletin 4 forum (quart-trio on hypercorn, 127.0.0.1, a free port).

It behaves as vBulletin does toward a posting client, as far as the client can see:

- ``POST /login.php?do=login`` checks ``vb_login_username`` and ``vb_login_md5password`` (the
  MD5 hex of the password, which the login form's script computes) with
  ``securitytoken=guest``; success sets the ``bb_userid``, ``bb_password`` and
  ``bb_sessionhash`` cookies and shows "Thank you for logging in"; failure shows the
  "invalid username or password" strike page (HTTP 200, as vBulletin does).
- every page of a logged-in user carries ``var SECURITYTOKEN = "<time>-<sha1>";`` (a guest's
  is ``"guest"``);
- ``POST /newreply.php?do=postreply`` needs the session and its security token (else the
  "security token was invalid" page), obeys flood control ("This forum requires that you wait
  N seconds between posts. Please try again in M seconds."), refuses unknown threads ("Invalid
  Thread specified") and closed ones, and answers a good post with a redirect to
  ``showthread.php?p=<id>#post<id>``;
- ``POST /newthread.php?do=postthread`` opens a thread (redirect to ``showthread.php?t=<id>``);
- ``GET /showthread.php?t=<id>[&goto=lastpost]`` and ``?p=<id>`` show the thread's posts as
  vBulletin 4's postbit (``<div id="post_message_<id>"><blockquote class="postcontent
  restore">``), BBCode links and images turned into HTML.

Posts are kept in :attr:`FakeVBulletin.posts`; ``hang_replies`` (an Event) makes a reply
store the post and then wait before answering (a client killed meanwhile never sees the
reply); :meth:`expire_tokens` makes every issued security token invalid.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import re
import secrets
import time
from typing import Any

import attrs
import trio
from quart import Response, request

from fakes.imagehosts import FakeHost


@attrs.define
class ForumPost:
    """One post: id, thread, author, BBCode message, time (epoch seconds)."""

    id: int
    thread: int
    user: str
    message: str
    at: float


def _page(title: str, body: str, token: str = "guest") -> Response:
    text = (
        "<!DOCTYPE html><html><head><title>"
        + html.escape(title)
        + '</title><script type="text/javascript">\n<!--\nvar SESSIONURL = "";\n'
        + f'var SECURITYTOKEN = "{token}";\nvar IMGDIR_MISC = "images/misc";\n// -->\n'
        + "</script></head><body>"
        + body
        + "</body></html>"
    )
    return Response(text, status=200, mimetype="text/html")


def _standard_error(message: str, token: str = "guest") -> Response:
    return _page(
        "Forum - Message",
        '<div class="standard_error"><h2 class="blockhead">Message</h2>'
        f'<div class="blockrow restore">{message}</div></div>',
        token,
    )


_BB_URL = re.compile(r"\[url=([^\]]+)\](.*?)\[/url\]", re.IGNORECASE | re.DOTALL)
_BB_IMG = re.compile(r"\[img\](.*?)\[/img\]", re.IGNORECASE | re.DOTALL)
_BB_B = re.compile(r"\[b\](.*?)\[/b\]", re.IGNORECASE | re.DOTALL)


def bbcode_to_html(message: str) -> str:
    """The few BBCode tags a post of links uses, as vBulletin renders them."""
    text = html.escape(message, quote=False)
    text = _BB_IMG.sub(lambda m: f'<img src="{m.group(1)}" border="0" alt="" />', text)
    text = _BB_URL.sub(lambda m: f'<a href="{m.group(1)}" target="_blank">{m.group(2)}</a>', text)
    text = _BB_B.sub(r"<b>\1</b>", text)
    return text.replace("\n", "<br />\n")


class FakeVBulletin(FakeHost):
    """The fake forum; ``users`` maps user names to passwords; ``threads`` maps thread ids to
    ``(forum id, title, closed)``."""

    name = "vbulletin"

    def __init__(self, users: dict[str, str], *, flood_seconds: float = 0.0) -> None:
        self.users = users
        self.threads: dict[int, tuple[int, str, bool]] = {123: (7, "Sets", False)}
        self.posts: list[ForumPost] = []
        self.flood_seconds = flood_seconds
        self.hang_replies: trio.Event | None = None
        self.logins = 0
        self._sessions: dict[str, str] = {}  # session hash -> user
        self._tokens: dict[str, str] = {}  # session hash -> security token
        self._last_post: dict[str, float] = {}
        self._ids = itertools.count(1001)
        self._thread_ids = itertools.count(500)
        super().__init__()

    def expire_tokens(self) -> None:
        """Make every security token issued so far invalid (a new one on the next page)."""
        self._tokens.clear()

    def posts_in(self, thread: int) -> list[ForumPost]:
        """The posts of ``thread`` in order."""
        return [p for p in self.posts if p.thread == thread]

    def _user(self) -> tuple[str | None, str]:
        session = request.cookies.get("bb_sessionhash", "")
        user = self._sessions.get(session)
        if user is None:
            return None, "guest"
        token = self._tokens.get(session)
        if token is None:
            stamp = str(int(time.time()))
            token = f"{stamp}-{hashlib.sha1(secrets.token_bytes(8)).hexdigest()}"
            self._tokens[session] = token
        return user, token

    def _thread_page(self, thread: int, token: str) -> Response:
        forum, title, _closed = self.threads[thread]
        posts = "".join(
            f'<li class="postbitlegacy postbitim postcontainer" id="post_{p.id}">'
            f'<div class="username_container"><strong>{html.escape(p.user)}</strong></div>'
            f'<div class="postbody"><div class="content"><div id="post_message_{p.id}">'
            f'<blockquote class="postcontent restore ">{bbcode_to_html(p.message)}'
            "</blockquote></div></div></div></li>"
            for p in self.posts_in(thread)
        )
        body = (
            f'<h1 class="threadtitle">{html.escape(title)}</h1>'
            f'<ol id="posts" class="posts" start="1">{posts}</ol>'
            f'<input type="hidden" name="f" value="{forum}" />'
        )
        return _page(title, body, token)

    def routes(self) -> None:
        @self.app.post("/login.php")
        async def login() -> Response:
            form = self.last.form
            user = form.get("vb_login_username", "")
            password = self.users.get(user)
            md5 = hashlib.md5(password.encode()).hexdigest() if password is not None else None
            if (
                request.args.get("do") != "login"
                or form.get("securitytoken") != "guest"
                or md5 is None
                or form.get("vb_login_md5password") != md5
                or form.get("vb_login_password", "") != ""
            ):
                return _standard_error(
                    "You have entered an invalid username or password. Please press the back"
                    " button, enter the correct details and try again. Don't forget that the"
                    " password is case sensitive."
                )
            self.logins += 1
            session = secrets.token_hex(16)
            self._sessions[session] = user
            reply = _page(
                "Forum",
                '<div class="standard_error"><div class="blockrow restore">Thank you for'
                f" logging in, {html.escape(user)}.</div></div>",
            )
            reply.set_cookie("bb_sessionhash", session, httponly=True)
            reply.set_cookie("bb_userid", str(list(self.users).index(user) + 1))
            reply.set_cookie("bb_password", hashlib.md5(md5.encode()).hexdigest())
            return reply

        @self.app.get("/index.php")
        async def index() -> Response:
            user, token = self._user()
            welcome = f"Welcome, {html.escape(user)}." if user else "Welcome, guest."
            return _page("Forum", f'<div id="toplinks">{welcome}</div>', token)

        @self.app.get("/showthread.php")
        async def showthread() -> Response | tuple[str, int]:
            _user, token = self._user()
            if "p" in request.args:
                wanted = int(request.args["p"])
                found = [p for p in self.posts if p.id == wanted]
                if not found:
                    return _standard_error("Invalid Post specified.", token)
                return self._thread_page(found[0].thread, token)
            thread = int(request.args.get("t", "0"))
            if thread not in self.threads:
                return _standard_error("Invalid Thread specified.", token)
            return self._thread_page(thread, token)

        @self.app.post("/newreply.php")
        async def newreply() -> Response | tuple[str, int]:
            user, token = self._user()
            form = self.last.form
            if user is None:
                return _standard_error(
                    "You are not logged in or you do not have permission to access this page."
                )
            if form.get("securitytoken") != token or request.args.get("do") != "postreply":
                return _standard_error(
                    "Your submission could not be processed because a security token was invalid.",
                    token,
                )
            thread = int(form.get("t", "0") or 0)
            if thread not in self.threads or str(thread) != request.args.get("t"):
                return _standard_error("Invalid Thread specified.", token)
            if self.threads[thread][2]:
                return _standard_error("This thread is closed.", token)
            return await self._store_post(user, thread, form.get("message", ""), token)

        @self.app.post("/newthread.php")
        async def newthread() -> Response | tuple[str, int]:
            user, token = self._user()
            form = self.last.form
            if user is None:
                return _standard_error(
                    "You are not logged in or you do not have permission to access this page."
                )
            if form.get("securitytoken") != token:
                return _standard_error(
                    "Your submission could not be processed because a security token was invalid.",
                    token,
                )
            forum = int(form.get("f", "0") or 0)
            subject = form.get("subject", "").strip()
            if not subject:
                return _standard_error("The following errors occurred: no subject.", token)
            thread = next(self._thread_ids)
            self.threads[thread] = (forum, subject, False)
            return await self._store_post(user, thread, form.get("message", ""), token, new=True)

    async def _store_post(
        self, user: str, thread: int, message: str, token: str, *, new: bool = False
    ) -> Response:
        now = time.monotonic()
        last = self._last_post.get(user)
        if self.flood_seconds and last is not None and now - last < self.flood_seconds:
            left = int(self.flood_seconds - (now - last)) + 1
            return _standard_error(
                f"This forum requires that you wait {int(self.flood_seconds)} seconds between"
                f" posts. Please try again in {left} seconds.",
                token,
            )
        if len(message.strip()) < 5:
            return _standard_error(
                "The message you have entered is too short. Please lengthen your message to"
                " at least 5 characters.",
                token,
            )
        post = ForumPost(next(self._ids), thread, user, message, time.time())
        self.posts.append(post)
        self._last_post[user] = now
        if self.hang_replies is not None:
            await self.hang_replies.wait()
        where = f"showthread.php?t={thread}" if new else f"showthread.php?p={post.id}#post{post.id}"
        return Response("", status=302, headers={"Location": f"{self.base_url}/{where}"})

    def summary(self) -> dict[str, Any]:
        """Counts for assertions: logins, posts."""
        return {"logins": self.logins, "posts": len(self.posts)}
