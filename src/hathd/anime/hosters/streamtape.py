"""Streamtape: the download link is assembled in the page's script.

Public origin of the pattern: AniWorld-Downloader (github.com/phoenixthrush/AniWorld-Downloader,
``src/aniworld/extractors/provider/streamtape.py``) and the Streamtape extractors of other
public downloaders: the page sets ``document.getElementById('robotlink').innerHTML =
'//streamtape.com/get_video?id=…&expires=…&ip=…&token=' + ('xyz…').substring(1).substring(2);``
(the literal before ``+`` is the URL without its token; the parenthesised literal, cut by the
chained ``substring(n)`` calls, is the token). ``get_video`` answers with a redirect to the
file; ``&stream=1`` asks for the file itself rather than a download page.
"""

from __future__ import annotations

import re

from hathd.anime.hosters import HosterChanged, Stream, absolute, origin

NAME = "streamtape"
_ROBOTLINK = re.compile(
    r"""getElementById\(\s*['"](?:robotlink|norobotlink)['"]\s*\)\.innerHTML\s*=\s*"""
    r"""(['"])(?P<head>[^'"]*)\1\s*\+\s*\(\s*(['"])(?P<tail>[^'"]*)\3\s*\)"""
    r"""(?P<cuts>(?:\.substring\(\s*\d+\s*\))*)"""
)
_CUT = re.compile(r"\.substring\(\s*(\d+)\s*\)")


def resolve(html: str, page_url: str) -> Stream:
    """The ``get_video`` URL of a Streamtape page (``kind="direct"``).

    :raises HosterChanged: ``robotlink`` when the assignment is missing, ``get_video id``
        when the assembled URL lacks its ``id``.
    """
    found = _ROBOTLINK.search(html)
    if found is None:
        raise HosterChanged(NAME, "robotlink")
    tail = found.group("tail")
    for cut in _CUT.findall(found.group("cuts")):
        tail = tail[int(cut) :]
    link = found.group("head") + tail
    if "get_video" not in link or "id=" not in link:
        raise HosterChanged(NAME, "get_video id")
    url = absolute(NAME, link, page_url, "robotlink")
    if "stream=" not in url:
        url += "&stream=1"
    return Stream(url, "direct", {"Referer": origin(page_url)})
