"""The site engine of aniworld.to (anime) and s.to (series): both run the same software.

Page structure as served by the public sites (the same selectors the public
AniWorld-Downloader project reads):

- search: ``POST /ajax/search`` with form field ``keyword`` answers a JSON array of
  ``{"title", "description", "link"}``; ``title`` carries ``<em>`` marks around the match;
  ``link`` is ``/anime/stream/<key>`` (s.to: ``/serie/stream/<key>``) or some other page.
- series page ``/<prefix>/<key>``: ``div.series-title h1 span`` (name),
  ``p.seri_des[data-full-description]``, ``div.seriesCoverBox img[data-src]``,
  ``span[itemprop=startDate] a`` (year), ``span[itemprop=endDate] a`` (``Heute`` = ongoing),
  season links in the first ``div#stream ul`` (``staffel-N``, ``filme``).
- season page: ``table.seasonEpisodesList tr[data-episode-season-id]`` rows with
  ``meta[itemprop=episodeNumber]``, ``td.seasonEpisodeTitle`` (``strong`` German title,
  ``span`` English title), flag images ``img.flag`` in ``td.editFunctions``.
- episode page: ``li[data-link-target]`` per hoster with ``data-lang-key`` and ``h4`` (hoster
  name); ``div.changeLanguageBox img[data-lang-key]`` maps the language ids to flags.

Flags map to library languages: ``german.svg`` → ``de-dub``, ``japanese-german.svg`` →
``de-sub``, ``japanese-english.svg`` → ``en-sub``, ``english.svg`` → ``en-dub``. Without a
language box, the site's ids are used: aniworld.to 1/2/3 = German dub / English sub / German
sub; s.to 1/2/3 = German / English / German sub.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urljoin, urlsplit

import attrs
from parsel import Selector

from hathd.anime.model import EpisodeInfo, HosterLink, SearchHit, SeasonRef, SeriesInfo
from hathd.anime.providers.base import MarkupChanged

FLAG_LANGUAGES = {
    "german": "de-dub",
    "japanese-german": "de-sub",
    "japanese-english": "en-sub",
    "english": "en-dub",
    "english-german": "de-sub",
}
"""Flag image names (without ``.svg``/``.png``) → library language keys."""

_TAGS = re.compile(r"<[^>]*>")
_FLAG = re.compile(r"([a-z-]+)\.(?:svg|png)$")
_SEASON = re.compile(r"/staffel-(\d+)/?$")
_FILMS = re.compile(r"/filme/?$")
_ONGOING = {"heute", "today", ""}


def _text(sel: Selector | None) -> str:
    if sel is None:
        return ""
    return " ".join("".join(sel.xpath(".//text()").getall()).split())


def _flag_language(src: str) -> str | None:
    match = _FLAG.search(src.split("?")[0])
    return FLAG_LANGUAGES.get(match.group(1)) if match else None


@attrs.frozen
class SiteEngine:
    """One site of the engine: ``site`` name, configured ``base_url``, URL ``prefix``
    (``/anime/stream`` or ``/serie/stream``) and the ``lang_ids`` fallback map."""

    site: str
    base_url: str
    prefix: str
    lang_ids: dict[str, str] = attrs.field(factory=dict)

    @property
    def domain(self) -> str:
        """The host of :attr:`base_url`."""
        return (urlsplit(self.base_url).hostname or "").lower()

    def _abs(self, href: str) -> str:
        return urljoin(self.base_url.rstrip("/") + "/", href)

    def search_request(self, text: str) -> tuple[str, dict[str, str]]:
        """``POST <base>/ajax/search`` with ``keyword=text``."""
        return self._abs("/ajax/search"), {"keyword": text}

    def parse_search(self, body: bytes) -> list[SearchHit]:
        """Series matches of the search answer (other pages in the answer are left out).

        :raises MarkupChanged: the body is not a JSON array of objects with ``link``.
        """
        try:
            data = json.loads(body)
        except ValueError:
            raise MarkupChanged(self.site, "search", "JSON array") from None
        if not isinstance(data, list):
            raise MarkupChanged(self.site, "search", "JSON array")
        hits = []
        for item in data:
            if not isinstance(item, dict) or not isinstance(item.get("link"), str):
                raise MarkupChanged(self.site, "search", "link")
            url = self._abs(item["link"])
            key = self.key_from_url(url)
            if key is None or urlsplit(url).path.rstrip("/") != f"{self.prefix}/{key}":
                continue
            title = _TAGS.sub("", str(item.get("title", "")))
            description = _TAGS.sub("", str(item.get("description", "")))
            hits.append(SearchHit(self.site, key, " ".join(title.split()) or key, url, description))
        return hits

    def key_from_url(self, url: str) -> str | None:
        """The key of ``<base>/<prefix>/<key>[/...]`` (any host when the path matches), or of
        a bare key-shaped text."""
        if re.fullmatch(r"[a-z0-9][a-z0-9-]{0,199}", url):
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            return None
        if (parts.hostname or "").lower() != self.domain:
            return None
        path = parts.path
        if not path.startswith(self.prefix + "/"):
            return None
        key = path[len(self.prefix) + 1 :].split("/")[0]
        return key if re.fullmatch(r"[a-z0-9][a-z0-9-]{0,199}", key) else None

    def series_url(self, key: str) -> str:
        """``<base>/<prefix>/<key>``."""
        return self._abs(f"{self.prefix}/{key}")

    def parse_series(self, html: str, key: str, url: str) -> SeriesInfo:
        """The series page.

        :raises MarkupChanged: title or season list missing.
        """
        sel = Selector(text=html)
        title = sel.css("div.series-title h1 span")
        name = _text(title[0]) if title else ""
        if not name:
            raise MarkupChanged(self.site, "series", "title (div.series-title h1 span)", url)
        description = sel.css("p.seri_des::attr(data-full-description)").get() or _text(
            (sel.css("p.seri_des") or [None])[0]
        )
        cover = (
            sel.css("div.seriesCoverBox img::attr(data-src)").get()
            or sel.css("div.seriesCoverBox img::attr(src)").get()
        )
        start = (sel.css("span[itemprop=startDate] a::text").get() or "").strip()
        end = (sel.css("span[itemprop=endDate] a::text").get() or "").strip()
        year = int(start) if start.isdigit() else None
        status = "ongoing" if end.casefold() in _ONGOING else "completed"
        nav = sel.css("div#stream ul")
        if not nav:
            raise MarkupChanged(self.site, "series", "season list (div#stream ul)", url)
        seasons: list[SeasonRef] = []
        for href in nav[0].css("a::attr(href)").getall():
            absolute = self._abs(href)
            path = urlsplit(absolute).path
            if (m := _SEASON.search(path)) is not None:
                seasons.append(SeasonRef(int(m.group(1)), absolute))
            elif _FILMS.search(path):
                seasons.append(SeasonRef(0, absolute))
        if not seasons:
            raise MarkupChanged(self.site, "series", "season links (staffel-N, filme)", url)
        seasons.sort(key=lambda s: s.number)
        return SeriesInfo(
            key=key,
            name=name,
            description=" ".join(description.split()),
            cover_url=self._abs(cover) if cover else None,
            year=year,
            status=status,
            seasons=tuple(seasons),
        )

    def parse_season(self, html: str, season: int, url: str) -> list[EpisodeInfo]:
        """The episodes of a season (or film) page, in page order.

        :raises MarkupChanged: the episode table, a row's number or link is missing.
        """
        sel = Selector(text=html)
        table = sel.css("table.seasonEpisodesList")
        if not table:
            raise MarkupChanged(
                self.site, "season", "episode table (table.seasonEpisodesList)", url
            )
        episodes = []
        for row in table[0].css("tr[data-episode-season-id]"):
            number = row.css("meta[itemprop=episodeNumber]::attr(content)").get()
            if number is None or not number.strip().isdigit():
                number = row.attrib.get("data-episode-season-id", "")
            if not number.strip().isdigit():
                raise MarkupChanged(self.site, "season", "episode number", url)
            href = (
                row.css("td.seasonEpisodeTitle a::attr(href)").get()
                or row.css("a[itemprop=url]::attr(href)").get()
            )
            if not href:
                raise MarkupChanged(self.site, "season", "episode link", url)
            german = _text((row.css("td.seasonEpisodeTitle strong") or [None])[0])
            english = _text((row.css("td.seasonEpisodeTitle span") or [None])[0])
            languages = []
            for src in row.css("img.flag::attr(src)").getall():
                lang = _flag_language(src)
                if lang is not None and lang not in languages:
                    languages.append(lang)
            episodes.append(
                EpisodeInfo(
                    season=season,
                    number=int(number),
                    title=english or german,
                    url=self._abs(href),
                    languages=tuple(languages),
                )
            )
        return episodes

    def parse_episode(self, html: str, url: str) -> list[HosterLink]:
        """The hosters of an episode page, in page order.

        :raises MarkupChanged: no hoster list, or an entry without language, link or name.
        """
        sel = Selector(text=html)
        ids = dict(self.lang_ids)
        for img in sel.css("div.changeLanguageBox img[data-lang-key]"):
            lang = _flag_language(img.attrib.get("src", ""))
            if lang is not None:
                ids[img.attrib["data-lang-key"]] = lang
        entries = sel.css("li[data-link-target]")
        if not entries:
            if sel.css("div.hosterSiteVideo"):
                return []  # the page structure is there and lists no hoster
            raise MarkupChanged(self.site, "episode", "hoster list (div.hosterSiteVideo)", url)
        links = []
        for entry in entries:
            lang_id = entry.attrib.get("data-lang-key")
            if lang_id is None:
                raise MarkupChanged(self.site, "episode", "data-lang-key", url)
            name = _text((entry.css("h4") or [None])[0]).casefold()
            if not name:
                raise MarkupChanged(self.site, "episode", "hoster name (h4)", url)
            language = ids.get(lang_id)
            if language is None:
                continue  # a language the library does not know
            links.append(HosterLink(name, language, self._abs(entry.attrib["data-link-target"])))
        return links


def aniworld(base_url: str = "https://aniworld.to") -> SiteEngine:
    """The aniworld.to provider (anime) at ``base_url``."""
    return SiteEngine(
        "aniworld.to",
        base_url.rstrip("/"),
        "/anime/stream",
        {"1": "de-dub", "2": "en-sub", "3": "de-sub"},
    )


def sto(base_url: str = "https://s.to") -> SiteEngine:
    """The s.to provider (series) at ``base_url``."""
    return SiteEngine(
        "s.to", base_url.rstrip("/"), "/serie/stream", {"1": "de-dub", "2": "en-dub", "3": "de-sub"}
    )
