"""Story URLs: finding them in mail text and naming their site, with FanFicFare's own code.

- Extraction: ``fanficfare.geturls.get_urls_from_text`` / ``get_urls_from_html`` with
  ``foremail=True`` (XenForo mail links cleaned) and ``normalize=True`` (one URL per story).
- Identity: the adapter's ``storyUrl`` metadata, the URL FanFicFare writes into the EPUB
  (``<dc:identifier opf:scheme="URL">``) and calibre stores as the ``url:`` identifier.
- Site key: the adapter's ``getSiteDomain()`` (``www.fanfiction.net``, ``test1.com``), which
  is also the job's politeness domain (one download at a time per site).

Source: ``fanficfare/geturls.py`` and ``fanficfare/adapters/__init__.py`` (FanFicFare 4.62).
These calls are blocking (``cleanup_url`` may follow a RoyalRoad redirect over the network):
call them through ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import functools
import html as html_lib
import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

import attrs

from hathd.errors import PermanentError
from hathd.fanfic.mail import MailText

log = logging.getLogger(__name__)

_lock = threading.Lock()  # FanFicFare's adapter registry and configuration are not thread-safe


@attrs.frozen
class Story:
    """One story: ``url`` is FanFicFare's ``storyUrl``, ``site`` its ``getSiteDomain()``."""

    url: str
    site: str


def _quiet() -> None:
    # FanFicFare logs every configuration build at DEBUG on its own handler.
    logging.getLogger("fanficfare").setLevel(logging.WARNING)


def _configuration(site: str = "test1.com") -> Any:
    from fanficfare.configurable import Configuration

    # FanFicFare logs every configuration build at DEBUG on its own handler.
    logging.getLogger("fanficfare").setLevel(logging.WARNING)

    return Configuration([site], "EPUB", lightweight=True)


def identify(url: str) -> Story:
    """The :class:`Story` behind ``url`` (any chapter or mobile URL of it); results are
    cached (one adapter construction costs ~10 ms).

    Blocking (see module docstring).

    :raises PermanentError: FanFicFare knows no adapter for the URL (``UnknownSite``) or the
        URL is not a story URL of that site (``InvalidStoryURL``).
    """
    return _identify(url.strip())


@functools.lru_cache(maxsize=4096)
def _identify(url: str) -> Story:
    from fanficfare import adapters, exceptions

    with _lock:
        try:
            adapter = adapters.getAdapter(_configuration(), url)
        except exceptions.UnknownSite as exc:
            raise PermanentError(f"no FanFicFare adapter for {url!r}: {exc}") from None
        except (exceptions.InvalidStoryURL, exceptions.FailedToDownload) as exc:
            raise PermanentError(f"not a story URL: {url!r}: {exc}") from None
        return Story(str(adapter.story.getMetadata("storyUrl")), str(adapter.getSiteDomain()))


def _quiet_extract(fn: Any, data: str) -> list[str]:
    try:
        urls: list[str] = fn(data, normalize=True, foremail=True)
    except Exception as exc:  # FanFicFare parsing trouble must not stop the mailbox
        log.warning("story URL extraction failed: %s", exc)
        return []
    return urls


_CANDIDATE = re.compile(r"https?://[^\s<>\"'()\[\]{}]+", re.IGNORECASE)


def _site_of(url: str) -> str | None:
    """The FanFicFare site domain whose adapter handles ``url``'s host, or ``None``; a table
    look-up, no network."""
    from fanficfare import adapters

    try:
        cls, _fixed = adapters._get_class_for(url)
        return str(cls.getSiteDomain()) if cls is not None else None
    except Exception:
        return None


def dropped_urls(texts: Iterable[str], stories: Iterable[Story]) -> list[tuple[str, str]]:
    """``(url, site)`` for each distinct link in ``texts`` (plain text or HTML) on a site
    FanFicFare supports when no story of that site was found: links FanFicFare dropped
    (not a story URL, or the site could not be reached to tell). Blocking."""
    sites = {story.site for story in stories}
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for text in texts:
        for url in _CANDIDATE.findall(html_lib.unescape(text)):
            url = url.rstrip(".,;:!?")
            if url in seen:
                continue
            seen.add(url)
            site = _site_of(url)
            if site is not None and site not in sites:
                out.append((url, site))
    return out


def stories_in_text(plain: Iterable[str] = (), html: Iterable[str] = ()) -> list[Story]:
    """Every distinct story in the given plain-text and HTML bodies, in order of appearance.

    URLs FanFicFare does not recognise are dropped; links to a site FanFicFare supports that
    gave no story of that site are logged (INFO, :func:`dropped_urls`). Blocking (see module
    docstring). A part FanFicFare cannot parse yields no URLs (logged); other exceptions
    (an adapter failing unexpectedly) propagate.
    """
    from fanficfare import geturls

    plain = list(plain)
    html = list(html)
    found: list[str] = []
    _quiet()
    with _lock:
        for text in plain:
            found += _quiet_extract(geturls.get_urls_from_text, text)
        for text in html:
            found += _quiet_extract(geturls.get_urls_from_html, text)
    stories: list[Story] = []
    seen: set[str] = set()
    for url in found:
        try:
            story = identify(url)
        except PermanentError as exc:
            log.info("skipping %s: %s", url, exc)
            continue
        if story.url not in seen:
            seen.add(story.url)
            stories.append(story)
    with _lock:
        dropped = dropped_urls([*plain, *html], stories)
    for url, site in dropped:
        log.info("FanFicFare found no story in %s (site %s)", url, site)
    return stories


def stories_in_mail(text: MailText) -> list[Story]:
    """Every distinct story linked from a mail's text and HTML parts. Blocking."""
    return stories_in_text(text.plain, text.html)


def calibre_search(url: str) -> str | None:
    """The calibre search expression finding the book of story ``url``, as FanFicFare's own
    calibre plugin builds it (``adapters.get_url_search``): a regex on the ``url``/``uri``
    identifier that accepts http and https and, for sites whose URLs carry a changing title
    (fanfiction.net), any title. ``None`` when FanFicFare cannot build one."""
    from fanficfare import adapters

    _quiet()
    try:
        return str(adapters.get_url_search(url))
    except Exception:
        return None
