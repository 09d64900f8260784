"""The recipes subsystem as a daemon plugin: upload jobs, their API routes and CLI commands.

``setup`` loads the recipes (built-ins, ``[recipes] directory``, per-service overrides),
creates the ``recipes`` tables, registers the ``upload`` job kind and one engine lane per
service. The ``uploads`` service owns the HTTP sessions and closes them at shutdown; its
statistics are each service's request, login, retry and upload counters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import trio

from hathd.recipes import batches, posts
from hathd.recipes.api import create_blueprint
from hathd.recipes.loader import configured_recipes
from hathd.recipes.uploader import Uploader
from hathd.recipes.uploads import Uploads
from hathd.recipes.user_templates import UserTemplates
from hathd.runtime import BasePlugin, Runtime
from hathd.supervisor import ServiceSpec

if TYPE_CHECKING:
    import asyncclick as click
    from quart import Blueprint


class RecipesPlugin(BasePlugin):
    """Wires the recipes subsystem into the daemon; offers :attr:`uploads` after ``setup``
    (``None`` without an engine)."""

    name = "recipes"

    def __init__(self) -> None:
        self.uploads: Uploads | None = None

    async def setup(self, rt: Runtime) -> None:
        """Load recipes, migrate, register the ``upload`` and ``forum-post`` handlers and the
        lanes.

        :raises ConfigError: an invalid recipe or ``[recipes]`` section (with key paths).
        """
        config = rt.config.recipes
        recipes = await trio.to_thread.run_sync(configured_recipes, config)
        user_templates = await trio.to_thread.run_sync(
            UserTemplates.load,
            config.templates_dir,
            config.template_files,
            list(config.output_templates),
        )
        await batches.migrate(rt.store)
        self.uploads = None
        await posts.migrate(rt.store)
        if rt.engine is None:
            return
        uploader = Uploader(recipes, rt.config.recipes)
        # credential files and the keyring may block (a locked wallet): read them off the loop
        await trio.to_thread.run_sync(uploader.read_credentials)
        uploads = Uploads(
            uploader,
            rt.engine,
            rt.store,
            templates=dict(config.output_templates),
            user_templates=user_templates,
        )
        uploads.register()
        self.uploads = uploads

    def services(self, rt: Runtime) -> Sequence[ServiceSpec]:
        """``uploads``: keeps the HTTP sessions open until shutdown, then closes each one as
        soon as it is idle."""
        uploads = self.uploads
        if uploads is None:
            return ()

        async def serve(*, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
            # posts whose batches were finalized just before the daemon stopped
            await uploads.posts.release_ready()
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                # uploads still running belong to the engine, which stops after us: their
                # sessions close when they end
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await uploads.uploader.close_when_idle()

        return [ServiceSpec("uploads", serve, uploads.uploader.statistics)]

    def blueprint(self, rt: Runtime) -> Blueprint | None:
        """``/api/v1/uploads``, ``/api/v1/posts`` and ``/api/v1/recipes``."""
        uploads = self.uploads
        return None if uploads is None else create_blueprint(uploads)

    def cli(self) -> Sequence[click.Command]:
        """``upload``, ``upload-status``, ``recipes list|check``."""
        from hathd.recipes.cli import COMMANDS

        return COMMANDS
