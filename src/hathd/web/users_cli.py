"""``hathd users``: household accounts over the admin unix socket.

    hathd users add NAME --role viewer     # asks for the password twice
    hathd users ls
    hathd users passwd NAME                # ends the user's sessions
    hathd users role NAME operator
    hathd users rm NAME                    # revokes their sessions and API keys

Passwords are read from the terminal without echo, or with ``--password-stdin`` as the first
line of standard input (for scripts). The last admin can be neither removed nor demoted: the
daemon answers 409 and the command exits 1 with its message.
"""

from __future__ import annotations

import json
import sys
import time
from urllib.parse import quote

import asyncclick as click

from hathd.clictx import CliContext, table
from hathd.web.roles import ROLES


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


async def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    value = await click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return str(value)


def _path(username: str) -> str:
    return f"/api/v1/users/{quote(username, safe='')}"


_STDIN = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input instead of the terminal.",
)


@click.group()
async def users() -> None:
    """Household accounts of the web pages (roles: viewer, operator, admin)."""


@users.command("add")
@click.argument("username")
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default="viewer",
    show_default=True,
    help="viewer: look and request; operator: also queue, library, uploads; admin: everything.",
)
@_STDIN
@click.pass_obj
async def users_add(obj: CliContext, username: str, role: str, password_stdin: bool) -> None:
    """Create the account USERNAME."""
    password = await _password(password_stdin)
    async with obj.admin() as admin:
        reply = await admin.post(
            "/api/v1/users", {"username": username, "password": password, "role": role}
        )
    click.echo(f"added {reply['username']} ({reply['role']})")


@users.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON list.")
@click.pass_obj
async def users_ls(obj: CliContext, as_json: bool) -> None:
    """List the accounts with their role, live sessions and API keys."""
    async with obj.admin() as admin:
        reply = await admin.get("/api/v1/users")
    if as_json:
        click.echo(json.dumps(reply["users"], indent=2))
        return
    rows = [
        [u["username"], u["role"], str(u["sessions"]), str(u["keys"]), _when(u["created"])]
        for u in reply["users"]
    ]
    click.echo(table(rows, ["USER", "ROLE", "SESSIONS", "KEYS", "CREATED"]))


@users.command("passwd")
@click.argument("username")
@_STDIN
@click.pass_obj
async def users_passwd(obj: CliContext, username: str, password_stdin: bool) -> None:
    """Set a new password for USERNAME; every session of the user ends."""
    password = await _password(password_stdin)
    async with obj.admin() as admin:
        reply = await admin.request("PATCH", _path(username), json={"password": password})
    click.echo(f"password of {username} changed; {reply['sessions_ended']} session(s) ended")


@users.command("role")
@click.argument("username")
@click.argument("role", type=click.Choice(ROLES))
@click.pass_obj
async def users_role(obj: CliContext, username: str, role: str) -> None:
    """Give USERNAME the role ROLE (from their next request on, keys included)."""
    async with obj.admin() as admin:
        reply = await admin.request("PATCH", _path(username), json={"role": role})
    click.echo(f"{reply['username']} is now {reply['role']}")


@users.command("rm")
@click.argument("username")
@click.pass_obj
async def users_rm(obj: CliContext, username: str) -> None:
    """Remove USERNAME: their sessions and API keys are revoked at once."""
    async with obj.admin() as admin:
        reply = await admin.delete(_path(username))
    click.echo(
        f"removed {username}; revoked {reply['sessions']} session(s) and {reply['keys']} key(s)"
    )
