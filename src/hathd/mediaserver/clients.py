"""The refresh calls of Jellyfin and Plex (thin httpx code, one request each).

Jellyfin (https://api.jellyfin.org, operation ``PostUpdatedMedia``; the body is the
``MediaUpdateInfoDto`` of the Jellyfin SDKs, https://typescript-sdk.jellyfin.org):
``POST /Library/Media/Updated`` with ``{"Updates": [{"Path": folder, "UpdateType":
"Created"}]}`` and the API key in ``Authorization: MediaBrowser Token="<key>"``; answers
``204``. Jellyfin then scans only the library folder that holds the path.

Plex (https://www.plexopedia.com/plex-media-server/api/library/scan-partial/ and
``/library/sections``, https://www.plexopedia.com/plex-media-server/api/server/libraries/):
``GET /library/sections`` lists the libraries, each a ``<Directory key=…>`` with its
``<Location path=…>`` folders; the section whose location holds the folder (the longest
match) is scanned partially with ``GET /library/sections/{key}/refresh?path=<folder>``. The
token goes in the ``X-Plex-Token`` header.

Errors are classified for the engine: a refused token (``401``/``403``) or a folder no Plex
library holds is a :class:`~hathd.errors.PermanentError`; ``429`` a
:class:`~hathd.errors.RateLimitedError`; other statuses and network failures
:class:`~hathd.errors.RetryableError`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import PurePosixPath
from urllib.parse import quote

import httpx

from hathd.errors import PermanentError, RateLimitedError, RetryableError
from hathd.retryafter import parse_retry_after

USER_AGENT = "hathd-media-refresh"
MAX_SECTIONS_BYTES = 4 * 1024 * 1024
"""Largest ``/library/sections`` reply read (bytes)."""


def _check(reply: httpx.Response, what: str) -> None:
    status = reply.status_code
    if 200 <= status < 300:
        return
    if status in (401, 403):
        raise PermanentError(f"{what}: the server refused the token (HTTP {status})")
    if status == 429:
        raise RateLimitedError(f"{what}: HTTP 429", parse_retry_after(reply.headers))
    if status == 404:
        raise PermanentError(f"{what}: HTTP 404 (is this the right kind of server?)")
    raise RetryableError(f"{what}: HTTP {status}")


async def jellyfin_refresh(
    client: httpx.AsyncClient, base_url: str, token: str, folder: str
) -> None:
    """Tell Jellyfin at ``base_url`` that ``folder`` (as Jellyfin sees it) has new files.

    :raises PermanentError: token refused, or no such endpoint.
    :raises RetryableError: network trouble or another error status.
    """
    url = base_url.rstrip("/") + "/Library/Media/Updated"
    body = {"Updates": [{"Path": folder, "UpdateType": "Created"}]}
    headers = {"Authorization": f'MediaBrowser Token="{token}"', "User-Agent": USER_AGENT}
    try:
        reply = await client.post(url, json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise RetryableError(f"jellyfin: {type(exc).__name__}: {exc}") from None
    _check(reply, "jellyfin")


def plex_section_for(sections_xml: bytes, folder: str) -> str | None:
    """The ``key`` of the Plex library whose ``Location`` holds ``folder`` (the longest
    location wins), or ``None``.

    :raises RetryableError: the reply is not the XML of ``/library/sections``.
    """
    try:
        root = ET.fromstring(sections_xml)
    except ET.ParseError as exc:
        raise RetryableError(f"plex: unreadable /library/sections reply: {exc}") from None
    target = PurePosixPath(folder)
    best: tuple[int, str] | None = None
    for directory in root.iter("Directory"):
        key = directory.get("key")
        if not key:
            continue
        for location in directory.iter("Location"):
            path = location.get("path")
            if not path:
                continue
            loc = PurePosixPath(path)
            if (target == loc or loc in target.parents) and (
                best is None or len(loc.parts) > best[0]
            ):
                best = (len(loc.parts), key)
    return None if best is None else best[1]


async def plex_refresh(client: httpx.AsyncClient, base_url: str, token: str, folder: str) -> str:
    """Scan ``folder`` (as Plex sees it) in the Plex library that holds it; returns the
    section key.

    :raises PermanentError: token refused, or no library holds ``folder``.
    :raises RetryableError: network trouble or another error status.
    """
    base = base_url.rstrip("/")
    headers = {"X-Plex-Token": token, "Accept": "application/xml", "User-Agent": USER_AGENT}
    try:
        listing = await client.get(f"{base}/library/sections", headers=headers)
    except httpx.HTTPError as exc:
        raise RetryableError(f"plex: {type(exc).__name__}: {exc}") from None
    _check(listing, "plex /library/sections")
    if len(listing.content) > MAX_SECTIONS_BYTES:
        raise RetryableError("plex: /library/sections reply too large")
    key = plex_section_for(listing.content, folder)
    if key is None:
        raise PermanentError(f"plex: no library holds {folder}")
    try:
        reply = await client.get(
            f"{base}/library/sections/{quote(key, safe='')}/refresh",
            params={"path": folder},
            headers=headers,
        )
    except httpx.HTTPError as exc:
        raise RetryableError(f"plex: {type(exc).__name__}: {exc}") from None
    _check(reply, "plex refresh")
    return key
