"""Assembly of the engine on a :class:`~hathd.runtime.Runtime`: migrations, construction,
the built-in ``download`` kind, and an in-process runner for tests and tools."""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from hathd.engine import jobstore
from hathd.engine.core import Engine
from hathd.engine.download import register_download
from hathd.runtime import Runtime

log = logging.getLogger(__name__)


def download_root(rt: Runtime) -> Path:
    """``[engine] download_root``, or ``<state_dir>/download`` when empty."""
    configured = rt.config.engine.download_root
    return Path(configured).expanduser() if configured else rt.paths.downloads


def sweep_job_dirs(tmp_root: Path) -> int:
    """Delete the per-try directories (``job-<id>-<try>``) a killed daemon left under
    ``tmp_root`` (they may hold credentials and partial output); returns how many. Only run
    before any job starts."""
    swept = 0
    try:
        entries = list(tmp_root.iterdir())
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.name.startswith("job-") and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
            swept += 1
    return swept


async def build_engine(rt: Runtime) -> Engine:
    """Apply the ``engine`` migrations, sweep per-try directories left by a previous run,
    build the :class:`Engine`, set ``rt.engine`` and register the ``download`` kind. Does not
    start it (see :meth:`Engine.serve`)."""
    await rt.store.migrate("engine", jobstore.SCHEMA)
    swept = await trio.to_thread.run_sync(sweep_job_dirs, rt.paths.tmp)
    if swept:
        log.info("engine: removed %d job directories left by the previous run", swept)
    root = download_root(rt)
    await trio.to_thread.run_sync(lambda: root.mkdir(parents=True, exist_ok=True))
    engine = Engine(
        rt.store,
        rt.bus,
        rt.config.engine,
        tmp_root=rt.paths.tmp,
        download_root=root,
    )
    register_download(engine)
    engine.stopping = rt.stopping
    rt.engine = engine
    return engine


@asynccontextmanager
async def running_engine(rt: Runtime) -> AsyncIterator[Engine]:
    """Build the engine on ``rt`` (see :func:`build_engine`), run its service in a nursery,
    yield it; on exit cancel it (running jobs are written back as ``queued``).

    Exceptions of the ``async with`` body propagate unchanged (not wrapped in a group).
    """
    engine = await build_engine(rt)
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.serve)
        try:
            yield engine
        except BaseException as exc:
            body_error = exc
        finally:
            nursery.cancel_scope.cancel()
    if body_error is not None:
        raise body_error
