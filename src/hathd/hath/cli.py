"""``hathd hath …`` commands.

* ``login``: ask for the client ID and key (or read them with ``--from`` from the official
  client's ``data/client_login``), store them in ``<state_dir>/data/client_login`` (mode 0600;
  docs/hath-protocol.md §1.1).
* ``verify``: full rescan of the cache directory with a SHA-1 check of every file; rebuilds
  the index. A running node does it itself (admin API); otherwise it runs here with a
  progress bar.
* ``status``: the node's statistics from the running daemon.
"""

from __future__ import annotations

import json
from pathlib import Path

import asyncclick as click
import trio

from hathd import config as config_mod
from hathd.clictx import CliContext
from hathd.client import AdminClient, AdminError
from hathd.errors import ConfigError, DaemonNotRunning
from hathd.hath.cache import Cache
from hathd.hath.credentials import save_credentials
from hathd.hath.protocol import Credentials, ProtocolError
from hathd.runtime import Paths
from hathd.store import open_store

VERIFY_TIMEOUT = 24 * 3600.0
"""Seconds the CLI waits for a rescan done by the daemon."""


@click.group("hath")
async def hath_group() -> None:
    """The Hentai@Home image node."""


@hath_group.command("login")
@click.option("--client-id", type=int, default=None, help="The H@H client ID (asked if unset).")
@click.option("--client-key", default=None, help="The H@H client key (asked if unset).")
@click.option(
    "--from",
    "from_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Take the ID and key from another client's login file (the official client's "
    "data/client_login).",
)
@click.pass_obj
async def login(
    obj: CliContext, client_id: int | None, client_key: str | None, from_file: str | None
) -> None:
    """Store the H@H client ID and key (data/client_login, mode 0600)."""
    try:
        if from_file is not None:
            creds = await trio.to_thread.run_sync(_read_login_file, Path(from_file))
        else:
            if client_id is None:
                client_id = int(await click.prompt("H@H client ID", type=int))
            if client_key is None:
                client_key = str(await click.prompt("H@H client key", hide_input=True))
            creds = Credentials(client_id, client_key.strip())
    except ProtocolError as exc:
        raise click.BadParameter(str(exc)) from None
    path = await trio.to_thread.run_sync(save_credentials, creds, Paths(obj.state_dir).data)
    click.echo(f"saved credentials for client {creds.client_id} to {path}")


def _read_login_file(path: Path) -> Credentials:
    try:
        text = path.read_text("ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"cannot read {path}: {exc}") from None
    return Credentials.parse_login_file(text)


@hath_group.command("verify")
@click.option("--no-hash", is_flag=True, help="Check names and sizes only (no SHA-1).")
@click.pass_obj
async def verify(obj: CliContext, no_hash: bool) -> None:
    """Rescan the whole cache: delete bad files, rebuild the index.

    A running node does the rescan itself (through the admin API), so its counters stay
    right; otherwise the cache is rescanned here, with a progress bar.
    """
    try:
        async with AdminClient(obj.socket, timeout=VERIFY_TIMEOUT) as admin:
            reply = await admin.post("/api/v1/hath/verify", {"no_hash": no_hash})
    except DaemonNotRunning:
        reply = None
    except AdminError as exc:
        if exc.status != 409:  # 409: the daemon runs without the node; rescan here
            raise
        reply = None
    if reply is not None:
        click.echo(
            f"kept {reply['kept']} files ({reply['bytes']} bytes), removed {reply['removed']}, "
            f"moved {reply['moved']} (by the running node)"
        )
        return
    try:
        cfg = config_mod.load(obj.config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    paths = Paths(obj.state_dir)
    root = _cache_root(cfg.hath.cache_dir, paths)
    if not await trio.Path(root).is_dir():
        raise click.ClickException(f"no cache directory at {root}")
    async with open_store(paths.database) as store:
        cache = await Cache.open(store, root)
        with click.progressbar(
            length=1, label="verifying", file=click.get_text_stream("stderr")
        ) as bar:
            seen = [0]

            def progress(done: int, total: int) -> None:
                bar.length = max(total, 1)
                bar.update(done - seen[0])
                seen[0] = done

            result = await cache.rescan(verify=not no_hash, progress=progress)
    click.echo(
        f"kept {result.kept} files ({result.bytes} bytes), removed {result.removed}, "
        f"moved {result.moved}"
    )


def _cache_root(configured: str | None, paths: Paths) -> Path:
    return Path(configured).expanduser() if configured else paths.cache


@hath_group.command("status")
@click.pass_obj
async def status(obj: CliContext) -> None:
    """Print the node's statistics as JSON."""
    async with obj.admin() as admin:
        reply = await admin.get("/api/v1/hath/status")
    click.echo(json.dumps(reply, indent=2, default=str))
