"""The exception tree shared by every hathd component.

Every class carries a stable ``code`` (a class attribute): the admin API answers an error with
``{"error": message, "code": code, "field": ...}`` and clients may branch on ``code``; the CLI
prints the message. Codes never change once published; a new class gets a new code.

::

    class                           code
    HathdError                      error               base of every error hathd raises on purpose
    ├── ConfigError                 invalid_config      a configuration file or value is invalid
    ├── StoreError                  store_error         the SQLite store failed or is closed
    │   └── UnencodableText         unencodable_text    text that is not UTF-8 (a lone
    │                                                   surrogate; a ValueError): not written
    ├── JobError                    job_error           raised by job handlers; the engine
    │   │                                               classifies the outcome
    │   ├── RetryableError          retryable           network trouble, 429/5xx, a lock held
    │   │   │                                           elsewhere: try again later
    │   │   └── RateLimitedError    rate_limited        the remote asked us to slow down
    │   └── PermanentError          permanent           bad input, story gone, login refused
    ├── InvalidInput (ValueError)   invalid_input       bad input to an operation; names a field
    ├── JobNotFound                 job_not_found       no job has this id
    ├── JobConflict                 job_conflict        the job's state forbids the operation
    │   └── InvalidTransition       invalid_transition  an event the job state machine's table
    │                                                   does not allow in the current state
    ├── DaemonNotRunning            daemon_not_running  the CLI found no daemon on the admin socket
    ├── AccountError                account_error       a change of the web accounts is refused
    │   ├── UnknownUser             unknown_user        no account has this name
    │   ├── UserExists              user_exists         the name is taken
    │   └── LastAdmin               last_admin          the change would leave no admin
    └── StateDirInUse               state_dir_in_use    another hathd process holds the state
                                                        directory's lock
"""

from __future__ import annotations

from typing import ClassVar


class HathdError(Exception):
    """Base class of every error hathd raises on purpose; ``code`` names the class for APIs."""

    code: ClassVar[str] = "error"


class ConfigError(HathdError):
    """A configuration is invalid.

    ``problems`` holds one ``(key_path, message)`` pair per problem, e.g.
    ``("engine.workers", "must be >= 1, got 0")``.
    """

    code: ClassVar[str] = "invalid_config"

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {msg}" for path, msg in problems))


class StoreError(HathdError):
    """The store is closed or a statement failed in the writer thread."""

    code: ClassVar[str] = "store_error"


class UnencodableText(StoreError, ValueError):
    """A value to store holds text that is not encodable as UTF-8 (a lone surrogate such as
    ``"\\ud800"``); nothing of the write was kept."""

    code: ClassVar[str] = "unencodable_text"


class JobError(HathdError):
    """Base of the classified errors a job handler raises."""

    code: ClassVar[str] = "job_error"


class RetryableError(JobError):
    """A failure that may succeed later (network, 5xx, a lock held by another program)."""

    code: ClassVar[str] = "retryable"


class RateLimitedError(RetryableError):
    """The remote asked us to slow down.

    ``retry_after`` is the minimum wait in seconds (from ``Retry-After`` or ``RateLimit-Reset``),
    or ``None`` when the reply named none.
    """

    code: ClassVar[str] = "rate_limited"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(JobError):
    """A failure that retrying cannot fix (bad input, gone, login refused)."""

    code: ClassVar[str] = "permanent"


class InvalidInput(HathdError, ValueError):
    """Bad input to an operation (a job submission, a move, a filter).

    ``field`` names the offending input (``"priority"``, ``"[2].target"`` in a batch) and the
    message reads ``"<field>: <message>"``. The job API answers it ``400`` with ``field``. It is
    a ``ValueError`` too, so callers that catch ``ValueError`` keep working.
    """

    code: ClassVar[str] = "invalid_input"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class JobNotFound(HathdError):
    """No job has this id (the job API answers ``404``)."""

    code: ClassVar[str] = "job_not_found"


class JobConflict(HathdError):
    """The job's state does not allow the operation, e.g. retrying a running job (``409``)."""

    code: ClassVar[str] = "job_conflict"


class InvalidTransition(JobConflict):
    """The job state machine's table has no transition for ``event`` in ``state``.

    ``state`` and ``event`` are the values of :class:`~hathd.engine.states.JobState` and
    :class:`~hathd.engine.states.JobEvent` (plain strings here, so this module imports
    nothing of the engine).
    """

    code: ClassVar[str] = "invalid_transition"

    def __init__(self, state: str, event: str) -> None:
        super().__init__(f"no transition for event {event!r} in state {state!r}")
        self.state = state
        self.event = event


class DaemonNotRunning(HathdError):
    """No daemon answers on the admin socket."""

    code: ClassVar[str] = "daemon_not_running"


class StateDirInUse(HathdError):
    """Another process holds the state directory's lock (``<state_dir>/hathd.lock``).

    ``pid`` is the holder's process id as written in the lock file, or ``None`` if unreadable.
    """

    code: ClassVar[str] = "state_dir_in_use"

    def __init__(self, state_dir: str, pid: int | None) -> None:
        holder = f"process {pid}" if pid else "another process"
        super().__init__(f"{state_dir} is in use by {holder} (another hathd?)")
        self.pid = pid


class AccountError(HathdError):
    """A change of the web accounts (users, roles) is refused; the API answers 4xx."""

    code: ClassVar[str] = "account_error"


class UnknownUser(AccountError):
    """No account has the given username (404)."""

    code: ClassVar[str] = "unknown_user"


class UserExists(AccountError):
    """An account with the given username exists already (409)."""

    code: ClassVar[str] = "user_exists"


class LastAdmin(AccountError):
    """Removing or demoting this account would leave the node without an admin (409)."""

    code: ClassVar[str] = "last_admin"
