"""A fake provider site (the aniworld.to / s.to site engine) on a real HTTP server (hypercorn
on 127.0.0.1, a free port).

Pages follow the public sites' markup (see :mod:`hathd.anime.providers.aniworld` for the
structure): ``POST /ajax/search`` (form ``keyword``) answers a JSON array; series, season,
film and episode pages under ``/anime/stream/<key>`` (or ``/serie/stream/<key>``);
``/redirect/<id>`` answers ``302`` to the hoster page of that link; the series page names
``/public/img/cover/<key>-cover.jpg`` as the cover, served from :attr:`FakeProviderSite.covers`
(404 for a key without one). The fake also plays the
hoster: ``/e/<id>`` is a Vidoza embed page whose source is ``/media/<id>.mp4`` (bytes that
start like an MP4 file). Hostile switches: :attr:`FakeProviderSite.changed` (page kinds served
with a changed markup), :attr:`FakeProviderSite.loop` (the redirects form a loop).
"""

from __future__ import annotations

import html
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qs

import attrs

from fakes.asgi import Receive, Scope, Send, lifespan, read_body, serving

FLAGS = {
    "de-dub": ("german.svg", "Deutsch/German"),
    "de-sub": ("japanese-german.svg", "Mit deutschem Untertitel"),
    "en-sub": ("japanese-english.svg", "Englisch/English"),
    "en-dub": ("english.svg", "Englisch"),
}
LANG_IDS = {"de-dub": "1", "en-sub": "2", "de-sub": "3", "en-dub": "2"}


def media_bytes(link_id: int, size: int = 4096) -> bytes:
    """The body of ``/media/<link_id>.mp4``: an ``ftyp`` box, then filler."""
    head = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    return head + bytes([link_id % 251]) * (size - len(head))


@attrs.define
class FakeEpisode:
    """An episode: number, German and English title, languages and hosters offered."""

    number: int
    title_de: str
    title_en: str
    languages: tuple[str, ...] = ("de-dub", "de-sub")
    hosters: tuple[str, ...] = ("VOE", "Vidoza")


@attrs.define
class FakeSeries:
    """A series: key, name, years, description, seasons ``{number: [episodes]}`` (0 = films)."""

    key: str
    name: str
    start: int
    end: str = "Heute"
    description: str = "A series."
    seasons: dict[int, list[FakeEpisode]] = attrs.field(factory=dict)


