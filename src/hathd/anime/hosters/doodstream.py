"""Doodstream: the page asks ``/pass_md5/…`` for the file's base URL, then adds a token.

Public origin of the pattern: yt-dlp's ``yt_dlp/extractor/doodstream.py``
(``DoodStreamIE._real_extract``) and AniWorld-Downloader's
``src/aniworld/extractors/provider/doodstream.py``: the embed page contains the path
``/pass_md5/<…>`` (in a ``$.get('…')`` call) and a ``token=<…>`` in its ``makePlay`` function.
A GET of the ``pass_md5`` path (with the page as ``Referer``) answers the base URL as plain
text; the media URL is that base + 10 random letters or digits + ``?token=<token>&expiry=<ms
since the epoch>``, fetched with the page's origin as ``Referer``.
"""

from __future__ import annotations

import re
import secrets
import string
import time
from collections.abc import Callable

from hathd.anime.hosters import Fetch, HosterChanged, Stream, absolute, origin

NAME = "doodstream"
_PASS_MD5 = re.compile(r"""(?P<path>/pass_md5/[^'"\s<>]+)""")
_TOKEN = re.compile(r"""[?&]token=(?P<token>[A-Za-z0-9]+)[&'"]""")
_ALPHABET = string.ascii_letters + string.digits


def _random_suffix() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(10))


def resolve(
    html: str,
    page_url: str,
    *,
    now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    suffix: Callable[[], str] = _random_suffix,
) -> Fetch:
    """The ``pass_md5`` request of a Doodstream page; its continuation returns the media URL
    (``kind="direct"``).

    :raises HosterChanged: ``pass_md5`` or ``token`` missing from the page; the continuation
        raises ``pass_md5 base URL`` when the answer is not a URL.
    """
    path = _PASS_MD5.search(html)
    if path is None:
        raise HosterChanged(NAME, "pass_md5")
    token = _TOKEN.search(html)
    if token is None:
        raise HosterChanged(NAME, "token")
    token_value = token.group("token")
    referer = origin(page_url)

    def then(body: str, _final_url: str) -> Stream:
        base = body.strip()
        if not base or any(ch.isspace() for ch in base):
            raise HosterChanged(NAME, "pass_md5 base URL")
        url = absolute(NAME, base, page_url, "pass_md5 base URL")
        url = f"{url}{suffix()}?token={token_value}&expiry={now_ms()}"
        return Stream(url, "direct", {"Referer": referer})

    pass_url = absolute(NAME, path.group("path"), page_url, "pass_md5")
    return Fetch(pass_url, {"Referer": page_url}, then)
