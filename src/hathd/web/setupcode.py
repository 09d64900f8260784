"""The one-time setup code that claims a fresh node from a remote address.

``hathd run`` calls :func:`issue_setup_code` at start: while no admin exists, a new code is
written to ``<state>/setup-code`` (mode 0600) and logged; once the node is claimed the file is
removed (by the setup route, and here at the next start).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import trio

from hathd.store import Store
from hathd.web import accounts

FILE_NAME = "setup-code"


def new_code() -> str:
    """Four groups of four hex digits (64 bits), e.g. ``3f9a-07c1-b2d4-e810``."""
    raw = secrets.token_hex(8)
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def _write(path: Path, code: str) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(code + "\n")


async def issue_setup_code(store: Store, state_dir: Path) -> str | None:
    """Write a fresh setup code to ``state_dir/setup-code`` and return it while the node has no
    admin; return None (and remove a stale file) once it has one.

    :raises OSError: the file cannot be written.
    """
    await accounts.migrate(store)
    path = state_dir / FILE_NAME
    if await store.read(accounts.has_admin):
        await trio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))
        return None
    code = new_code()
    await trio.to_thread.run_sync(_write, path, code)
    return code
