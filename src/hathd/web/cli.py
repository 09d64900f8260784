"""``hathd keys``: create, list and revoke API keys over the admin unix socket.

A new key is printed once (to stdout, alone on its line, so ``KEY=$(hathd keys create …)``
works); the daemon keeps only its SHA-256.
"""

from __future__ import annotations

import json
import time

import asyncclick as click

from hathd.clictx import CliContext, table
from hathd.web.accounts import SCOPES


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


@click.group()
async def keys() -> None:
    """API keys for scripts and other programs (scopes: read, control, admin)."""


@keys.command("create")
@click.argument("name")
@click.option(
    "--scope",
    type=click.Choice(SCOPES),
    default="read",
    show_default=True,
    help="read: look; control: also change jobs and queues; admin: also keys and config.",
)
@click.option("--user", help="The user who owns the key (default: the first admin).")
@click.pass_obj
async def keys_create(obj: CliContext, name: str, scope: str, user: str | None) -> None:
    """Create a key called NAME and print it (shown this once only). Its scope may not exceed
    the owner's role."""
    body = {"name": name, "scope": scope} | ({"user": user} if user else {})
    async with obj.admin() as admin:
        reply = await admin.post("/api/v1/auth/keys", body)
    click.echo(f"created key {reply['id']} ({reply['scope']}); it is shown only now:", err=True)
    click.echo(reply["key"])


@keys.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON list.")
@click.pass_obj
async def keys_ls(obj: CliContext, as_json: bool) -> None:
    """List the keys (never their secret part)."""
    async with obj.admin() as admin:
        reply = await admin.get("/api/v1/auth/keys")
    if as_json:
        click.echo(json.dumps(reply["keys"], indent=2))
        return
    rows = [
        [
            k["id"],
            k["name"],
            k["scope"],
            k["prefix"] or "-",
            _when(k["created"]),
            _when(k["last_used"]),
        ]
        for k in reply["keys"]
    ]
    click.echo(table(rows, ["ID", "NAME", "SCOPE", "PREFIX", "CREATED", "LAST USED"]))


@keys.command("revoke")
@click.argument("key_id")
@click.pass_obj
async def keys_revoke(obj: CliContext, key_id: str) -> None:
    """Revoke key KEY_ID (as `hathd keys ls` shows it); it stops working at once."""
    async with obj.admin() as admin:
        await admin.delete(f"/api/v1/auth/keys/{key_id}")
    click.echo(f"revoked key {key_id}")
