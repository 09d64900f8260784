"""The hath subsystem as a daemon plugin.

* ``enabled(config)`` is ``[hath] enabled`` (default false); ``off_reason`` explains it.
* ``setup`` migrates the cache index (component ``hath``) and reads the credentials.
* ``services``: one supervised service ``hath`` running :class:`~hathd.hath.node.HathNode`
  (the RPC keeper, which owns the image server, the srfetch proxy and the pruner; they share
  one start-up sequence, so they live in one service). Each (re)start builds a fresh node and
  offers it as :attr:`HathPlugin.node` (the gallery downloader uses ``node.rpc`` and
  ``node.settings``; :class:`NodeHandle` is that need). Without credentials the service idles
  and its statistics say ``no H@H credentials``. A node the control server refuses for good
  (bad credentials, another client on the IP or client ID;
  :class:`~hathd.hath.node.NodeRefused`) returns normally: the supervisor shows the service
  ``stopped`` and does not restart it (so no second ``client_login``), and its statistics
  keep ``state: refused`` and the ``reason``.
* ``blueprint``: ``GET /api/v1/hath/status``, ``POST /api/v1/hath/verify``.
* ``cli``: ``hathd hath login``, ``hathd hath verify``, ``hathd hath status``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio

from hathd.config import Config
from hathd.hath.cache import MIGRATIONS
from hathd.hath.credentials import load_credentials
from hathd.hath.node import HathNode
from hathd.hath.protocol import Credentials, ProtocolError
from hathd.runtime import BasePlugin, Runtime
from hathd.supervisor import ServiceSpec

if TYPE_CHECKING:
    import asyncclick as click
    from quart import Blueprint

NO_CREDENTIALS = "no H@H credentials"


def cache_root(rt: Runtime) -> Path:
    """``[hath] cache_dir`` or ``<state_dir>/cache``."""
    configured = rt.config.hath.cache_dir
    return Path(configured).expanduser() if configured else rt.paths.cache


class NodeHandle(Protocol):
    """What the hath plugin offers other parts: the running image node, or ``None`` while
    none runs (off, no credentials, starting, refused)."""

    @property
    def node(self) -> HathNode | None: ...


class HathPlugin(BasePlugin):
    """Wires the hath subsystem into the daemon.

    Offers :attr:`node` (see :class:`NodeHandle`). Needs :attr:`start_downloader`: the sync
    callable the servercmd ``start_downloader`` calls (the daemon sets it to the gallery
    downloader's trigger; ``None`` leaves the command recorded only).
    """

    name = "hath"

    def __init__(self) -> None:
        self.node: HathNode | None = None
        self.credentials: Credentials | None = None
        self.error: str | None = None
        self.start_downloader: Callable[[], Any] | None = None

    def enabled(self, config: Config) -> bool:
        """``[hath] enabled``; without credentials the node still stays off (see module doc)."""
        return config.hath.enabled

    def off_reason(self, config: Config) -> str:
        """Why the subsystem is off."""
        return "[hath] enabled = false; set it, and the credentials with `hathd hath login`"

    async def setup(self, rt: Runtime) -> None:
        """Migrate the cache index and load the credentials (config or ``data/client_login``)."""
        await rt.store.migrate("hath", MIGRATIONS)
        self.node = None
        self.error = None
        try:
            creds = await trio.to_thread.run_sync(load_credentials, rt.config.hath, rt.paths.data)
        except ProtocolError as exc:
            self.error = str(exc)
            creds = None
        self.credentials = creds

    def services(self, rt: Runtime) -> Sequence[ServiceSpec]:
        """The node, or an idle ``hath`` service saying why it is off."""
        creds = self.credentials
        if creds is None:
            reason = self.error or NO_CREDENTIALS

            async def idle(*, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
                task_status.started()
                await trio.sleep_forever()

            return [ServiceSpec("hath", idle, lambda: {"state": "off", "reason": reason})]

        async def serve(*, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
            node = HathNode(
                rt.config.hath,
                creds,
                store=rt.store,
                bus=rt.bus,
                data_dir=rt.paths.data,
                cache_root=cache_root(rt),
                on_start_downloader=self._start_downloader,
            )
            self.node = node
            await node.serve(task_status=task_status)

        return [ServiceSpec("hath", serve, self.statistics)]

    def blueprint(self, rt: Runtime) -> Blueprint | None:
        """``GET /api/v1/hath/status``: the node's statistics (or why it is off);
        ``POST /api/v1/hath/verify`` (``{"no_hash": bool}``): a full rescan by the running node
        (409 when the node is not running)."""
        from quart import Blueprint

        from hathd.jsonbody import read_object

        bp = Blueprint("hath", __name__)

        @bp.get("/api/v1/hath/status")
        async def hath_status() -> Any:
            return self.statistics()

        @bp.post("/api/v1/hath/verify")
        async def hath_verify() -> Any:
            node = self.node
            if node is None or node.cache is None:
                return {"error": "the H@H node is not running"}, 409
            body = await read_object(required=False)
            no_hash = bool(body.get("no_hash"))
            result = await node.cache.rescan(verify=not no_hash)
            return attrs.asdict(result)

        return bp

    def cli(self) -> Sequence[click.Command]:
        """The ``hath`` command group."""
        from hathd.hath.cli import hath_group

        return [hath_group]

    def _start_downloader(self) -> Any:
        return None if self.start_downloader is None else self.start_downloader()

    def statistics(self) -> dict[str, Any]:
        """The node's statistics, ``{"state": "starting"}``, or ``{"state": "off", "reason"}``."""
        node = self.node
        if node is None:
            if self.credentials is not None:
                return {"state": "starting"}
            return {"state": "off", "reason": self.error or NO_CREDENTIALS}
        return attrs.asdict(node.statistics())
