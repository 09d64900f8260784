"""Vidoza: the embed page's player setup lists the MP4 file.

Public origin of the pattern: AniWorld-Downloader (github.com/phoenixthrush/AniWorld-Downloader,
``src/aniworld/extractors/provider/vidoza.py``, ``get_direct_link_from_vidoza``) reads the
``src: "…"`` entry of the ``sourcesCode: [{…}]`` array in the page's player script; the page
also carries the plain ``<source src="…" type="video/mp4">`` element of its ``<video>`` tag,
used here as a second choice.
"""

from __future__ import annotations

import re

from hathd.anime.hosters import HosterChanged, Stream, absolute, origin

NAME = "vidoza"
_SOURCES_CODE = re.compile(r"sourcesCode\s*:\s*\[(?P<body>.*?)\]", re.DOTALL)
_SRC = re.compile(r"""\bsrc\s*:\s*(["'])(?P<url>[^"']+)\1""")
_SOURCE_TAG = re.compile(
    r"""<source\b[^>]*\bsrc\s*=\s*(["'])(?P<url>[^"']+)\1[^>]*\btype\s*=\s*["']video/mp4""",
    re.IGNORECASE,
)


def resolve(html: str, page_url: str) -> Stream:
    """The MP4 of a Vidoza embed page (``kind="direct"``, ``Referer`` = the page's origin).

    :raises HosterChanged: neither ``sourcesCode src`` nor a ``<source type=video/mp4>``.
    """
    block = _SOURCES_CODE.search(html)
    found = _SRC.search(block.group("body")) if block else None
    if found is None:
        found = _SOURCE_TAG.search(html)
    if found is None:
        raise HosterChanged(NAME, "sourcesCode src")
    url = absolute(NAME, found.group("url"), page_url, "sourcesCode src")
    return Stream(url, "direct", {"Referer": origin(page_url)})
