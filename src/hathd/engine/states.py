"""The job state machine, sans-IO: the states, the events and the one transition table.

This module is the single place that says which state changes a job can make; every state
change in the engine (in memory and in the ``engine_jobs`` table) is computed by
:func:`next_state` from the job's current state and an :class:`JobEvent`. The Trio shell
(:mod:`hathd.engine.core`, :mod:`hathd.engine.control`, :mod:`hathd.engine.runner`) only runs
the effects: it writes the row, conditional on the state it read, and publishes the job. The
shape — a dictionary ``(state, event) → state`` and one function that applies an event or
raises a typed error — follows h11's ``_state.py`` (``EVENT_TRIGGERED_TRANSITIONS`` and
``ConnectionState.process_event``).

The table (``·`` marks a pair with no transition: :func:`next_state` raises
:class:`~hathd.errors.InvalidTransition`)::

    event \\ state    queued     running    waiting    paused     done    failed  cancelled
    dispatch         running    ·          ·          ·          ·       ·       ·
    succeed          ·          done       ·          ·          ·       ·       ·
    fail             ·          failed     ·          ·          ·       ·       ·
    back_off         ·          waiting    ·          ·          ·       ·       ·
    requeue          ·          queued     ·          ·          ·       ·       ·
    wake             ·          ·          queued     ·          ·       ·       ·
    pause            paused     paused     paused     ·          ·       ·       ·
    resume           ·          ·          ·          queued     ·       ·       ·
    cancel           cancelled  cancelled  cancelled  cancelled  ·       ·       ·
    retry            ·          ·          ·          ·          queued  queued  queued

A job is created ``queued`` (:data:`INITIAL_STATE`). ``done``, ``failed`` and ``cancelled`` are
final: only ``retry`` (the user's) leaves them. ``requeue`` covers every way a running try ends
without an outcome (shutdown, a store error at start, a full disk, recovery after a crash);
``wake`` is the retry timer firing, or the user asking a waiting job to run now.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from hathd.engine.api import JobState
from hathd.errors import InvalidTransition

__all__ = [
    "ACTIVE_STATES",
    "FINAL_STATES",
    "INITIAL_STATE",
    "TRANSITIONS",
    "JobEvent",
    "JobState",
    "allowed",
    "next_state",
    "sources",
]


class JobEvent(StrEnum):
    """What happens to a job; each event's transitions are in :data:`TRANSITIONS`."""

    DISPATCH = "dispatch"
    """The dispatcher hands the job to a worker."""
    SUCCEED = "succeed"
    """The handler returned a result."""
    FAIL = "fail"
    """The handler failed and the retry policy gives up (or the error is permanent)."""
    BACK_OFF = "back_off"
    """The handler failed and the retry policy schedules another try."""
    REQUEUE = "requeue"
    """A try ended without an outcome (shutdown, store error, full disk, crash recovery)."""
    WAKE = "wake"
    """The retry timer fired (or the user asked a waiting job to run now)."""
    PAUSE = "pause"
    """The user (or the disk watcher) paused the job."""
    RESUME = "resume"
    """The user resumed a paused job."""
    CANCEL = "cancel"
    """The user cancelled the job."""
    RETRY = "retry"
    """The user queued a finished job again."""


INITIAL_STATE = JobState.QUEUED
"""The state of a newly submitted job."""

_Q, _R, _W, _P = JobState.QUEUED, JobState.RUNNING, JobState.WAITING, JobState.PAUSED
_D, _F, _C = JobState.DONE, JobState.FAILED, JobState.CANCELLED

TRANSITIONS: Mapping[tuple[JobState, JobEvent], JobState] = MappingProxyType(
    {
        (_Q, JobEvent.DISPATCH): _R,
        (_R, JobEvent.SUCCEED): _D,
        (_R, JobEvent.FAIL): _F,
        (_R, JobEvent.BACK_OFF): _W,
        (_R, JobEvent.REQUEUE): _Q,
        (_W, JobEvent.WAKE): _Q,
        (_Q, JobEvent.PAUSE): _P,
        (_R, JobEvent.PAUSE): _P,
        (_W, JobEvent.PAUSE): _P,
        (_P, JobEvent.RESUME): _Q,
        (_Q, JobEvent.CANCEL): _C,
        (_R, JobEvent.CANCEL): _C,
        (_W, JobEvent.CANCEL): _C,
        (_P, JobEvent.CANCEL): _C,
        (_D, JobEvent.RETRY): _Q,
        (_F, JobEvent.RETRY): _Q,
        (_C, JobEvent.RETRY): _Q,
    }
)
"""Every allowed transition: ``(state, event) → next state``. No other pair is allowed."""

FINAL_STATES: frozenset[JobState] = frozenset(
    state
    for state in JobState
    if all(event is JobEvent.RETRY for (source, event) in TRANSITIONS if source is state)
)
"""``done``, ``failed``, ``cancelled``: the states only the user's ``retry`` leaves."""

ACTIVE_STATES: frozenset[JobState] = frozenset(JobState) - FINAL_STATES
"""``queued``, ``running``, ``waiting``, ``paused`` (as :data:`hathd.engine.api.ACTIVE_STATES`)."""


def allowed(state: JobState, event: JobEvent) -> bool:
    """True when :data:`TRANSITIONS` has a transition for ``event`` in ``state``."""
    return (state, event) in TRANSITIONS


def next_state(state: JobState, event: JobEvent) -> JobState:
    """The state a job in ``state`` reaches on ``event``.

    :raises InvalidTransition: (a :class:`~hathd.errors.JobConflict`) the table has no
        transition for the pair; ``state`` and ``event`` are on the exception.
    """
    try:
        return TRANSITIONS[state, event]
    except KeyError:
        raise InvalidTransition(str(state), str(event)) from None


def sources(event: JobEvent) -> frozenset[JobState]:
    """Every state in which ``event`` is allowed (for a conditional write of the row)."""
    return frozenset(state for (state, ev) in TRANSITIONS if ev is event)
