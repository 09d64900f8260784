"""One library scan: the walk in a worker thread, recorded in the store while it goes on.

The walk (:func:`hathd.anime.scan.scan_library`) runs in a worker thread and hands each series
folder to the Trio thread as soon as it is read (``run_sync_soon``, no round trip): a
``scan-progress`` event is published per folder and the folder is matched to its series. The
matched folders are written through the store's writer thread in batches while the walk goes
on — whatever arrived while the previous batch was being committed forms the next one — so the
walk (system calls), the matching (Trio thread) and SQLite (writer thread) overlap.

Each batch is one transaction and holds every folder it names whole, so a series is always
recorded consistently (a series spread over two folders is written with everything seen of it
so far). A series whose files on disk have the same digest as at its last recorded scan (see
:func:`hathd.anime.scan.files_digest`) is not written at all: a rescan of an unchanged library
reads but writes nothing. The digest of each folder is computed in the walk's thread
(:attr:`~hathd.anime.scan.FolderScan.digest`), so only a series spread over several folders is
digested here. Rationale and measurements: docs/anime.md, "Performance".
"""

from __future__ import annotations

import time
from typing import Any

import attrs
import trio

from hathd.anime.model import Series
from hathd.anime.naming import folder_display_name, folder_name_key
from hathd.anime.scan import FolderScan, files_digest, scan_library
from hathd.anime.store import AnimeStore, ScanBatch
from hathd.events import EventBus
from hathd.excgroups import single

Files = dict[tuple[int, int], tuple[str, int]]

DELIVERY_INTERVAL = 0.25
"""Seconds between two hand-overs of read folders from the walk to the Trio thread."""


@attrs.define
class ScanSummary:
    """What a scan found: folders read, the unmatched ones, the folders with errors."""

    folders: int = 0
    unmatched: list[str] = attrs.Factory(list)
    errors: list[dict[str, str]] = attrs.Factory(list)

    def as_json(self) -> dict[str, Any]:
        """``{"folders", "matched", "unmatched", "errors"}``."""
        return {
            "folders": self.folders,
            "matched": self.folders - len(self.unmatched),
            "unmatched": self.unmatched,
            "errors": self.errors,
        }


