"""Filemoon: the player setup is hidden in Dean Edwards' "p.a.c.k.e.r" JavaScript.

Public origin of the pattern: AniWorld-Downloader (github.com/phoenixthrush/AniWorld-Downloader,
``src/aniworld/extractors/provider/filemoon.py``, its legacy HTML path) and yt-dlp's
``yt_dlp/extractor/filemoon.py``: the page holds ``eval(function(p,a,c,k,e,d){…}('…',base,
count,'w0|w1|…'.split('|')))``; unpacked, the JW Player setup reads ``sources:[{file:"…m3u8…"}]``.
Unpacking uses yt-dlp's ``yt_dlp.utils.decode_packed_codes``.
"""

from __future__ import annotations

import re

from yt_dlp.utils import decode_packed_codes  # type: ignore[import-untyped]

from hathd.anime.hosters import HosterChanged, Stream, absolute, origin

NAME = "filemoon"
_PACKED = re.compile(r"eval\(function\(p,a,c,k,e,[rd]\)")
_FILE = re.compile(r"""sources\s*:\s*\[\s*\{[^}]*?\bfile\s*:\s*(["'])(?P<url>[^"']+)\1""")


def resolve(html: str, page_url: str) -> Stream:
    """The HLS playlist (or MP4) of a Filemoon embed page.

    :raises HosterChanged: ``packed player script`` when there is none (or it does not
        unpack), ``sources file`` when the unpacked setup has no source.
    """
    if _PACKED.search(html) is None:
        raise HosterChanged(NAME, "packed player script")
    try:
        script = decode_packed_codes(html)
    except (AttributeError, ValueError, IndexError, TypeError):
        raise HosterChanged(NAME, "packed player script") from None
    found = _FILE.search(script)
    if found is None:
        raise HosterChanged(NAME, "sources file")
    url = absolute(NAME, found.group("url"), page_url, "sources file")
    if ".m3u8" in url.lower():
        return Stream(url, "hls", {"Referer": origin(page_url)})
    return Stream(url, "direct", {"Referer": origin(page_url)})
