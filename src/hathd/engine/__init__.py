"""The job engine: durable queue, per-domain politeness, retry waiter, workers, events.

Usage in tests (and tools) — an in-process engine on an assembled runtime::

    from hathd.config import Config
    from hathd.engine import running_engine
    from hathd.engine.api import JobSpec
    from hathd.runtime import open_runtime

    async with open_runtime(Config(), tmp_path) as rt:
        async with running_engine(rt) as engine:      # also sets rt.engine
            engine.register("mykind", handler)       # async def handler(ctx) -> dict | None
            sub = await engine.submit(JobSpec(kind="mykind", target="x", domain="example.org"))
            job = await engine.wait_final(sub.job.id, timeout=30)
            assert job.state == "done"

Pipelines code against :mod:`hathd.engine.api` (``EngineAPI``); the daemon wires the engine in
through :mod:`hathd.engine.plugin`. Short retry waits for tests: pass a ``Config`` whose
``engine.retry`` holds e.g. ``{"default": RetryPresetConfig(delays=[0.1], final_wait=None)}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hathd.engine.core import Engine, EngineStatistics, JobConflict, JobNotFound
    from hathd.engine.service import build_engine, running_engine

__all__ = [
    "Engine",
    "EngineStatistics",
    "JobConflict",
    "JobNotFound",
    "build_engine",
    "running_engine",
]

# Imported lazily: ``hathd.config`` imports ``hathd.engine.config`` and the engine itself
# imports the runtime, which imports ``hathd.config``.
_LAZY = {
    "Engine": "hathd.engine.core",
    "EngineStatistics": "hathd.engine.core",
    "JobConflict": "hathd.engine.core",
    "JobNotFound": "hathd.engine.core",
    "build_engine": "hathd.engine.service",
    "running_engine": "hathd.engine.service",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hathd.engine' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
