"""The anime library as a daemon plugin.

``setup`` migrates the ``anime`` tables, builds the providers (aniworld.to, s.to at their
configured base URLs), the library and the watchlist scheduler, and registers the
``anime-episode`` job kind. Services: ``anime-watchlist`` (the rescan schedule) and the
provider HTTP client's lifetime; ``anime-health`` (hoster health written to the store,
:mod:`hathd.anime.healthstore`).

Episode job contract (between the library, which queues, and :mod:`hathd.anime.episode`, which
downloads):

- kind ``"anime-episode"``; ``target`` = the episode page URL; ``domain`` = the provider's
  domain (e.g. ``aniworld.to``), so the engine's lane for that domain paces the jobs;
- ``params`` = ``{"series_key": str, "season": int, "episode": int, "dest": "<Series>
  (<year>)/Season 01/<Series> - S01E01 - <title>"`` (relative to the ``[anime] library``
  root, no extension; the handler adds the real one), ``"candidates": [{"hoster": "voe",
  "language": "de-dub", "url": "<absolute redirect URL on the provider>"}, ...]}`` in
  preference order (:func:`hathd.anime.preferences.order_candidates`);
- the handler comes from ``make_episode_handler(root=, health=, on_landed=, gate=,
  save_checkpoint=)`` and validation from ``validate_episode_spec``; ``on_landed`` receives an
  ``EpisodeLanded(series_key, season, episode, path, size, hoster, language)`` and updates
  ``anime_episodes``; the final hook removes part files of failed/cancelled jobs.
- language keys: ``de-dub``, ``de-sub``, ``en-sub``, ``en-dub``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from hathd.anime import episode as episode_job
from hathd.anime.config import AnimeConfig
from hathd.anime.covers import CoverCache
from hathd.anime.fetch import ProviderFetcher
from hathd.anime.gate import DomainGate
from hathd.anime.health import HosterHealth
from hathd.anime.healthstore import HealthKeeper
from hathd.anime.library import KIND, AnimeLibrary
from hathd.anime.providers.aniworld import aniworld, sto
from hathd.anime.store import AnimeStore
from hathd.anime.watchlist import Schedule, Scheduler
from hathd.config import Config
from hathd.engine.api import Job, JobState
from hathd.engine.lanes import LaneSettings, LaneTable
from hathd.runtime import BasePlugin, Runtime
from hathd.supervisor import ServiceSpec

if TYPE_CHECKING:
    import asyncclick as click
    from quart import Blueprint

log = logging.getLogger(__name__)

PROVIDER_LANE = LaneSettings(concurrency=2, rate=1.0, burst=2)
"""Politeness of a provider domain unless ``[engine.lanes]`` names it: 2 at once, 1 request
(or episode job) per second, burst 2."""


def library_root(config: AnimeConfig, state_dir: Path) -> Path:
    """``[anime] library``, else ``<state_dir>/anime``."""
    return Path(config.library) if config.library else state_dir / "anime"


class AnimeService:
    """The running library: store, providers, scheduler; what the API and hooks use."""

    def __init__(self, rt: Runtime) -> None:
        config = rt.config.anime
        self.root = library_root(config, rt.paths.state_dir)
        providers = [aniworld(config.aniworld_url), sto(config.sto_url)]
        table = LaneTable()
        for provider in providers:
            table.set(provider.domain, PROVIDER_LANE)
        for pattern, lane in rt.config.engine.lanes.items():
            table.set(pattern, LaneSettings(lane.concurrency, lane.rate, lane.burst))
        self.gate = DomainGate(table.settings_for)
        self.fetcher = ProviderFetcher(self.gate, timeout=config.request_timeout)
        self.db = AnimeStore(rt.store)
        self.covers = CoverCache(rt.paths.state_dir / "covers", self.fetcher)
        self.health = HosterHealth()
        self.health_keeper = HealthKeeper(self.health, self.db)
        self.library = AnimeLibrary(
            config=config,
            root=self.root,
            db=self.db,
            providers=providers,
            fetcher=self.fetcher,
            engine=rt.engine,
            bus=rt.bus,
        )
        self.scheduler = Scheduler(
            self._check,
            Schedule(config.rescan_interval, config.rescan_at),
            on_error=lambda exc: log.warning("anime: watchlist check failed: %s", exc),
        )
        self.last_report: list[dict[str, Any]] = []

    async def _check(self) -> None:
        self.last_report = await self.library.check_followed()
        await self.db.put_settings({"last_run": self.scheduler.last_run})

    async def load_settings(self) -> None:
        """Apply scheduler settings stored through the API (they win over the file)."""
        stored = await self.db.settings()
        schedule = self.scheduler.schedule
        if "interval" in stored or "at" in stored:
            schedule = Schedule(
                float(stored.get("interval", schedule.interval)), stored.get("at", schedule.at)
            )
            self.scheduler.schedule = schedule
        last = stored.get("last_run")
        if isinstance(last, int | float):
            self.scheduler.last_run = float(last)

    async def set_schedule(self, schedule: Schedule) -> None:
        """Store and apply a new schedule."""
        await self.db.put_settings({"interval": schedule.interval, "at": schedule.at})
        self.scheduler.reschedule(schedule)

    def scheduler_state(self) -> dict[str, Any]:
        """``{"interval", "at", "last_run", "next_run", "runs", "last_report"}``."""
        s = self.scheduler.schedule
        return {
            "interval": s.interval,
            "at": s.at,
            "last_run": self.scheduler.last_run,
            "next_run": self.scheduler.next_due(),
            "runs": self.scheduler.runs,
            "last_report": self.last_report,
        }

    async def on_landed(self, landed: episode_job.EpisodeLanded) -> None:
        """An episode job placed its file: record it."""
        await self.library.landed(
            landed.series_key, landed.season, landed.episode, landed.path, landed.size
        )

    async def on_final(self, job: Job) -> None:
        """Remove the part file of a failed or cancelled episode job."""
        if job.state in (JobState.FAILED, JobState.CANCELLED):
            await episode_job.remove_partials(self.root, job)

    def statistics(self) -> dict[str, Any]:
        """Scheduler runs and the last scan summary."""
        return {
            "root": str(self.root),
            "scheduler_runs": self.scheduler.runs,
            "last_scan": self.library.last_scan,
        }


class AnimePlugin(BasePlugin):
    """Wires the anime library into the daemon (when ``[anime] enabled``)."""

    name = "anime"

    def __init__(self) -> None:
        self.service: AnimeService | None = None

    def enabled(self, config: Config) -> bool:
        """``[anime] enabled``."""
        return config.anime.enabled

    async def setup(self, rt: Runtime) -> None:
        """Migrate, build the library, register ``anime-episode``."""
        service = AnimeService(rt)
        await service.db.migrate()
        await service.load_settings()
        await service.health_keeper.load()
        await trio.to_thread.run_sync(lambda: service.root.mkdir(parents=True, exist_ok=True))
        if rt.engine is not None:
            for provider in service.library.providers.values():
                rt.engine.add_lane(
                    provider.domain,
                    concurrency=PROVIDER_LANE.concurrency,
                    rate=PROVIDER_LANE.rate,
                    burst=PROVIDER_LANE.burst,
                )
            save = rt.engine.save_checkpoint
            handler = episode_job.make_episode_handler(
                root=service.root,
                health=service.health,
                on_landed=service.on_landed,
                gate=service.gate,
                save_checkpoint=save,
            )
            rt.engine.register(
                KIND,
                handler,
                validate=episode_job.validate_episode_spec,
                on_final=service.on_final,
            )
        self.service = service

    def services(self, rt: Runtime) -> Sequence[ServiceSpec]:
        """``anime-watchlist``: the rescan schedule; closes the provider client at shutdown.
        ``anime-health``: writes hoster health to the store as it changes."""
        service = self.service
        if service is None:
            return ()

        async def serve(*, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                await service.scheduler.run(task_status=task_status)
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await service.fetcher.aclose()

        keeper = service.health_keeper
        return [
            ServiceSpec("anime-watchlist", serve, service.statistics),
            ServiceSpec("anime-health", keeper.run, keeper.statistics),
        ]

    def blueprint(self, rt: Runtime) -> Blueprint | None:
        """``/api/v1/anime`` and ``/covers/<key>``."""
        if self.service is None:
            return None
        from hathd.anime.api import create_blueprint

        return create_blueprint(self.service)

    def cli(self) -> Sequence[click.Command]:
        """``hathd anime …``."""
        from hathd.anime.cli import anime_group

        return [anime_group]

    def reconfigure(self, rt: Runtime, config: Config) -> None:
        """A new ``rescan_interval``/``rescan_at`` applies at once."""
        if self.service is not None:
            self.service.scheduler.reschedule(
                Schedule(config.anime.rescan_interval, config.anime.rescan_at)
            )
