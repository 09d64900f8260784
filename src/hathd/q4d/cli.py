"""``hathd q4d …``: import a Queue4Download setup, show the ingest status and rejections."""

from __future__ import annotations

import json
import os
from pathlib import Path

import asyncclick as click
import trio

from hathd.clictx import CliContext
from hathd.q4d.importer import convert, read_settings, read_type_codes, to_toml


@click.group("q4d")
async def q4d_group() -> None:
    """Seedbox transfers (Queue4Download): MQTT events, lftp, labels."""


async def _read(path: str | None) -> str | None:
    if path is None:
        return None
    return await trio.Path(path).read_text(encoding="utf-8")


async def _write_secret(folder: Path, name: str, value: str) -> str:
    """Write ``value`` to ``folder/name`` (mode 0600); returns the absolute path, since the
    daemon that reads it runs from another working directory."""

    def write() -> str:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder.resolve() / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(value + "\n")
        return str(path)

    return await trio.to_thread.run_sync(write)


@q4d_group.command("import")
@click.option(
    "--conf",
    "conf",
    type=click.Path(exists=True, dir_okay=False),
    help="q4d.conf, Q4Dconfig.sh or Q4Dclient.sh",
)
@click.option("--types", "types", type=click.Path(exists=True, dir_okay=False), help="Types.config")
@click.option(
    "--type-map",
    "type_map",
    type=click.Path(exists=True, dir_okay=False),
    help="type_mapping.json (or a shell file with TypeCodes[X]=/dir)",
)
@click.option("--env/--no-env", default=True, help="apply Q4D_* environment variables")
@click.option(
    "--secrets-dir",
    type=click.Path(file_okay=False),
    help="write passwords to files here (mode 0600) instead of into the TOML",
)
async def import_cmd(
    conf: str | None, types: str | None, type_map: str | None, env: bool, secrets_dir: str | None
) -> None:
    """Print hathd TOML ([mqtt], [q4d], [q4d.type_map]) for a Queue4Download setup."""
    try:
        settings = read_settings(await _read(conf) or "")
        codes = read_type_codes(await _read(type_map) or "") if type_map else None
        imported = convert(
            settings,
            types_config=await _read(types),
            type_codes=codes,
            environ=dict(os.environ) if env else None,
        )
        files: dict[str, str] = {}
        if secrets_dir is not None:
            for name, value in imported.secrets.items():
                files[name] = await _write_secret(Path(secrets_dir), f"{name}.password", value)
    except (OSError, ValueError) as exc:
        click.echo(f"hathd: {exc}", err=True)
        raise click.exceptions.Exit(2) from None
    for note in imported.notes:
        click.echo(f"# note: {note}")
    click.echo(to_toml(imported, password_files=files))


@q4d_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_obj
async def status_cmd(obj: CliContext, as_json: bool) -> None:
    """The MQTT ingest counters of the running daemon."""
    async with obj.admin() as admin:
        reply = await admin.get("/api/v1/q4d/status")
    if as_json:
        click.echo(json.dumps(reply, indent=2))
        return
    for key in ("connected", "received", "queued", "duplicates", "labels_sent", "labels_pending"):
        click.echo(f"{key:15} {reply.get(key)}")
    for reason, count in sorted((reply.get("rejected") or {}).items()):
        click.echo(f"rejected {reason:15} {count}")


@q4d_group.command("rejected")
@click.option("--limit", default=20, show_default=True, help="how many, newest first")
@click.pass_obj
async def rejected_cmd(obj: CliContext, limit: int) -> None:
    """The last rejected Down payloads with their reasons."""
    async with obj.admin() as admin:
        reply = await admin.get("/api/v1/q4d/rejected", params={"limit": limit})
    for row in reply.get("rejected", []):
        click.echo(
            f"{row['received_at']:.0f} {row['reason']:15} {row['detail']}  {row['payload']!r}"
        )
