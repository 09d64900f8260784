"""The official cache accounting, LRU clock and pruning rule as pure functions (sans-IO).

Sources: docs/hath-protocol.md §4.2 (J162 ``getCacheSizeWithOverhead``), §4.3 (J165f
``CacheHandler.markRecentlyAccessed``, J162 ``cycleLRUCacheTable``) and §4.4 (J162
``recheckFreeDiskSpace``, J165f ``checkAndPruneCache``). Times are Unix seconds, sizes bytes.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping

import attrs

MIB = 1024 * 1024
DAY = 86400
WEEK = 7 * DAY
WANT_FREE = 100 * MIB
"""Headroom the pruner keeps below the limit (``wantFree``; §4.4)."""

LRU_WORDS = 1_048_576
LRU_CLEAR_PER_CYCLE = 17
"""Words zeroed per 10 s cycle, so a whole sweep takes ≈ 7 days (J162; §4.3)."""


@attrs.define
class RangeStats:
    """One static range: file ``count``, ``bytes`` (sum of fileid sizes) and ``oldest`` mtime."""

    count: int = 0
    bytes: int = 0
    oldest: int | None = None


def size_with_overhead(total_bytes: int, count: int, blocksize: int = 4096) -> int:
    """``cacheSize + cacheCount × blocksize / 2`` (J162 ``getCacheSizeWithOverhead``; §4.2)."""
    return total_bytes + count * blocksize // 2


def bytes_to_free(used_with_overhead: int, limit: int) -> int:
    """How much to prune: ``100 MiB + (used − limit)`` when over the limit, else the missing
    headroom below ``limit − 100 MiB``, else 0 (J162 ``recheckFreeDiskSpace``; §4.4)."""
    if used_with_overhead > limit:
        return WANT_FREE + (used_with_overhead - limit)
    headroom = limit - used_with_overhead
    return max(0, WANT_FREE - headroom)


def prune_cutoff(oldest: int, now: int) -> int:
    """Files of the chosen range with mtime below this are deleted: ``oldest`` + 30 d if it is
    more than 180 d ago, + 7 d if > 90 d, + 3 d if > 30 d, else + 1 d (J162/J165f; §4.4)."""
    age = now - oldest
    if age > 180 * DAY:
        return oldest + 30 * DAY
    if age > 90 * DAY:
        return oldest + 7 * DAY
    if age > 30 * DAY:
        return oldest + 3 * DAY
    return oldest + DAY


def oldest_range(ranges: Mapping[str, RangeStats]) -> str | None:
    """The static range with the smallest oldest mtime (ties: the smaller name), or ``None``.

    The rule as a pure function, O(ranges): the cache answers the same question from SQLite
    through an index (:meth:`hathd.hath.cache.Cache.oldest_range`), and the tests check that
    the two agree."""
    best: tuple[int, str] | None = None
    for name, stats in ranges.items():
        if stats.count <= 0 or stats.oldest is None:
            continue
        key = (stats.oldest, name)
        if best is None or key < best:
            best = key
    return None if best is None else best[1]


class LruTable:
    """The official LRU bitmap: 1 048 576 16-bit words; ``index = int(hash[4:9], 16)``,
    ``bit = int(hash[9], 16)``; :meth:`cycle` clears 17 words per 10 s step (§4.3)."""

    def __init__(self) -> None:
        self._words = array("H", bytes(2 * LRU_WORDS))
        self._pointer = 0

    def mark(self, index: int, bit: int) -> bool:
        """Set the bit; ``True`` if it was clear ("newly marked")."""
        mask = 1 << bit
        if self._words[index] & mask:
            return False
        self._words[index] |= mask
        return True

    def cycle(self) -> None:
        """Zero the next :data:`LRU_CLEAR_PER_CYCLE` words (wrapping)."""
        for _ in range(LRU_CLEAR_PER_CYCLE):
            self._words[self._pointer] = 0
            self._pointer = (self._pointer + 1) % LRU_WORDS


def needs_touch(mtime: float, now: float) -> bool:
    """Whether serving a file should set its mtime to now: it is older than 7 days (§4.3)."""
    return now - mtime > WEEK
