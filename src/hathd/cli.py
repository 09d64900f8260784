"""The ``hathd`` command line (asyncclick, run on the Trio backend).

Core commands: ``run``, ``status``, ``config check FILE``, ``config show``; each plugin adds its
own (``jobs``, ``queue``, ``hath``, ``upload`` …). Commands other than ``run`` and ``config``
talk to the daemon over its unix socket; when none answers they print a clear message and exit
with code 2.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import asyncclick as click

from hathd import config as config_mod
from hathd.clictx import CliContext, table
from hathd.client import AdminError
from hathd.daemon import (
    Daemon,
    configure_logging,
    default_config_path,
    default_plugins,
    resolve_state_dir,
)
from hathd.errors import ConfigError, DaemonNotRunning, HathdError
from hathd.logfile import add_file_handler
from hathd.supervisor import describe_error

log = logging.getLogger("hathd")


class RootGroup(click.Group):
    """Turns :class:`DaemonNotRunning` into exit code 2 and admin errors into exit code 1."""

    async def invoke(self, ctx: click.Context) -> Any:
        try:
            return await super().invoke(ctx)
        except DaemonNotRunning as exc:
            click.echo(f"hathd: the daemon is not running ({exc})", err=True)
            raise click.exceptions.Exit(2) from None
        except AdminError as exc:
            click.echo(f"hathd: {exc}", err=True)
            raise click.exceptions.Exit(1) from None


def _state_dir_for(state_dir: str | None, config_path: str | None) -> str:
    try:
        cfg = config_mod.load(config_path)
    except ConfigError:
        cfg = config_mod.Config()
    return str(resolve_state_dir(state_dir, cfg, os.environ))


@click.group(cls=RootGroup)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    envvar="HATHD_STATE_DIR",
    help="State directory (default: $STATE_DIRECTORY, else $XDG_STATE_HOME/hathd).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="HATHD_CONFIG",
    help="Configuration file (TOML); every key has a default. Under systemd, "
    "$CONFIGURATION_DIRECTORY/hathd.toml is read when it exists.",
)
@click.version_option(package_name="hathd")
@click.pass_context
async def cli(ctx: click.Context, state_dir: str | None, config_path: str | None) -> None:
    """hathd: H@H node, seedbox transfers, fanfiction, download queue, uploads."""
    from pathlib import Path

    if config_path is None:
        config_path = default_config_path(os.environ)
    ctx.obj = CliContext(Path(_state_dir_for(state_dir, config_path)), config_path)
    ctx.meta["state_dir_option"] = state_dir


@cli.command()
@click.pass_context
async def run(ctx: click.Context) -> None:
    """Run the daemon in the foreground until SIGTERM or SIGINT."""
    obj: CliContext = ctx.obj
    try:
        config = config_mod.load(obj.config_path)
    except ConfigError as exc:
        for path, message in exc.problems:
            click.echo(f"hathd: config: {path}: {message}", err=True)
        raise click.exceptions.Exit(2) from None
    configure_logging(config.daemon.log_level)
    directory = resolve_state_dir(ctx.meta.get("state_dir_option"), config, os.environ)
    try:
        add_file_handler(config.log, directory)
    except OSError as exc:
        click.echo(f"hathd: log.file: {describe_error(exc)}", err=True)
        raise click.exceptions.Exit(2) from None
    daemon = Daemon(config, directory, config_path=obj.config_path)
    try:
        await daemon.run()
    except (OSError, HathdError, ExceptionGroup) as exc:
        log.error("hathd failed: %s", describe_error(exc))
        raise click.exceptions.Exit(1) from None


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_obj
async def status(obj: CliContext, as_json: bool) -> None:
    """Show every service's state, restarts and last error."""
    async with obj.admin() as admin:
        data = await admin.get("/api/v1/status")
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(
        f"hathd {data['version']}  pid {data['pid']}  up {data['uptime']:.0f} s  "
        f"state {data['state_dir']}"
    )
    rows = [
        [s["name"], s["state"], str(s["restarts"]), (s["last_error"] or "")[:60]]
        for s in data["services"]
    ]
    click.echo(table(rows, ["SERVICE", "STATE", "RESTARTS", "LAST ERROR"]))
    off = [s for s in data.get("subsystems", []) if not s["enabled"]]
    for sub in off:
        click.echo(f"{sub['name']}: off ({sub['reason']})")
    for program in data.get("programs", []):
        if not program["found"]:
            click.echo(
                f"{program['name']}: missing ({program['reason']}); "
                f"{program['needed_by']} jobs fail until fixed: {program['fix']}"
            )
    pending = data.get("restart_pending") or []
    if pending:
        click.echo(f"restart pending: {', '.join(pending)} (changed; a restart applies them)")


@cli.group()
async def config() -> None:
    """Check or show the configuration."""


@config.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
async def config_check(file: str) -> None:
    """Validate FILE (with HATHD_* overrides applied); list every problem with its key path."""
    try:
        config_mod.load(file)
    except ConfigError as exc:
        for path, message in exc.problems:
            click.echo(f"{path}: {message}", err=True)
        click.echo(f"{file}: {len(exc.problems)} problem(s)", err=True)
        raise click.exceptions.Exit(1) from None
    click.echo(f"{file}: OK")


@config.command("show")
@click.pass_obj
async def config_show(obj: CliContext) -> None:
    """Print the effective configuration as JSON, secrets redacted."""
    try:
        cfg = config_mod.load(obj.config_path)
    except ConfigError as exc:
        for path, message in exc.problems:
            click.echo(f"{path}: {message}", err=True)
        raise click.exceptions.Exit(1) from None
    click.echo(json.dumps(config_mod.unstructure_redacted(cfg), indent=2))


@config.command("reference")
async def config_reference() -> None:
    """Print the Markdown reference of every key: type, default, environment name, meaning."""
    from hathd.confdoc import page

    click.echo(page(), nl=False)


def _add_plugin_commands() -> None:
    from hathd.web.cli import keys
    from hathd.web.users_cli import users

    cli.add_command(keys)
    cli.add_command(users)
    for plugin in default_plugins():
        for command in plugin.cli():
            cli.add_command(command)


_add_plugin_commands()


def main() -> None:
    """Console-script entry point: the CLI on the Trio backend."""
    cli(_anyio_backend="trio")
