"""The anime library service: providers, store, scan and the queueing of missing episodes.

Events go to the bus room ``anime``: ``scan-progress`` ``{"folder", "index", "total",
"episodes", "error"}`` per folder, ``scan-done`` ``{"folders", "matched", "unmatched",
"errors"}``, ``queued`` ``{"series", "jobs"}``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from hathd.anime.config import AnimeConfig
from hathd.anime.fetch import ProviderFetcher
from hathd.anime.model import EpisodeInfo, SearchHit, Series
from hathd.anime.naming import (
    episode_dest,
    is_confined,
    series_folder,
)
from hathd.anime.preferences import order_candidates
from hathd.anime.providers.aniworld import SiteEngine
from hathd.anime.providers.base import ProviderError
from hathd.anime.scanrun import ScanRun
from hathd.anime.store import AnimeStore
from hathd.engine.api import EngineAPI, InvalidInput, JobSpec
from hathd.events import EventBus

log = logging.getLogger(__name__)

KIND = "anime-episode"
"""The job kind of one episode download."""


class LibraryError(ValueError):
    """Bad input to the library (unknown series or site, bad range); the API answers 400."""


def parse_range(text: str | None) -> set[int] | None:
    """``"1-12"``, ``"3"``, ``"1,4,7-9"`` → episode numbers; ``None`` → all.

    :raises LibraryError: not such a list.
    """
    if text is None or not text.strip():
        return None
    numbers: set[int] = set()
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise LibraryError(f"episodes: expected a list like 1-12,15; got {text!r}")
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a or b - a > 10_000:
            raise LibraryError(f"episodes: bad range {part.strip()!r}")
        numbers.update(range(a, b + 1))
    return numbers


class AnimeLibrary:
    """The library: ``root`` folder, ``providers`` by site, the store, the engine (``None``
    when jobs cannot be queued) and the event bus."""

    def __init__(
        self,
        *,
        config: AnimeConfig,
        root: Path,
        db: AnimeStore,
        providers: Sequence[SiteEngine],
        fetcher: ProviderFetcher,
        engine: EngineAPI | None,
        bus: EventBus,
    ) -> None:
        self.config = config
        self.root = root
        self.db = db
        self.providers = {p.site: p for p in providers}
        self.fetcher = fetcher
        self.engine = engine
        self.bus = bus
        self.scan_lock = trio.Lock()
        self.last_scan: dict[str, Any] | None = None

    # -- providers -------------------------------------------------------------------------

    def provider(self, site: str) -> SiteEngine:
        """:raises LibraryError: unknown site."""
        try:
            return self.providers[site]
        except KeyError:
            known = ", ".join(sorted(self.providers))
            raise LibraryError(f"site: unknown {site!r}; known: {known}") from None

    async def locate(self, ref: str, site: str | None = None) -> tuple[SiteEngine, str]:
        """The provider and key of ``ref``: a series/season/episode URL of a provider, or a key
        (its stored site, else ``site``, else aniworld.to).

        :raises LibraryError: neither a provider URL nor a key.
        """
        for provider in self.providers.values():
            key = provider.key_from_url(ref)
            if key is not None:
                return provider, key
        if "://" in ref or not ref or not all(c.isalnum() or c == "-" for c in ref):
            raise LibraryError(
                f"not a series URL of {', '.join(self.providers)} nor a key: {ref!r}"
            )
        stored = await self.db.series(ref)
        return self.provider(stored.site if stored else site or "aniworld.to"), ref

    async def search(self, text: str, site: str | None = None) -> list[SearchHit]:
        """Search one site or all.

        :raises ProviderError: a request failed or the answer changed shape.
        """
        if not text.strip():
            raise LibraryError("text: empty search")
        sites = [self.provider(site)] if site else list(self.providers.values())
        hits: list[SearchHit] = []
        for provider in sites:
            url, form = provider.search_request(text)
            hits += provider.parse_search(await self.fetcher.request("POST", url, form=form))
        return hits

    async def refresh(
        self, ref: str, *, site: str | None = None, seasons: set[int] | None = None
    ) -> Series:
        """Read a series from its provider (series page, then each season page, or only
        ``seasons``) and store it with what it offers.

        :raises ProviderError: a page failed or changed (nothing is stored then).
        :raises LibraryError: bad ``ref``.
        """
        provider, key = await self.locate(ref, site)
        url = provider.series_url(key)
        info = provider.parse_series(await self.fetcher.get_text(url), key, url)
        offered: list[EpisodeInfo] = []
        for season in info.seasons:
            if seasons is not None and season.number not in seasons:
                continue
            html = await self.fetcher.get_text(season.url)
            offered += provider.parse_season(html, season.number, season.url)
        await self.db.upsert_series(provider.site, info)
        await self.db.offer_episodes(key, offered)
        stored = await self.db.series(key)
        assert stored is not None
        if stored.folder is None:
            await self.db.set_folder(key, series_folder(info.name, info.year))
        await self.db.set_checked(key, time.time())
        result = await self.db.series(key)
        assert result is not None
        return result

    # -- queueing --------------------------------------------------------------------------

    def dest(self, series: Series, season: int, number: int, title: str) -> str:
        """The episode's destination relative to the root, without extension; the series'
        existing folder is kept."""
        dest = episode_dest(series.name, series.year, season, number, title)
        if series.folder:
            dest = series.folder + dest[dest.index("/") :]
        if not is_confined(dest):
            raise LibraryError(f"folder of {series.key!r} is not a plain name: {series.folder!r}")
        return dest

    async def queue(
        self,
        key: str,
        *,
        seasons: set[int] | None = None,
        episodes: set[int] | None = None,
        languages: Sequence[str] | None = None,
        priority: int | None = None,
    ) -> list[dict[str, Any]]:
        """Queue one ``anime-episode`` job per missing episode (of ``seasons`` / ``episodes``
        when given): the episode page is read for its hosters, ordered by the preferences.
        Returns ``[{"season", "episode", "job", "created"} | {"season", "episode", "skipped"}]``.

        :raises LibraryError: unknown series, no engine, or a stored folder name that would
            leave the library root.
        :raises ProviderError: an episode page failed or changed.
        """
        if self.engine is None:
            raise LibraryError("the job engine is not running")
        series = await self.db.series(key)
        if series is None:
            raise LibraryError(f"unknown series {key!r}: add it first")
        provider = self.provider(series.site)
        langs = list(languages or self.config.languages)
        out: list[dict[str, Any]] = []
        for ep in await self.db.missing(key):
            if seasons is not None and ep.season not in seasons:
                continue
            if episodes is not None and ep.number not in episodes:
                continue
            if ep.url is None:
                continue
            if ep.languages and not set(ep.languages) & set(langs):
                out.append({"season": ep.season, "episode": ep.number, "skipped": "language"})
                continue
            links = provider.parse_episode(await self.fetcher.get_text(ep.url), ep.url)
            candidates = order_candidates(links, langs, self.config.hosters)
            if not candidates:
                reason = f"no hoster in {', '.join(langs)}"
                out.append({"season": ep.season, "episode": ep.number, "skipped": reason})
                continue
            spec = JobSpec(
                kind=KIND,
                target=ep.url,
                domain=provider.domain,
                params={
                    "series_key": key,
                    "season": ep.season,
                    "episode": ep.number,
                    "dest": self.dest(series, ep.season, ep.number, ep.title),
                    "candidates": [c.to_json() for c in candidates],
                },
                priority=self.config.priority if priority is None else priority,
                source="anime",
                source_id=key,
                dedupe_key=f"{key}/S{ep.season:02d}E{ep.number:02d}",
            )
            try:
                submitted = await self.engine.submit(spec)
            except InvalidInput as exc:
                out.append({"season": ep.season, "episode": ep.number, "skipped": str(exc)})
                continue
            await self.db.link_job(submitted.job.id, key, ep.season, ep.number)
            out.append(
                {
                    "season": ep.season,
                    "episode": ep.number,
                    "job": submitted.job.id,
                    "created": submitted.created,
                }
            )
        self.bus.publish("anime", "queued", {"series": key, "jobs": out})
        return out

    async def landed(self, key: str, season: int, number: int, path: Path, size: int) -> None:
        """Record a placed episode file (``path`` absolute, inside the root)."""
        try:
            rel = str(path.relative_to(self.root))
        except ValueError:
            rel = str(path)
        await self.db.landed(key, season, number, rel, size)

    # -- scan and watchlist ----------------------------------------------------------------

    async def scan(self) -> dict[str, Any]:
        """Walk the library and record what is on disk; one scan at a time.

        Folders match a series by their ``key`` file, else by name. Returns
        ``{"folders", "matched", "unmatched": [names], "errors": [{"folder", "error"}]}``.

        :raises LibraryError: the root cannot be read.
        """
        async with self.scan_lock:
            run = ScanRun(
                db=self.db,
                bus=self.bus,
                known=await self.db.all_series(),
                digests=await self.db.scan_digests(),
                providers=set(self.providers),
            )
            try:
                found = await run.run(str(self.root))
            except OSError as exc:
                raise LibraryError(f"cannot read the library {self.root}: {exc.strerror}") from exc
            summary = found.as_json()
            self.last_scan = {**summary, "at": time.time()}
            self.bus.publish("anime", "scan-done", summary)
            return summary

    async def check_followed(self) -> list[dict[str, Any]]:
        """Rescan the library, then read every followed series from its provider and queue
        its missing episodes. A failing series is reported and the others go on. Returns
        ``[{"series", "queued"} | {"series", "error"}]``."""
        if await trio.Path(self.root).is_dir():
            await self.scan()
        report: list[dict[str, Any]] = []
        for series in await self.db.all_series():
            if not series.followed:
                continue
            try:
                await self.refresh(series.key)
                jobs = await self.queue(series.key)
            except (ProviderError, LibraryError) as exc:
                log.warning("anime: checking %s failed: %s", series.key, exc)
                report.append({"series": series.key, "error": str(exc)})
                continue
            report.append({"series": series.key, "queued": sum(1 for j in jobs if "job" in j)})
            if any(j.get("created") for j in jobs):
                self.bus.publish("anime", "watchlist-queued", {"series": series.key, "jobs": jobs})
        return report