@attrs.define
class FakeProviderSite:
    """The site's catalogue, its request log and the hostile switches."""

    prefix: str = "/anime/stream"
    series: dict[str, FakeSeries] = attrs.field(factory=dict)
    port: int = 0
    requests: list[tuple[str, str]] = attrs.field(factory=list)
    changed: set[str] = attrs.field(factory=set)
    loop: bool = False
    links: dict[int, tuple[str, int, int, str, str]] = attrs.field(factory=dict)
    """``link id → (key, season, episode, hoster, language)``."""
    covers: dict[str, tuple[str, bytes]] = attrs.field(factory=dict)
    """``series key → (Content-Type, bytes)`` of its cover image."""

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def link_id(self, key: str, season: int, number: int, hoster: str, lang: str) -> int:
        """The stable id of one hoster link."""
        for lid, value in self.links.items():
            if value == (key, season, number, hoster, lang):
                return lid
        lid = 1000 + len(self.links)
        self.links[lid] = (key, season, number, hoster, lang)
        return lid

    # -- pages -----------------------------------------------------------------------------

    def _season_href(self, key: str, season: int) -> str:
        return (
            f"{self.prefix}/{key}/filme" if season == 0 else f"{self.prefix}/{key}/staffel-{season}"
        )

    def _episode_href(self, key: str, season: int, number: int) -> str:
        if season == 0:
            return f"{self.prefix}/{key}/filme/film-{number}"
        return f"{self.prefix}/{key}/staffel-{season}/episode-{number}"

    def search(self, keyword: str) -> list[dict[str, str]]:
        """The search answer."""
        found: list[dict[str, str]] = []
        for s in self.series.values():
            if keyword.casefold() in s.name.casefold():
                marked = html.escape(s.name).replace(
                    html.escape(keyword), f"<em>{html.escape(keyword)}</em>"
                )
                found.append(
                    {
                        "title": marked,
                        "description": s.description[:80],
                        "link": f"{self.prefix}/{s.key}",
                    }
                )
        found.append({"title": "Anime-Anfragen", "description": "", "link": "/support/anfragen"})
        return found

    def series_page(self, s: FakeSeries) -> str:
        """The series page."""
        e = html.escape
        seasons = "".join(
            f'<li><a href="{self._season_href(s.key, n)}" title="Staffel {n}">'
            f"{'Filme' if n == 0 else n}</a></li>"
            for n in sorted(s.seasons)
        )
        title = (
            f'<div class="series-title"><h1 title="{e(s.name)}"><span>{e(s.name)}</span></h1>'
            if "series" not in self.changed
            else f'<div class="title-v2"><h1>{e(s.name)}</h1>'
        )
        return _page(
            s.name,
            f"""<section class="seriesContentBox"><div class="container row">
<div class="seriesCoverBox"><img src="/public/img/loading.gif"
 data-src="/public/img/cover/{s.key}-cover.jpg" alt="{e(s.name)}" itemprop="image"></div>
{title}
<small><span itemprop="startDate"><a href="/animes/{s.start}">{s.start}</a></span> -
<span itemprop="endDate"><a href="/animes/{s.end}">{e(s.end)}</a></span></small></div>
<p class="seri_des" itemprop="accessibilityAPI" data-description-type="review"
 data-full-description="{e(s.description)}">{e(s.description[:40])}</p>
</div></section>
<div id="stream" class="hosterSiteDirectNav"><ul>
<li><span><strong>Staffeln:</strong></span></li>{seasons}</ul>
<ul><li><span><strong>Episoden:</strong></span></li></ul></div>""",
        )

    def season_page(self, s: FakeSeries, season: int) -> str:
        """A season (or films) page."""
        e = html.escape
        rows = []
        for ep in s.seasons[season]:
            href = self._episode_href(s.key, season, ep.number)
            flags = "".join(
                f'<img class="flag" src="/public/img/{FLAGS[lang][0]}" title="{FLAGS[lang][1]}">'
                for lang in ep.languages
            )
            icons = "".join(f'<i class="icon {h}" title="{h}"></i>' for h in ep.hosters)
            number = (
                ""
                if "season" in self.changed
                else (f'<meta itemprop="episodeNumber" content="{ep.number}">')
            )
            rows.append(
                f"""<tr data-episode-id="{ep.number + 5000}" data-episode-season-id="{
                    ep.number if "season" not in self.changed else "x"
                }" itemprop="episode" itemscope="">
<td class="season{season}EpisodeID">{number}<a itemprop="url" href="{href}">Folge {
                    ep.number
                }</a></td>
<td class="seasonEpisodeTitle"><a href="{href}"><strong>{e(ep.title_de)}</strong> - <span>{
                    e(ep.title_en)
                }</span></a></td>
<td><a href="{href}">{icons}</a></td>
<td class="editFunctions"><a href="{href}">{flags}</a></td></tr>"""
            )
        table = "table" if "season-table" not in self.changed else "div"
        return _page(
            s.name,
            f'<{table} class="seasonEpisodesList" data-season-id="{season}"><tbody>'
            + "".join(rows)
            + f"</tbody></{table}>",
        )

    def episode_page(self, s: FakeSeries, season: int, number: int) -> str:
        """An episode page with its hoster list."""
        ep = next(x for x in s.seasons[season] if x.number == number)
        box = "".join(
            f'<img data-lang-key="{LANG_IDS[lang]}" src="/public/img/{FLAGS[lang][0]}" '
            f'title="{FLAGS[lang][1]}" class="">'
            for lang in ep.languages
        )
        items = []
        for lang in ep.languages:
            for hoster in ep.hosters:
                lid = self.link_id(s.key, season, number, hoster, lang)
                items.append(
                    f'<li class="col-md-3 col-xs-12 col-sm-6 episodeLink{lid}" '
                    f'data-lang-key="{LANG_IDS[lang]}" data-link-id="{lid}" '
                    f'data-link-target="/redirect/{lid}" data-external-embed="false">'
                    f'<div><a class="watchEpisode" itemprop="url" href="/redirect/{lid}" '
                    f'target="_blank"><i class="icon {hoster}" title="Hoster {hoster}"></i>'
                    f'<h4>{hoster}</h4><div class="hosterSiteVideoButton">Video ansehen</div>'
                    "</a></div></li>"
                )
        hoster_box = (
            '<div class="hosterSiteVideo"><div class="changeLanguageBox">'
            + box
            + '</div><ul class="row">'
            + "".join(items)
            + "</ul></div>"
        )
        if "episode" in self.changed:
            hoster_box = (
                '<div class="player-v2"><ul>'
                + "".join(items).replace("data-link-target", "data-target")
                + "</ul></div>"
            )
        return _page(f"{s.name} Episode {number}", hoster_box)

    # -- ASGI ------------------------------------------------------------------------------

    def route(
        self, method: str, path: str, form: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        """``(status, headers, body)`` of one request."""
        html_type = {"content-type": "text/html; charset=utf-8"}
        if method == "POST" and path == "/ajax/search":
            body = json.dumps(self.search(form.get("keyword", "")))
            if "search" in self.changed:
                body = "<html>Wartungsarbeiten</html>"
            return 200, {"content-type": "application/json"}, body.encode()
        if path.startswith("/redirect/"):
            lid = int(path.rsplit("/", 1)[1])
            target = (
                f"/redirect/{lid + 1 if lid % 2 == 0 else lid - 1}" if self.loop else f"/e/{lid}"
            )
            return 302, {"location": target}, b""
        if path.startswith("/e/"):
            lid = int(path.rsplit("/", 1)[1])
            mp4 = f"{self.base_url}/media/{lid}.mp4"
            page = (
                "<!DOCTYPE html><html><head><title>Vidoza</title></head><body>"
                f'<video id="player"><source src="{mp4}" type="video/mp4"></video>'
                f'<script>window.pData = {{ sourcesCode: [{{ src: "{mp4}", type: "video/mp4",'
                ' label:"SD", res:"720"}] };</script></body></html>'
            )
            return 200, html_type, page.encode()
        if path.startswith("/public/img/cover/") and path.endswith("-cover.jpg"):
            found = self.covers.get(path.rsplit("/", 1)[1].removesuffix("-cover.jpg"))
            if found is None:
                return 404, html_type, b"<html>404</html>"
            return 200, {"content-type": found[0]}, found[1]
        if path.startswith("/media/"):
            lid = int(path.rsplit("/", 1)[1].split(".")[0])
            return 200, {"content-type": "video/mp4"}, media_bytes(lid)
        if not path.startswith(self.prefix + "/"):
            return 404, html_type, b"<html>404</html>"
        parts = path[len(self.prefix) + 1 :].strip("/").split("/")
        s = self.series.get(parts[0])
        if s is None:
            return 404, html_type, b"<html>404</html>"
        try:
            if len(parts) == 1:
                return 200, html_type, self.series_page(s).encode()
            season = 0 if parts[1] == "filme" else int(parts[1].removeprefix("staffel-"))
            if len(parts) == 2:
                return 200, html_type, self.season_page(s, season).encode()
            number = int(parts[2].removeprefix("film-").removeprefix("episode-"))
            return 200, html_type, self.episode_page(s, season, number).encode()
        except (KeyError, ValueError, StopIteration):
            return 404, html_type, b"<html>404</html>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await lifespan(scope, receive, send):
            return
        body = await read_body(receive)
        method, path = scope["method"], scope["path"]
        self.requests.append((method, path))
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        status, headers, payload = self.route(method, path, form)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in headers.items()]
                + [(b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="de"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)} | AniWorld.to - Animes gratis online ansehen</title>"
        '<link rel="stylesheet" href="/public/css/style.css"></head><body>'
        '<header class="main-header"><nav><a href="/">AniWorld</a></nav></header>'
        f'<div id="wrapper">{body}</div><footer>AniWorld</footer>'
        '<script src="/public/js/default.js"></script></body></html>'
    )


