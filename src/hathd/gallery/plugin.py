"""The gallery downloader as a daemon plugin.

``setup`` migrates the ``gallery`` store component, registers the ``gallery`` job kind with its
final hook, declares the ``hath-gallery`` lane (one gallery at a time) and publishes
``rt.extras["hath.start_downloader"]`` — a sync callable the image node's servercmd handler
calls for ``start_downloader``. ``services`` supervises the downloader; ``blueprint`` adds
``/api/v1/hath/download``; ``cli`` adds ``hathd hath download``.

Credentials come from ``[hath] client_id``/``client_key``, else ``<state>/data/client_login``
(``<id>-<key>``, hath-protocol.md §1.1), read by :mod:`hathd.hath.credentials`. While the image
node runs (``rt.extras["hath.node"]``), its RPC client is used (one clock, one host failover);
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
from hathd.hath.protocol import Credentials, ProtocolError, ServerClock
from hathd.hath.rpc import RpcClient
from hathd.runtime import BasePlugin, Runtime
from hathd.supervisor import ServiceSpec

if TYPE_CHECKING:
    import asyncclick as click
    from quart import Blueprint

    from hathd.engine.api import JobContext, JobSpec

START_KEY = "hath.start_downloader"
"""``rt.extras`` key of the trigger the servercmd handler calls."""

STATE_KEY = "gallery.downloader"
"""``rt.extras`` key of this runtime's :class:`Downloader`."""


class NoCredentials(HathdError):
    """No H@H client id/key is configured."""


def gallery_config(config: Config) -> GalleryConfig:
    """The ``[gallery]`` section (defaults while the root config has none)."""
    section = getattr(config, "gallery", None)
    return section if isinstance(section, GalleryConfig) else GalleryConfig()


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


def node_disk_remaining(rt: Runtime) -> int:
    """``diskremaining_bytes`` from the running image node's settings (§2), else 0."""
    settings = getattr(rt.extras.get("hath.node"), "settings", None)
    value = getattr(settings, "diskremaining_bytes", 0)
    return value if isinstance(value, int) else 0


def rpc_opener(rt: Runtime, clock: ServerClock, cfg: GalleryConfig) -> OpenRpc:
    """How the downloader reaches the control server: the running image node's RPC client
    (``rt.extras["hath.node"].rpc``: its clock, its ``rpc_server_ip`` failover) when there is
    one and it is still open, else a client of its own on ``rpc_server`` sharing ``clock`` (a
    node that stopped, e.g. refused or terminated, has closed its client). Credentials are
    read on each use, so ``hathd hath login`` needs no restart.

    :raises HathdError: (on entering) no credentials, or a malformed ``rpc_server``.
    """
    standalone: OpenRpc | None = None

    @asynccontextmanager
    async def open_rpc() -> AsyncIterator[DownloaderRpc]:
        nonlocal standalone
        client = getattr(rt.extras.get("hath.node"), "rpc", None)
        if isinstance(client, RpcClient) and not client.closed:
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


async def install(rt: Runtime, cfg: GalleryConfig) -> Downloader:
    """Set the downloader up on ``rt`` with settings ``cfg``: migrations, the ``gallery``
    handler and final hook, the ``hath-gallery`` lane (one gallery at a time), and
    ``rt.extras`` entries :data:`START_KEY`, :data:`STATE_KEY` and ``"gallery.gates"``.

    :raises HathdError: the engine is not set up.
    """
    if rt.engine is None:
        raise HathdError("the gallery downloader needs the job engine")
    await rt.store.migrate("gallery", MIGRATIONS)
    open_rpc = rpc_opener(rt, ServerClock(), cfg)
    deps = GalleryDeps(
        config=cfg,
        root=download_root(rt, cfg),
        store=rt.store,
        gates=HostGates(cfg.host_concurrency),
        open_rpc=open_rpc,
        server_disk_remaining=lambda: node_disk_remaining(rt),
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
    rt.extras[STATE_KEY] = downloader
    rt.extras["gallery.gates"] = deps.gates
    rt.extras[START_KEY] = downloader.trigger
    return downloader


class GalleryPlugin(BasePlugin):
    """Wires the gallery downloader into the daemon."""

    name = "gallery"

    def enabled(self, config: Config) -> bool:
        """On unless ``[gallery] enabled = false``."""
        return gallery_config(config).enabled

    async def setup(self, rt: Runtime) -> None:
        """Migrations, the ``gallery`` handler and lane, the ``start_downloader`` trigger.

        :raises HathdError: the engine is not set up.
        """
        await install(rt, gallery_config(rt.config))

    def services(self, rt: Runtime) -> Sequence[ServiceSpec]:
        """The downloader service (idle until triggered)."""
        downloader = rt.extras.get(STATE_KEY)
        if not isinstance(downloader, Downloader):
            return ()
        return [ServiceSpec("gallery-downloader", downloader.serve, downloader.statistics)]

    def blueprint(self, rt: Runtime) -> Blueprint | None:
        """``/api/v1/hath/download``."""
        from hathd.gallery.api import make_blueprint

        downloader = rt.extras.get(STATE_KEY)
        if not isinstance(downloader, Downloader):
            return None
        return make_blueprint(downloader)

    def cli(self) -> Sequence[click.Command]:
        """``hathd hath download``: added to the image node's ``hath`` group."""
        from hathd.gallery.cli import hath_download
        from hathd.hath.cli import hath_group

        hath_group.add_command(hath_download, name="download")
        return []


PLUGIN = GalleryPlugin()
