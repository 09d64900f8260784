"""Turning stories into ``fanfic`` jobs: one job per story, one lane per site.

- The job's ``target`` is the story URL (FanFicFare's ``storyUrl``), its ``domain`` the site
  (``getSiteDomain()``) and its ``dedupe_key`` the story URL, so a story already queued,
  running or waiting is not queued twice (the engine returns the active job instead).
- Each site gets a lane of concurrency 1 (AutomatedFanfic's "one worker per site"), declared
  through :meth:`EngineAPI.add_lane` the first time the site is seen.
- Stories of ``[fanfic] disabled_sites`` are not queued; a notification carries the URL.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import attrs

from hathd.engine.api import EngineAPI, JobSpec, Submitted
from hathd.fanfic.config import FanficConfig
from hathd.fanfic.handler import KIND, TITLE_SUCCESS
from hathd.fanfic.stories import Story
from hathd.notify import Notifier

log = logging.getLogger(__name__)


@attrs.frozen
class SubmitReport:
    """What happened to a batch of stories: jobs created, already active, disabled."""

    created: tuple[str, ...] = ()
    existing: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()


class StorySubmitter:
    """Submits stories to the engine (see module docstring)."""

    def __init__(self, engine: EngineAPI, config: FanficConfig, notifier: Notifier) -> None:
        self.engine = engine
        self.config = config
        self.notifier = notifier
        self._lanes: set[str] = set()

    def ensure_lane(self, site: str) -> None:
        """Declare the one-at-a-time lane of ``site`` (once)."""
        if site not in self._lanes:
            self.engine.add_lane(site, concurrency=1)
            self._lanes.add(site)

    def spec(
        self,
        story: Story,
        *,
        source: str,
        source_id: str | None,
        update_method: str | None = None,
    ) -> JobSpec:
        """The job spec of ``story``; ``update_method`` overrides ``[fanfic] update_method``
        for this job (job parameter ``update_method``)."""
        return JobSpec(
            kind=KIND,
            target=story.url,
            domain=story.site,
            priority=self.config.priority,
            source=source,
            source_id=source_id,
            dedupe_key=story.url,
            retry_preset=self.config.retry_preset,
            params={"update_method": update_method} if update_method else {},
        )

    async def submit(
        self,
        stories: Sequence[Story],
        *,
        source: str = "api",
        source_id: str | None = None,
        update_method: str | None = None,
    ) -> SubmitReport:
        """Queue ``stories`` in one transaction (durable when this returns).

        :raises StoreError: the store failed; nothing was queued.
        """
        disabled = {s.lower() for s in self.config.disabled_sites}
        specs: list[JobSpec] = []
        skipped: list[str] = []
        for story in stories:
            if story.site.lower() in disabled:
                skipped.append(story.url)
                continue
            self.ensure_lane(story.site)
            specs.append(
                self.spec(story, source=source, source_id=source_id, update_method=update_method)
            )
        submitted: list[Submitted] = await self.engine.submit_many(specs) if specs else []
        for url in skipped:
            log.info("site of %s is disabled; notification only", url)
            self.notifier.notify(TITLE_SUCCESS, url)
        return SubmitReport(
            created=tuple(s.job.target for s in submitted if s.created),
            existing=tuple(s.job.target for s in submitted if not s.created),
            disabled=tuple(skipped),
        )
