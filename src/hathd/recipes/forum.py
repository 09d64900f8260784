"""Reading a forum's replies (pure, no I/O): did the post land, and under which id; is this an
error page (flood control, an expired security token, no permission); where is a post that
carries a given link.

The patterns come from the forum recipe (:class:`~hathd.recipes.model.ForumSpec`); the
built-in ``vbulletin`` recipe fills them from vBulletin's own pages (docs/recipes.md,
"Posting to a forum"): ``newreply.php?do=postreply`` answers a good post with a redirect to
``showthread.php?p=<post id>``, and an error with a 200 page whose text names it.
"""

from __future__ import annotations

import html
import re
from typing import Literal

import attrs
import parsel

from hathd.recipes.extract import ResponseView
from hathd.recipes.model import ForumSpec
from hathd.recipes.output import web_url

Outcome = Literal["posted", "relogin", "rate_limited", "refused", "retry", "unknown"]

_URL = re.compile(r"https?://[^\s\[\]\"'<>]+", re.IGNORECASE)


@attrs.frozen
class ReplyOutcome:
    """What a forum's reply to a post means.

    ``kind``: ``posted`` (``post_id`` set), ``relogin`` (security token or session expired),
    ``rate_limited`` (flood control; ``wait`` seconds), ``refused`` (permanent), ``retry``
    (transient), ``unknown`` (no post id and no known error: the post may or may not exist).
    ``message`` is the matched error text, for people.
    """

    kind: Outcome
    post_id: str = ""
    wait: float = 0.0
    message: str = ""


def _snippet(text: str, match: re.Match[str]) -> str:
    found = re.sub(r"<[^>]+>", " ", match.group(0))
    return " ".join(html.unescape(found).split())[:200] or text[:80]


def read_reply(spec: ForumSpec, view: ResponseView) -> ReplyOutcome:
    """Classify the forum's reply ``view`` to a post (the recipe's ``errors`` first, in
    order; then ``post_id`` over the final URL, then over the body)."""
    body = view.text
    for err in spec.errors:
        match = re.search(err.match, body, re.IGNORECASE | re.DOTALL)
        if match is None:
            continue
        wait = err.default_wait
        if "seconds" in match.re.groupindex and match.group("seconds"):
            wait = float(match.group("seconds"))
        kind: Outcome = err.outcome  # type: ignore[assignment]
        return ReplyOutcome(kind, wait=wait, message=_snippet(body, match))
    for text in (view.url, body):
        found = re.search(spec.post_id, text)
        if found is not None:
            return ReplyOutcome("posted", post_id=found.group(1))
    return ReplyOutcome("unknown", message=f"HTTP {view.status}: the reply names no post id")


def is_expired(spec: ForumSpec, view: ResponseView) -> bool:
    """Whether ``view`` is the forum's "log in again" page (an error of outcome
    ``relogin``)."""
    return read_reply(spec, view).kind == "relogin"


def marker_of(message: str) -> str:
    """The link that identifies a post: the first ``http(s)://`` URL of ``message`` (a gallery
    or image link, unique to the batch), or ``""`` when it has none."""
    for match in _URL.finditer(message):
        url = web_url(match.group(0))
        if url:
            return url
    return ""


def find_post(spec: ForumSpec, view: ResponseView, marker: str) -> str | None:
    """The id of the first post on the page ``view`` whose message contains ``marker`` (as
    text or in a link), or ``None``."""
    if not marker:
        return None
    page = parsel.Selector(text=view.text)
    for element in page.css(spec.posts):
        ident = element.attrib.get("id", "")
        found = re.search(spec.post_id_attr, ident)
        if found is None:
            continue
        if marker in html.unescape(element.get()):
            return found.group(1)
    return None
