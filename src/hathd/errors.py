"""The exception tree shared by every hathd component.

::

    HathdError
    ├── ConfigError            a configuration file or value is invalid (carries every problem)
    ├── StoreError             the SQLite store failed or is closed
    ├── JobError               raised by job handlers; the engine classifies the outcome
    │   ├── RetryableError     network trouble, 429/5xx, a lock held elsewhere: try again later
    │   │   └── RateLimitedError  the remote asked us to slow down (Retry-After honoured)
    │   └── PermanentError     bad input, story does not exist, login refused: do not retry
    ├── DaemonNotRunning       the CLI found no daemon on the admin socket
    └── StateDirInUse          another hathd process holds the state directory's lock
"""

from __future__ import annotations


class HathdError(Exception):
    """Base class of every error hathd raises on purpose."""


class ConfigError(HathdError):
    """A configuration is invalid.

    ``problems`` holds one ``(key_path, message)`` pair per problem, e.g.
    ``("engine.workers", "must be >= 1, got 0")``.
    """

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {msg}" for path, msg in problems))


class StoreError(HathdError):
    """The store is closed or a statement failed in the writer thread."""


class UnencodableText(StoreError, ValueError):
    """A value to store holds text that is not encodable as UTF-8 (a lone surrogate such as
    ``"\\ud800"``); nothing of the write was kept."""


class JobError(HathdError):
    """Base of the classified errors a job handler raises."""


class RetryableError(JobError):
    """A failure that may succeed later (network, 5xx, a lock held by another program)."""


class RateLimitedError(RetryableError):
    """The remote asked us to slow down.

    ``retry_after`` is the minimum wait in seconds (from ``Retry-After`` or ``RateLimit-Reset``),
    or ``None`` when the reply named none.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(JobError):
    """A failure that retrying cannot fix (bad input, gone, login refused)."""


class DaemonNotRunning(HathdError):
    """No daemon answers on the admin socket."""


class StateDirInUse(HathdError):
    """Another process holds the state directory's lock (``<state_dir>/hathd.lock``).

    ``pid`` is the holder's process id as written in the lock file, or ``None`` if unreadable.
    """

    def __init__(self, state_dir: str, pid: int | None) -> None:
        holder = f"process {pid}" if pid else "another process"
        super().__init__(f"{state_dir} is in use by {holder} (another hathd?)")
        self.pid = pid
