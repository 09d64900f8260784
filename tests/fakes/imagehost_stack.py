"""An in-process daemon slice for upload tests: runtime, real engine, the recipes plugin and
its API routes served on a unix socket (the admin socket path the CLI uses)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import attrs
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve

from hathd.admin.app import create_app
from hathd.clictx import CliContext
from hathd.config import Config
from hathd.engine import running_engine
from hathd.engine.config import EngineConfig, RetryPresetConfig
from hathd.engine.core import Engine
from hathd.engine.plugin import EnginePlugin
from hathd.recipes.config import RecipesConfig
from hathd.recipes.plugin import RecipesPlugin
from hathd.recipes.uploads import Uploads
from hathd.runtime import Runtime, open_runtime


@attrs.frozen
class Stack:
    """The assembled parts: runtime, the uploads pipeline, the CLI context."""

    rt: Runtime
    uploads: Uploads
    cli: CliContext

    @property
    def engine(self) -> Engine:
        """The running engine (the concrete class, with ``wait_final``)."""
        engine = self.rt.engine
        assert isinstance(engine, Engine)
        return engine


@asynccontextmanager
async def upload_stack(
    recipes: RecipesConfig,
    *,
    retry_delays: tuple[float, ...] = (0.2,),
    workers: int = 4,
    state_dir: Path | None = None,
) -> AsyncIterator[Stack]:
    """Run the engine and the recipes plugin in-process; serve the plugin's routes on
    ``<state_dir>/admin.sock`` (a short temporary path: unix socket paths are limited).
    ``state_dir`` (kept afterwards) lets a test stop the stack and start it again on the same
    state; by default a temporary one is made and removed."""
    state = state_dir or Path(tempfile.mkdtemp(prefix="hr", dir="/tmp"))
    config = Config(
        recipes=recipes,
        engine=EngineConfig(
            workers=workers,
            retry={"default": RetryPresetConfig(delays=list(retry_delays), final_wait=None)},
        ),
    )
    try:
        async with open_runtime(config, state) as rt, running_engine(rt):
            engine_plugin = EnginePlugin()
            plugin = RecipesPlugin()
            await plugin.setup(rt)
            uploads = plugin.uploads
            assert uploads is not None
            await uploads.posts.release_ready()
            # the real admin app (its body reader and error handlers): job and recipes routes
            app = create_app(rt, "unused-token", [engine_plugin, plugin])
            hyper = HyperConfig()
            hyper.bind = [f"unix:{rt.paths.socket}"]
            hyper.accesslog = None
            hyper.graceful_timeout = 1.0
            stop = trio.Event()
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(partial(serve, app, hyper, shutdown_trigger=stop.wait))
                    try:
                        yield Stack(rt, uploads, CliContext(state))
                    finally:
                        stop.set()
                        nursery.cancel_scope.deadline = trio.current_time() + 5
            finally:
                with trio.CancelScope(shield=True):
                    await uploads.uploader.aclose()
    finally:
        if state_dir is None:
            shutil.rmtree(state, ignore_errors=True)
