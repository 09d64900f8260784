"""VOE: a mirror redirect, then the source hidden in an obfuscated JSON blob (or base64).

Public origins of the patterns: AniWorld-Downloader (github.com/phoenixthrush/AniWorld-Downloader,
``src/aniworld/extractors/provider/voe.py``): the first page may only redirect with
``window.location.href = 'https://<mirror>/e/<id>';``, and older pages carry the HLS URL
base64-encoded as ``'hls': '…'``. Current pages put the player data into
``<script type="application/json">["…"]</script>``; the string is decoded (as the public VOE
extractors of aniworld_scraper and AniWorld-Downloader do) by ROT13, removing the separator
marks ``@$ ^^ ~@ %? *~ !! #&``, base64, shifting every character down by 3, reversing, and
base64 again, which yields JSON whose ``source`` is the HLS playlist and ``direct_access_url``
the MP4.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
import re
from typing import Any

from hathd.anime.hosters import Fetch, HosterChanged, Stream, absolute, origin

NAME = "voe"
_REDIRECT = re.compile(r"""window\.location\.href\s*=\s*['"](?P<url>https?://[^'"]+/e/\w+)['"]""")
_JSON_SCRIPT = re.compile(
    r"""<script\s+type=["']application/json["'][^>]*>\s*(?P<data>\[.*?\])\s*</script>""",
    re.DOTALL | re.IGNORECASE,
)
_HLS = re.compile(r"""['"]hls['"]\s*:\s*['"](?P<value>[^'"]+)['"]""")
MARKS = ("@$", "^^", "~@", "%?", "*~", "!!", "#&")
"""Separator marks VOE interleaves into its encoded player data."""


def _b64(text: str) -> str:
    padded = text + "=" * (-len(text) % 4)
    return base64.b64decode(padded, validate=False).decode("utf-8")


def decode_player_data(encoded: str) -> dict[str, Any]:
    """Decode VOE's obfuscated player data (see the module docstring for the steps).

    :raises ValueError: the text does not decode to a JSON object.
    """
    text = codecs.decode(encoded, "rot13")
    for mark in MARKS:
        text = text.replace(mark, "")
    try:
        shifted = "".join(chr(ord(ch) - 3) for ch in _b64(text))
        data = json.loads(_b64(shifted[::-1]))
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise ValueError(f"undecodable player data: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("player data is not a JSON object")
    return data


def _from_player_data(html: str, page_url: str) -> Stream | None:
    found = _JSON_SCRIPT.search(html)
    if found is None:
        return None
    try:
        items = json.loads(found.group("data"))
        if not items or not isinstance(items[0], str):
            raise ValueError("not a list holding a string")
        data = decode_player_data(items[0])
    except ValueError:
        raise HosterChanged(NAME, "decodable player data") from None
    headers = {"Referer": origin(page_url)}
    source = data.get("source")
    if isinstance(source, str) and source:
        url = absolute(NAME, source, page_url, "player data source")
        return Stream(url, "hls" if ".m3u8" in url.lower() else "direct", headers)
    direct = data.get("direct_access_url")
    if isinstance(direct, str) and direct:
        return Stream(absolute(NAME, direct, page_url, "direct_access_url"), "direct", headers)
    raise HosterChanged(NAME, "player data source")


def _from_hls(html: str, page_url: str) -> Stream | None:
    found = _HLS.search(html)
    if found is None:
        return None
    value = found.group("value")
    if not value.startswith(("http://", "https://", "/")):
        try:
            value = _b64(value)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise HosterChanged(NAME, "decodable 'hls' value") from None
    url = absolute(NAME, value, page_url, "'hls' value")
    return Stream(url, "hls", {"Referer": origin(page_url)})


def resolve(html: str, page_url: str) -> Stream | Fetch:
    """The stream of a VOE page, or a :class:`Fetch` of the mirror it redirects to.

    :raises HosterChanged: ``player data or 'hls' source`` when the page has neither, nor a
        mirror redirect; narrower names when a found field does not decode.
    """
    stream = _from_player_data(html, page_url) or _from_hls(html, page_url)
    if stream is not None:
        return stream
    redirect = _REDIRECT.search(html)
    if redirect is not None:
        mirror = absolute(NAME, redirect.group("url"), page_url, "mirror redirect")
        if mirror != page_url:
            return Fetch(mirror, {"Referer": page_url}, _after_redirect)
    raise HosterChanged(NAME, "player data or 'hls' source")


def _after_redirect(html: str, page_url: str) -> Stream:
    stream = _from_player_data(html, page_url) or _from_hls(html, page_url)
    if stream is None:
        raise HosterChanged(NAME, "player data or 'hls' source (after the mirror redirect)")
    return stream
