"""The gallery downloader as a daemon plugin.

``setup`` migrates the ``gallery`` store component, registers the ``gallery`` job kind with its
final hook, declares the ``hath-gallery`` lane (one gallery at a time) and keeps the
:class:`Downloader`; :meth:`GalleryPlugin.trigger` is the sync callable the daemon hands the
image node for the servercmd ``start_downloader``. ``services`` supervises the downloader;
``blueprint`` adds ``/api/v1/hath/download``; ``cli`` adds ``hathd hath download``.

Credentials come from ``[hath] client_id``/``client_key``, else ``<state>/data/client_login``
(``<id>-<key>``, docs/hath-protocol.md §1.1), read by :mod:`hathd.hath.credentials`. While the
image node runs (the :class:`~hathd.hath.plugin.NodeHandle` the plugin is built with), its RPC
client is used (one clock, one host failover);
otherwise the downloader has its own client on ``[gallery] rpc_server``, else
``[hath] rpc_server``, and syncs its clock with ``server_stat`` on first use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hathd.config import Config
from hathd.errors import HathdError, PermanentError
from hathd.gallery.config import GalleryConfig
from hathd.gallery.downloader import Downloader
from hathd.gallery.handler import (
    DOMAIN,
    KIND,
    MIGRATIONS,
    GalleryDeps,
    meta_from_params,
    run_gallery,
)
from hathd.gallery.hosts import HostGates
from hathd.gallery.rpc import DownloaderRpc, OpenRpc, RpcTarget, standalone_rpc
from hathd.hath import credentials as hath_credentials
from hathd.hath.plugin import NodeHandle
from hathd.hath.protocol import Credentials, ProtocolError, ServerClock
from hathd.runtime import BasePlugin, Runtime
from hathd.supervisor import ServiceSpec

if TYPE_CHECKING:
    import asyncclick as click
    from quart import Blueprint

    from hathd.engine.api import JobContext, JobSpec


class _NoNode:
    node: None = None


class NoCredentials(HathdError):
    """No H@H client id/key is configured."""


def gallery_config(config: Config) -> GalleryConfig:
    """The ``[gallery]`` section."""
    return config.gallery


def load_credentials(config: Config, data_dir: Path) -> Credentials:
    """``[hath]`` id/key, else ``data/client_login``, through
    :func:`hathd.hath.credentials.load_credentials` (blocking: reads one small file).

    :raises NoCredentials: neither is usable.
    """
    try:
        creds = hath_credentials.load_credentials(config.hath, data_dir)
    except ProtocolError as exc:
        raise NoCredentials(f"unusable H@H credentials: {exc}") from None
    if creds is None:
        raise NoCredentials(
            "no H@H credentials: set [hath] client_id and client_key, or data/client_login"
        )
    return creds


def rpc_target(config: Config, cfg: GalleryConfig | None = None) -> RpcTarget:
    """The control server of the downloader (``[gallery] rpc_server`` else ``[hath]``)."""
    hath = config.hath
    text = (cfg or gallery_config(config)).rpc_server or hath.rpc_server
    try:
        return RpcTarget.parse(text, hath.rpc_path)
    except ValueError as exc:
        raise HathdError(f"bad rpc_server {text!r}: {exc}") from None


def download_root(rt: Runtime, cfg: GalleryConfig | None = None) -> Path:
    """``[gallery] download_dir`` else ``<state>/download``."""
    configured = (cfg or gallery_config(rt.config)).download_dir
    return Path(configured).expanduser() if configured else rt.paths.downloads


def node_disk_remaining(hath: NodeHandle) -> int:
    """``diskremaining_bytes`` from the running image node's settings (docs/hath-protocol.md
    §2), else 0."""
    node = hath.node
    return 0 if node is None else node.settings.diskremaining_bytes


def rpc_opener(
    rt: Runtime, clock: ServerClock, cfg: GalleryConfig, hath: NodeHandle | None = None
) -> OpenRpc:
    """How the downloader reaches the control server: the running image node's RPC client
    (``hath.node.rpc``: its clock, its ``rpc_server_ip`` failover) when there is
    one and it is still open, else a client of its own on ``rpc_server`` sharing ``clock`` (a
    node that stopped, e.g. refused or terminated, has closed its client). Credentials are
    read on each use, so ``hathd hath login`` needs no restart.

    :raises HathdError: (on entering) no credentials, or a malformed ``rpc_server``.
    """
    standalone: OpenRpc | None = None

    @asynccontextmanager
    async def open_rpc() -> AsyncIterator[DownloaderRpc]:
        nonlocal standalone
        node = None if hath is None else hath.node
        client = None if node is None else node.rpc
        if client is not None and not client.closed:
            yield DownloaderRpc(client)
            return
        if standalone is None:
            standalone = standalone_rpc(
                rpc_target(rt.config, cfg),
                lambda: load_credentials(rt.config, rt.paths.data),
                clock,
                timeout=cfg.rpc_timeout,
            )
        async with standalone() as rpc:
            yield rpc

    return open_rpc


async def install(
    rt: Runtime, cfg: GalleryConfig, hath: NodeHandle | None = None
) -> tuple[Downloader, GalleryDeps]:
    """Set the downloader up on ``rt`` with settings ``cfg``: migrations, the ``gallery``
    handler and final hook, the ``hath-gallery`` lane (one gallery at a time). ``hath`` is
    the image node to share (its RPC client and disk settings), if any. Returns the
    downloader and the handler's dependencies (its host gates among them).

    :raises HathdError: the engine is not set up.
    """
    if rt.engine is None:
        raise HathdError("the gallery downloader needs the job engine")
    await rt.store.migrate("gallery", MIGRATIONS)
    handle: NodeHandle = _NoNode() if hath is None else hath
    open_rpc = rpc_opener(rt, ServerClock(), cfg, handle)
    deps = GalleryDeps(
        config=cfg,
        root=download_root(rt, cfg),
        store=rt.store,
        gates=HostGates(cfg.host_concurrency),
        open_rpc=open_rpc,
        server_disk_remaining=lambda: node_disk_remaining(handle),
    )
    downloader = Downloader(rt.engine, rt.store, open_rpc)

    async def handler(ctx: JobContext) -> dict[str, Any] | None:
        return await run_gallery(deps, ctx)

    def validate(spec: JobSpec) -> None:
        # the same shape check the handler makes, at submission (admin API: 400 "params: ...");
        # names (folder, files) are made safe at run time and written through hathd.safepath
        try:
            meta_from_params(spec.params)
        except PermanentError as exc:
            raise ValueError(f"params: {exc}") from None

    rt.engine.register(KIND, handler, on_final=downloader.on_final, validate=validate)
    rt.engine.add_lane(DOMAIN, concurrency=1)
    return downloader, deps


class GalleryPlugin(BasePlugin):
    """Wires the gallery downloader into the daemon.

    Needs ``hath``: the image node to share (:class:`~hathd.hath.plugin.NodeHandle`, ``None``
    when the daemon runs without the hath plugin). Offers :meth:`trigger` (for the servercmd
    ``start_downloader``) and :attr:`downloader` (after ``setup``).
    """

    name = "gallery"

    def __init__(self, hath: NodeHandle | None = None) -> None:
        self.hath = hath
        self.downloader: Downloader | None = None
        self.deps: GalleryDeps | None = None

    def trigger(self) -> bool:
        """Ask the downloader for work now (see :meth:`Downloader.trigger`); ``False`` before
        ``setup``."""
        return False if self.downloader is None else self.downloader.trigger()

    def enabled(self, config: Config) -> bool:
        """On unless ``[gallery] enabled = false``."""
        return gallery_config(config).enabled

    async def setup(self, rt: Runtime) -> None:
        """Migrations, the ``gallery`` handler and lane, the ``start_downloader`` trigger.

        :raises HathdError: the engine is not set up.
        """
        self.downloader, self.deps = await install(rt, gallery_config(rt.config), self.hath)

    def services(self, rt: Runtime) -> Sequence[ServiceSpec]:
        """The downloader service (idle until triggered)."""
        downloader = self.downloader
        if downloader is None:
            return ()
        return [ServiceSpec("gallery-downloader", downloader.serve, downloader.statistics)]

    def blueprint(self, rt: Runtime) -> Blueprint | None:
        """``/api/v1/hath/download``."""
        from hathd.gallery.api import make_blueprint

        downloader = self.downloader
        if downloader is None:
            return None
        return make_blueprint(downloader)

    def cli(self) -> Sequence[click.Command]:
        """``hathd hath download``: added to the image node's ``hath`` group."""
        from hathd.gallery.cli import hath_download
        from hathd.hath.cli import hath_group

        hath_group.add_command(hath_download, name="download")
        return []
