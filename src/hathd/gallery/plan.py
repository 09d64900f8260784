"""Per-file verify/retry decisions of one gallery download, without I/O.

Restated from ``docs/hath-protocol.md`` §6 and the J162 ``GalleryDownloader``/``GalleryFile``
behaviour:

* an existing file is kept when its SHA-1 matches, or when the hash is ``unknown`` and its size
  is > 0 (:func:`accept_digest`); otherwise it is deleted and downloaded again;
* a download is one ``dlfetch`` (``add = <gid>;<page>;<fileindex>;<xres>;<n>``, ``n`` the
  file's try number, 1-based, as J163m/RS send it) plus one GET of the returned URL; a failed
  try is recorded as ``<url host>-<fileindex>-<xres>``, each key once per gallery, in order of
  first failure (J162 ``logFailure`` skips a key it already holds);
* the file list is walked in passes, at most ``max_passes`` (9; J162 limits only the passes,
  ``while(!success && ++galleryretry < 10)``); a pass retries only the files still missing;
  hathd also gives each file at most ``tries_per_file`` (3) tries in all, as RS does. There
  is no gallery-wide failure budget: a gallery of one file gets its 3 tries like any other;
* pacing: 1 s after a download, 5 s after a failure, nothing after a kept file
  (:meth:`GalleryPlan.delay_after`); 300 s while the disk is short (:func:`low_disk`);
* failures go to the server with ``dlfails`` (``add`` = ``;``-joined keys); Java sends only
  1..50 keys, RS picks 50 at random when there are more (:func:`dlfails_add` does that).
"""

from __future__ import annotations

import random
from enum import StrEnum

import attrs

MAX_DLFAILS = 50
"""Most failure keys in one ``dlfails`` report (J162 ``reportDownloaderFailures``; RS)."""


class Outcome(StrEnum):
    """What one attempt at a file gave."""

    KEPT = "kept"
    """The file was already on disk and verified."""
    DOWNLOADED = "downloaded"
    """Fetched and verified now."""
    FAILED = "failed"
    """No URL, a network error, a bad status or a SHA-1 mismatch."""


class FileState(StrEnum):
    """Where a file stands."""

    PENDING = "pending"
    DONE = "done"
    GAVE_UP = "gave_up"


def accept_digest(expected: str | None, digest: str, size: int) -> bool:
    """Whether content with SHA-1 ``digest`` (hex) and ``size`` bytes is the file: equal hashes,
    or an ``unknown`` expected hash (``None``) with ``size > 0`` (J162 ``GalleryFile``; §6)."""
    if size <= 0:
        return False
    return expected is None or digest.lower() == expected.lower()


def low_disk(free_bytes: int, disk_remaining: int, margin: int) -> bool:
    """Whether the download disk is too full: ``free < disk_remaining + margin`` (bytes;
    margin 1000 MiB in J162 ``downloadDirectoryHasLowSpace``; §6)."""
    return free_bytes < disk_remaining + margin


def dlfetch_add(gid: int, page: int, fileindex: int, xres: str, attempt: int) -> str:
    """``<gid>;<page>;<fileindex>;<xres>;<n>`` (§1.3)."""
    return f"{gid};{page};{fileindex};{xres};{attempt}"


def failure_key(host: str, fileindex: int, xres: str) -> str:
    """``<url host>-<fileindex>-<xres>`` (§1.3, §6)."""
    return f"{host}-{fileindex}-{xres}"


def dlfails_add(failures: list[str], rng: random.Random | None = None) -> str | None:
    """The ``add`` of a ``dlfails`` report: the distinct keys (first occurrence kept, in order)
    joined by ``;``; ``None`` when there are none; a random 50 of them when there are more than
    50 (RS ``dl_fails``; §1.3)."""
    if not failures:
        return None
    keys = list(dict.fromkeys(failures))
    if len(keys) > MAX_DLFAILS:
        keys = (rng or random.Random()).sample(keys, MAX_DLFAILS)
    return ";".join(keys)


@attrs.define
class GalleryPlan:
    """The pass/try bookkeeping of one gallery of ``count`` files.

    Usage: ``while (batch := plan.next_pass()) is not None:`` try each index of ``batch``, call
    :meth:`record` with the outcome, and wait :meth:`delay_after` seconds. Afterwards
    :attr:`complete` tells success; :attr:`failures` holds the distinct ``dlfails`` keys in
    order of first failure; :attr:`failed_tries` counts every failed try.
    """

    count: int
    tries_per_file: int = 3
    max_passes: int = 9
    success_delay: float = 1.0
    failure_delay: float = 5.0
    passes: int = 0
    states: list[FileState] = attrs.field(init=False)
    tries: list[int] = attrs.field(init=False)
    failures: list[str] = attrs.field(factory=list, init=False)
    _failure_keys: set[str] = attrs.field(factory=set, init=False, repr=False)
    failed_tries: int = attrs.field(default=0, init=False)
    kept: int = attrs.field(default=0, init=False)
    downloaded: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        self.states = [FileState.PENDING] * self.count
        self.tries = [0] * self.count

    @property
    def done(self) -> int:
        """Files verified on disk."""
        return self.states.count(FileState.DONE)

    @property
    def complete(self) -> bool:
        """Every file is verified."""
        return self.done == self.count

    def given_up(self) -> list[int]:
        """Indices of the files that did not make it (after the last pass)."""
        return [i for i, s in enumerate(self.states) if s is not FileState.DONE]

    def next_pass(self) -> list[int] | None:
        """Indices to try in the next pass, or ``None`` when the gallery is finished: every file
        done, no file with tries left, or ``max_passes`` reached."""
        if self.complete or self.passes >= self.max_passes:
            return None
        batch = [
            i
            for i, s in enumerate(self.states)
            if s is FileState.PENDING and self.tries[i] < self.tries_per_file
        ]
        if not batch:
            return None
        self.passes += 1
        return batch

    def begin_try(self, index: int) -> int:
        """Count a download try of file ``index``; returns its 1-based try number (the ``n`` of
        ``dlfetch``)."""
        self.tries[index] += 1
        return self.tries[index]

    def record(self, index: int, outcome: Outcome, failure: str | None = None) -> None:
        """Record the outcome of file ``index``; ``failure`` is its ``dlfails`` key, if a URL
        was obtained. A key already recorded is not added again (J162 ``logFailure``)."""
        if outcome is Outcome.FAILED:
            self.failed_tries += 1
            if failure is not None and failure not in self._failure_keys:
                self._failure_keys.add(failure)
                self.failures.append(failure)
            if self.tries[index] >= self.tries_per_file:
                self.states[index] = FileState.GAVE_UP
            return
        self.states[index] = FileState.DONE
        if outcome is Outcome.KEPT:
            self.kept += 1
        else:
            self.downloaded += 1

    def delay_after(self, outcome: Outcome) -> float:
        """Seconds to wait after ``outcome`` (1 s / 5 s / 0 s; §6)."""
        if outcome is Outcome.DOWNLOADED:
            return self.success_delay
        if outcome is Outcome.FAILED:
            return self.failure_delay
        return 0.0
