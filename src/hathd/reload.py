"""Which keys of a configuration reloaded on SIGHUP take effect now, and which need a restart.

Sans-IO: :func:`plan_reload` compares the configuration hathd started with against the newly
read one. Keys in :data:`LIVE_KEYS` are applied to the running daemon (the engine's
:meth:`~hathd.engine.core.Engine.reconfigure`, the shutdown deadline read when a stop begins);
every other key is read by its subsystem when it starts, so a changed one keeps its old value
in force and is reported as *restart pending* until hathd restarts (or the file is changed
back).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs

from hathd.config import Config

LIVE_KEYS: tuple[str, ...] = ("engine.", "daemon.shutdown_grace")
"""Key paths (a trailing ``.`` covers a whole section) applied on reload."""
RESTART_KEYS: tuple[str, ...] = ("engine.download_root",)
"""Exceptions inside :data:`LIVE_KEYS` that still need a restart."""


def is_live(key: str) -> bool:
    """Whether the key path ``key`` (``engine.workers``) takes effect on reload."""
    if any(key == k or key.startswith(k + ".") for k in RESTART_KEYS):
        return False
    return any(key.startswith(k) if k.endswith(".") else key == k for k in LIVE_KEYS)


def needs_restart(key: str) -> bool:
    """Whether a change of the key path ``key`` waits for a restart (not :func:`is_live`):
    the one answer the reload, the configuration API and the settings page share."""
    return not is_live(key)


def restart_keys(running: Config, new: Config) -> list[str]:
    """The keys changed between the ``running`` configuration and ``new`` that a reload
    cannot apply, sorted (what :func:`plan_reload` would report as pending)."""
    return [k for k in changed_keys(running, new) if needs_restart(k)]


def _leaves(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if attrs.has(type(value)):
        for field in attrs.fields(type(value)):
            yield from _leaves(getattr(value, field.name), f"{prefix}{field.name}.")
    else:
        yield prefix.rstrip("."), value


def changed_keys(old: Config, new: Config) -> list[str]:
    """Key paths whose value differs between ``old`` and ``new``, sorted. A table of tables
    (``engine.lanes``) counts as one key."""
    before = dict(_leaves(old, ""))
    after = dict(_leaves(new, ""))
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


@attrs.frozen
class ReloadPlan:
    """``config``: what runs from now on (the new values of live keys, the started values of
    the others); ``restart_pending``: the changed keys that wait for a restart, sorted."""

    config: Config
    restart_pending: list[str]


def plan_reload(started: Config, new: Config) -> ReloadPlan:
    """Merge ``new`` into the configuration hathd ``started`` with: live keys from ``new``,
    every other key from ``started``. Both are checked configurations."""
    engine = attrs.evolve(new.engine, download_root=started.engine.download_root)
    daemon = attrs.evolve(started.daemon, shutdown_grace=new.daemon.shutdown_grace)
    merged = attrs.evolve(started, engine=engine, daemon=daemon)
    pending = restart_keys(started, new)
    return ReloadPlan(merged, pending)
