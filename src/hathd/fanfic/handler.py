"""The ``fanfic`` job: one story, FanFicFare then Calibre, then a notification.

Per try (the engine gives a private ``tmp_dir`` and removes it afterwards):

1. Calibre lookup by the story URL (:meth:`~hathd.fanfic.calibre.CalibreSession.find`:
   FanFicFare's ``get_url_search`` expression, a regex on the ``url``/``uri`` identifier
   accepting http and https, else ``identifiers:"url:=<storyUrl>"``); when the book exists
   its EPUB is exported and becomes FanFicFare's update target.
2. FanFicFare runs (:mod:`hathd.fanfic.fff`); the output is classified
   (:mod:`hathd.fanfic.outcome`). A forceable outcome ("EPUB newer than story", "more chapters
   than source") is run again at once with ``--force``, unless the update method is
   ``update_no_force``.
3. New EPUB → ``calibredb add`` (new book) or the configured metadata mode (existing book).
4. A success notification is queued (never awaited).

Errors raised to the engine: :class:`~hathd.errors.PermanentError` for "story does not exist",
"adult check required" (fix: ``is_adult:true``), "login failed" (fix: site credentials in the
personal.ini) and unknown sites; :class:`~hathd.errors.RetryableError` for chapter download
failures, timeouts, a busy library and an EPUB that did not appear. Before the final try of
the ``fanfic`` retry preset (AutomatedFanfic's "Hail-Mary"), a notification says so; a job
that ends ``failed`` is notified by :meth:`FanficPipeline.on_final`.

Result (``Job.result``): ``{"outcome": "added"|"updated"|"downloaded"|"up_to_date"|"skipped",
"url", "site", "book_id", "title", "forced"}``.
"""

from __future__ import annotations

import logging
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from hathd.engine.api import Job, JobContext, JobState
from hathd.engine.retry import BUILTIN_PRESETS, RetryPreset
from hathd.errors import PermanentError, RetryableError
from hathd.fanfic.calibre import Calibre
from hathd.fanfic.config import FanficConfig
from hathd.fanfic.fff import prepare_workspace, run_fanficfare
from hathd.fanfic.outcome import PERMANENT, Outcome
from hathd.notify import Notifier
from hathd.programs import Program

log = logging.getLogger(__name__)

KIND = "fanfic"
"""The job kind of one story download."""

TITLE_SUCCESS = "New Fanfiction Download"
TITLE_FAILED = "Fanfiction Download Failed"
TITLE_SKIPPED = "Fanfiction Update Permanently Skipped"

_TITLE = re.compile(r"<dc:title[^>]*>(.*?)</dc:title>", re.S)


def epub_title(path: Path) -> str | None:
    """The ``dc:title`` of an EPUB's OPF package document, or ``None``. Blocking."""
    try:
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if name.endswith(".opf"):
                    match = _TITLE.search(zf.read(name).decode("utf-8", "replace"))
                    if match:
                        return match.group(1).strip()
    except (OSError, zipfile.BadZipFile, KeyError):
        return None
    return None


def hail_mary_text(hours: float) -> str:
    """The title of the notification sent before the final try (AutomatedFanfic wording)."""
    return f"{TITLE_FAILED}, trying Hail-Mary in {hours:.2f} hours."


@attrs.define
class FanficStatistics:
    """Counters of fanfic tries by outcome, and FanFicFare runs forced."""

    tries: int = 0
    added: int = 0
    updated: int = 0
    up_to_date: int = 0
    skipped: int = 0
    permanent: int = 0
    retryable: int = 0
    forced: int = 0


