"""The engine subsystem as a daemon plugin: migrations, the ``engine`` service, the job API
routes and the ``jobs``/``queue`` CLI commands."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from hathd.runtime import BasePlugin, Runtime
from hathd.supervisor import ServiceSpec

if TYPE_CHECKING:
    import asyncclick as click
    from quart import Blueprint

    from hathd.config import Config
    from hathd.engine.core import Engine


def engine_of(rt: Runtime) -> Engine:
    """The :class:`~hathd.engine.core.Engine` set up on ``rt``.

    :raises RuntimeError: the engine plugin's ``setup`` has not run.
    """
    if rt.engine is None:
        raise RuntimeError("the engine is not set up on this runtime")
    return rt.engine


class EnginePlugin(BasePlugin):
    """Wires the engine subsystem into the daemon."""

    name = "engine"

    async def setup(self, rt: Runtime) -> None:
        """Migrate the ``engine`` schema, build the engine, set ``rt.engine``, register the
        ``download`` kind."""
        from hathd.engine.service import build_engine

        await build_engine(rt)

    def services(self, rt: Runtime) -> Sequence[ServiceSpec]:
        """The ``engine`` service (dispatcher, workers, waiter)."""
        engine = engine_of(rt)
        return [ServiceSpec("engine", engine.serve, engine.statistics)]

    def blueprint(self, rt: Runtime) -> Blueprint | None:
        """``/api/v1/jobs…`` and ``/api/v1/queue/…``."""
        from hathd.engine.http import make_blueprint

        return make_blueprint(engine_of(rt))

    def reconfigure(self, rt: Runtime, config: Config) -> None:
        """Lanes, workers, retry presets, job timeout and disk thresholds from the reloaded
        ``[engine]`` (see :meth:`~hathd.engine.core.Engine.reconfigure`)."""
        engine_of(rt).reconfigure(config.engine)

    def cli(self) -> Sequence[click.Command]:
        """``hathd jobs …`` and ``hathd queue …``."""
        from hathd.engine.cli import jobs, queue

        return [jobs, queue]
