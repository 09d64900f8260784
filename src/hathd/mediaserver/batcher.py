"""The refresh batcher (sans-IO): one refresh per folder, however many files land in it.

Files are added with the time they landed; each folder becomes *due* ``window`` seconds after
its last file (a debounce), but never later than ``4 × window`` after its first, so a folder
that keeps filling is still refreshed. Times are seconds on any monotonic clock the caller
uses (the Trio shell passes ``trio.current_time()``, tests a fake one).
"""

from __future__ import annotations

import attrs

MAX_WINDOWS = 4
"""A folder is due at the latest this many windows after its first file."""


@attrs.define
class _Pending:
    first: float
    last: float
    files: int


class RefreshBatcher:
    """Collects folders; :meth:`pop_due` hands out those whose window has passed."""

    def __init__(self, window: float) -> None:
        if window < 0:
            raise ValueError(f"window must be >= 0 seconds, got {window}")
        self.window = window
        self._pending: dict[str, _Pending] = {}

    def add(self, folder: str, now: float) -> None:
        """A file landed in ``folder`` at ``now``."""
        p = self._pending.get(folder)
        if p is None:
            self._pending[folder] = _Pending(now, now, 1)
        else:
            p.last = now
            p.files += 1

    def _due_at(self, p: _Pending) -> float:
        return min(p.last + self.window, p.first + MAX_WINDOWS * self.window)

    def next_due(self) -> float | None:
        """When the next folder becomes due, or ``None`` when none waits."""
        if not self._pending:
            return None
        return min(self._due_at(p) for p in self._pending.values())

    def pop_due(self, now: float) -> list[tuple[str, int]]:
        """Remove and return the folders due at ``now`` as ``(folder, files)``, oldest first."""
        due = sorted(
            ((f, p) for f, p in self._pending.items() if self._due_at(p) <= now),
            key=lambda item: item[1].first,
        )
        for folder, _ in due:
            del self._pending[folder]
        return [(folder, p.files) for folder, p in due]

    def __len__(self) -> int:
        return len(self._pending)