class FanficPipeline:
    """The ``fanfic`` handler and its final hook, sharing one :class:`Calibre` and one
    :class:`~hathd.notify.Notifier`."""

    def __init__(
        self,
        config: FanficConfig,
        calibre: Calibre,
        notifier: Notifier,
        *,
        presets: Mapping[str, RetryPreset] | None = None,
        programs: Sequence[Program] = (),
    ) -> None:
        self.config = config
        self.programs = list(programs)
        self.calibre = calibre
        self.notifier = notifier
        self.presets = dict(BUILTIN_PRESETS if presets is None else presets)
        self.stats = FanficStatistics()

    def statistics(self) -> FanficStatistics:
        """A copy of the counters."""
        return attrs.evolve(self.stats)

    async def handle(self, ctx: JobContext) -> dict[str, Any]:
        """Run one try of a ``fanfic`` job (see module docstring).

        :raises PermanentError: the story cannot be fetched as configured.
        :raises RetryableError: a try later may succeed.
        """
        self.stats.tries += 1
        try:
            return await self._handle(ctx)
        except PermanentError:
            self.stats.permanent += 1
            raise
        except Exception:
            self.stats.retryable += 1
            self._warn_before_final(ctx.job)
            raise

    def final_try_after(self, attempts: int) -> float | None:
        """Hours until the final try when failing try number ``attempts`` schedules it, else
        ``None``; read from the retry preset ``[fanfic] retry_preset`` (the engine's presets,
        ``[engine.retry.<name>]`` included)."""
        preset = self.presets.get(self.config.retry_preset)
        if preset is None or preset.final_wait is None:
            return None
        if attempts == len(preset.delays) + 1:
            return float(preset.final_wait) / 3600.0
        return None

    def _warn_before_final(self, job: Job) -> None:
        hours = self.final_try_after(job.attempts)
        if hours is not None:
            self.notifier.notify(hail_mary_text(hours), job.target, notify_type="warning")

    async def _handle(self, ctx: JobContext) -> dict[str, Any]:
        for program in self.programs:
            program.require()  # a missing program fails the job with the reason and the fix
        cfg = self.config
        job = ctx.job
        url = job.target
        method = str(job.params.get("update_method") or cfg.update_method)
        ws_root = ctx.tmp_dir
        session = self.calibre.session(ws_root) if self.calibre.enabled else None
        ws = await prepare_workspace(ws_root, cfg.personal_ini, cfg.defaults_ini)
        book_id: int | None = None
        target = url
        if session is not None:
            ctx.progress(0, None, message="calibre lookup")
            book_id = await session.find(url)
            if book_id is not None:
                exported = await session.export(book_id, ws.export)
                if exported is not None:
                    target = str(exported)
        ctx.progress(0, None, message="fanficfare")
        run = await run_fanficfare(ws, cfg.fanficfare, target, method, timeout=cfg.timeout)
        forced = False
        if run.classified.outcome is Outcome.FORCEABLE and method != "update_no_force":
            log.info("%s: %s; running again with --force", url, run.classified.message)
            self.stats.forced += 1
            forced = True
            run = await run_fanficfare(
                ws, cfg.fanficfare, target, method, force=True, timeout=cfg.timeout
            )
        result: dict[str, Any] = {
            "url": url,
            "site": job.domain,
            "book_id": book_id,
            "title": None,
            "forced": forced,
        }
        outcome = run.classified.outcome
        if outcome in PERMANENT:
            raise PermanentError(f"{run.classified.message} ({run.classified.line})")
        if outcome is Outcome.RETRYABLE:
            detail = run.classified.line or run.spawn.tail(3)
            raise RetryableError(f"{run.classified.message}: {detail}")
        if outcome is Outcome.UP_TO_DATE:
            self.stats.up_to_date += 1
            return {**result, "outcome": "up_to_date"}
        if outcome is Outcome.FORCEABLE and forced:
            raise RetryableError(f"still refused with --force: {run.classified.line}")
        if outcome is Outcome.FORCEABLE:  # update_no_force: leave the book as it is
            self.stats.skipped += 1
            self.notifier.notify(TITLE_SKIPPED, f"{url}\n{run.classified.line}")
            return {**result, "outcome": "skipped"}
        epub = run.epub
        if epub is None:
            raise RetryableError(
                f"fanficfare reported success but wrote no EPUB: {run.spawn.tail(3)}"
            )
        title = await trio.to_thread.run_sync(epub_title, epub) or epub.stem
        result["title"] = title
        if session is None:
            result["outcome"] = "downloaded"
            result["epub"] = epub.name
        elif book_id is None:
            ctx.progress(1, 2, message="calibredb add")
            result["book_id"] = await session.add(epub, url)
            result["outcome"] = "added"
            self.stats.added += 1
        else:
            ctx.progress(1, 2, message=f"calibredb {self.config.calibre.metadata_mode}")
            result["book_id"] = await session.replace(
                book_id, epub, url, self.config.calibre.metadata_mode
            )
            result["outcome"] = "updated"
            self.stats.updated += 1
        self.notifier.notify(TITLE_SUCCESS, title, notify_type="success")
        return result

    async def on_final(self, job: Job) -> None:
        """Notify a job that ended ``failed`` (permanent error, or the final try failed)."""
        if job.state is JobState.FAILED:
            self.notifier.notify(
                TITLE_FAILED, f"{job.target}\n{job.error or ''}".strip(), notify_type="failure"
            )