@asynccontextmanager
async def open_fake_provider(
    site: FakeProviderSite | None = None,
) -> AsyncIterator[FakeProviderSite]:
    """Serve ``site`` on 127.0.0.1 (free port) for the ``with`` block."""
    fake = site or FakeProviderSite()
    async with serving(fake) as port:
        fake.port = port
        yield fake


def catalogue() -> dict[str, FakeSeries]:
    """The test catalogue: a plain series with a film, and one with a hostile name."""

    def eps(n: int, langs: tuple[str, ...] = ("de-dub", "de-sub")) -> list[FakeEpisode]:
        return [FakeEpisode(i, f"Folge {i}", f"Episode {i}", langs) for i in range(1, n + 1)]

    return {
        "frieren": FakeSeries(
            "frieren",
            "Frieren",
            2023,
            "Heute",
            "An elf mage outlives her party.",
            {0: [FakeEpisode(1, "Der Film", "The Movie", ("de-sub",))], 1: eps(4), 2: eps(2)},
        ),
        "acdc-live": FakeSeries(
            "acdc-live",
            "AC/DC: ../Live\x07 \U0001f3b8",
            2001,
            "2002",
            "Hostile.",
            {1: [FakeEpisode(1, "Ende/Anfang", "End/../Start\x1b[31m", ("en-sub",))]},
        ),
    }