class ScanRun:
    """The state of one scan (see the module docstring).

    ``known``: the series in the store; ``digests``: their stored file digests;
    ``providers``: the sites a key file may name (others count as ``default_site``).
    """

    def __init__(
        self,
        *,
        db: AnimeStore,
        bus: EventBus,
        known: list[Series],
        digests: dict[str, str],
        providers: set[str],
        default_site: str = "aniworld.to",
    ) -> None:
        self.db = db
        self.bus = bus
        self.by_key = {s.key: s for s in known}
        self.by_folder = {s.folder: s for s in known if s.folder}
        self.known = known
        self._by_name: dict[str, Series] | None = None
        self.digests = digests
        self.providers = providers
        self.default_site = default_site
        self.summary = ScanSummary()
        self.disk: dict[str, Files] = {}
        self.folder_digest: dict[str, str] = {}
        """Series seen in one folder so far: that folder's digest (its files are ``disk``)."""
        self.created: set[str] = set()
        self.pending: list[FolderScan] = []
        self.wake = trio.Event()
        self.walk_over = False
        self.walk_error: OSError | None = None
        self.delivery_interval = DELIVERY_INTERVAL
        """Seconds between two hand-overs (:data:`DELIVERY_INTERVAL`)."""

    def by_name(self) -> dict[str, Series]:
        """The known series by :func:`folder_name_key` of their name (built when a folder
        without key file needs it)."""
        if self._by_name is None:
            self._by_name = {folder_name_key(s.name): s for s in self.known}
        return self._by_name

    # -- Trio thread -----------------------------------------------------------------------

    def arrived(self, folders: list[tuple[int, int, FolderScan]]) -> None:
        """Folders read by the walk ``[(index, total, result)]``: publish the progress of
        each, keep them for the next batch."""
        for index, total, result in folders:
            self.bus.publish(
                "anime",
                "scan-progress",
                {
                    "folder": result.folder,
                    "index": index,
                    "total": total,
                    "episodes": len(result.files),
                    "error": result.error,
                },
            )
            self.pending.append(result)
        self.wake.set()

    def _batch(self, results: list[FolderScan]) -> ScanBatch:
        batch = ScanBatch()
        touched: list[str] = []
        for result in results:
            self.summary.folders += 1
            if result.error:
                self.summary.errors.append({"folder": result.folder, "error": result.error})
            if result.key is not None:
                key = result.key
                series = self.by_key.get(key)
                if series is None and key not in self.created:
                    site = result.site if result.site in self.providers else self.default_site
                    name = folder_display_name(result.folder)
                    batch.local.append((key, name, site, result.folder))
                    self.created.add(key)
                elif (
                    series is not None
                    and series.folder != result.folder
                    and key not in self.disk  # a series in several folders: the first one's
                ):
                    batch.folders[key] = result.folder
            else:
                found = self.by_folder.get(result.folder) or self.by_name().get(
                    folder_name_key(result.folder)
                )
                if found is None:
                    self.summary.unmatched.append(result.folder)
                    continue
                key = found.key
                if found.folder != result.folder and key not in self.disk:
                    batch.folders[key] = result.folder
            # a series in two folders: its folder is the first one (in name order, recorded
            # once, not switched back and forth at every scan); the later folder's file wins
            # for an episode in both
            merged = self.disk.get(key)
            if merged is None:
                self.disk[key] = result.files
                self.folder_digest[key] = result.digest
            else:
                if key in self.folder_digest:  # copy before the first merge: not ours
                    self.disk[key] = merged = dict(merged)
                    del self.folder_digest[key]
                merged.update(result.files)
            touched.append(key)
        for key in dict.fromkeys(touched):
            files = self.disk[key]
            # one folder (the usual case): its digest came from the walk's thread
            digest = self.folder_digest.get(key) or files_digest(files)
            if self.digests.get(key) != digest:
                batch.files[key] = files
                batch.digests[key] = digest
        return batch

    async def _record(self, results: list[FolderScan]) -> None:
        batch = self._batch(results)
        if batch.empty():
            return
        await self.db.record_scan(batch)
        self.digests.update(batch.digests)

    async def run(self, root: str, token: trio.lowlevel.TrioToken | None = None) -> ScanSummary:
        """Walk ``root`` and record it; returns the summary.

        :raises OSError: the root cannot be read (nothing recorded).
        """
        trio_token = token or trio.lowlevel.current_trio_token()

        def walk() -> None:
            # worker thread: folders are handed over in bundles (one wake-up of the Trio
            # thread per delivery_interval, not per folder), without a round trip; the Trio
            # thread runs the bundles in order, all of them before the thread's own return
            bundle: list[tuple[int, int, FolderScan]] = []
            last = time.monotonic()

            def on_folder(index: int, total: int, result: FolderScan) -> None:
                nonlocal bundle, last
                bundle.append((index, total, result))
                now = time.monotonic()
                if now - last >= self.delivery_interval or index == total:
                    trio_token.run_sync_soon(self.arrived, bundle)
                    bundle, last = [], now

            for _ in scan_library(root, on_folder):
                pass

        async def walker() -> None:
            try:
                await trio.to_thread.run_sync(walk)
            except OSError as exc:
                self.walk_error = exc
            finally:
                self.walk_over = True
                self.wake.set()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(walker)
                while True:
                    await self.wake.wait()
                    self.wake = trio.Event()
                    results, self.pending = self.pending, []
                    if results:
                        await self._record(results)
                    if self.walk_over and not self.pending:
                        break
        except BaseExceptionGroup as group:
            raise single(group) from None
        if self.walk_error is not None:
            raise self.walk_error
        return self.summary
