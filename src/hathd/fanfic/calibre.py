"""calibredb: finding, adding, exporting and replacing books in a Calibre library.

Every call goes through :func:`hathd.spawn.run` (argv list, hard timeout, kill ladder) and
one :class:`trio.Lock` per :class:`Calibre`, so at most one calibredb runs at a time (a local
library is a single SQLite file and calibre refuses concurrent writers).

Command shapes and outputs (calibre 6.13 ``src/calibre/db/cli/cmd_*.py``; q4d-and-fanfic.md §4):

- global options after the command: ``--with-library PATH|http://host:port/#lib``,
  ``--username U``, ``--password <f:/path/to/file>`` (calibre's file form; the password is
  never on argv).
- ``search EXPR`` prints ids comma-joined without a newline; no match exits 1 with
  ``No books matching the search expression``. The expression is FanFicFare's own
  (``adapters.get_url_search``: a regex on the ``url`` identifier FanFicFare writes into the
  EPUB, http or https, any title slug where the site's URLs carry one; see
  :func:`hathd.fanfic.stories.calibre_search`).
- ``add -d FILE`` prints ``Added book ids: 7`` (``, ``-joined).
- ``remove ID``, ``add_format ID FILE`` (replaces by default), ``export ID --single-dir
  --to-dir D --dont-save-cover --dont-write-opf --formats epub``,
  ``list --for-machine --fields all --search id:ID`` (JSON; custom columns as ``*name``),
  ``set_custom COLUMN ID VALUE`` (column without ``#``: calibre adds it).
- ``Another calibre program such as calibre-server or the main calibre program is running``
  (a local library locked by the GUI or a server) is retryable; ``The username/password
  combination is incorrect`` (content server) is permanent.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from hathd import spawn
from hathd.errors import PermanentError, RetryableError
from hathd.fanfic.config import CalibreConfig
from hathd.fanfic.stories import calibre_search

log = logging.getLogger(__name__)

_ADDED = re.compile(r"Added book ids:\s*([\d,\s]+)")
_ANOTHER = "Another calibre program"
_NO_MATCH = "No books matching"
_BAD_LOGIN = "username/password combination is incorrect"


class CalibreBusy(RetryableError):
    """Another calibre program holds the library; try again later."""


def parse_added_ids(stdout: str) -> list[int]:
    """The ids of ``Added book ids: 7, 8`` in calibredb add's output (``[]`` when absent)."""
    match = _ADDED.search(stdout)
    if not match:
        return []
    return [int(part) for part in re.split(r"[,\s]+", match.group(1).strip()) if part]


def parse_search_ids(stdout: str) -> list[int]:
    """The ids printed by calibredb search (``3,17``), in order."""
    return [int(part) for part in re.findall(r"\d+", stdout)]


def quote_search(value: str) -> str:
    """``value`` as a calibre search string literal: in double quotes, ``\\`` and ``"``
    escaped (calibre ``db/search.py`` tokenizer)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def url_search(url: str) -> str:
    """The search expression matching exactly the book whose ``url`` identifier is ``url``."""
    return "identifiers:" + quote_search(f"url:={url}")


def custom_value(value: Any) -> str | None:
    """A custom column value from ``list --for-machine`` as ``set_custom`` wants it (lists
    comma-joined), or ``None`` when there is nothing to restore."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@attrs.define
class CalibreStatistics:
    """Counters: calibredb calls made, failed, and seconds spent (wall clock)."""

    calls: int = 0
    failures: int = 0
    seconds: float = 0.0


class Calibre:
    """A Calibre library reached through calibredb, one call at a time.

    ``config_dir`` becomes ``CALIBRE_CONFIG_DIRECTORY`` (calibredb writes settings there; under
    systemd ``$HOME`` is read-only).
    """

    def __init__(self, config: CalibreConfig, *, config_dir: Path | None = None) -> None:
        self.config = config
        self.config_dir = config_dir
        self.lock = trio.Lock()
        self.stats = CalibreStatistics()

    @property
    def enabled(self) -> bool:
        """Whether a library is configured."""
        return bool(self.config.library)

    def session(self, workdir: Path) -> CalibreSession:
        """A session writing its temporary files (the password file) into ``workdir``."""
        return CalibreSession(self, workdir)

    def statistics(self) -> CalibreStatistics:
        """A copy of the counters."""
        return attrs.evolve(self.stats)


class CalibreSession:
    """calibredb calls on behalf of one job; temporary files live in its ``workdir``."""

    def __init__(self, calibre: Calibre, workdir: Path) -> None:
        self.calibre = calibre
        self.workdir = workdir
        self._password_file: Path | None = None
        self._password = ""

    async def _global_options(self) -> list[str]:
        cfg = self.calibre.config
        opts = ["--with-library", cfg.library]
        if cfg.username:
            opts += ["--username", cfg.username]
        password = cfg.read_password()
        if password:
            self._password = password
            if self._password_file is None:
                self._password_file = await spawn.write_secret_file(
                    self.workdir, f".calibre-password-{secrets.token_hex(6)}", password
                )
            opts += ["--password", f"<f:{self._password_file}>"]
        return opts

    async def run(self, command: str, args: Sequence[str]) -> spawn.SpawnResult:
        """Run ``calibredb COMMAND ARGS… GLOBAL-OPTIONS`` under the library lock.

        :raises CalibreBusy: another calibre program holds the library.
        :raises PermanentError: the content server refused the username/password.
        :raises RetryableError: the call timed out or calibredb could not be started.
        """
        cfg = self.calibre.config
        argv = [cfg.calibredb, command, *args, *await self._global_options()]
        env: dict[str, str | None] = {"CALIBRE_TEMP_DIR": str(self.workdir)}
        if self.calibre.config_dir is not None:
            env["CALIBRE_CONFIG_DIRECTORY"] = str(self.calibre.config_dir)
        stats = self.calibre.stats
        async with self.calibre.lock:
            try:
                result = await spawn.run(
                    argv,
                    cwd=self.workdir,
                    env=env,
                    timeout=cfg.timeout,
                    secrets=[self._password] if self._password else (),
                )
            except spawn.SpawnError as exc:
                stats.failures += 1
                raise RetryableError(f"calibredb: {exc}") from exc
        stats.calls += 1
        stats.seconds += result.duration
        if result.timed_out:
            stats.failures += 1
            raise RetryableError(f"calibredb {command} timed out after {cfg.timeout:.0f} s")
        if _BAD_LOGIN in result.stdout or _BAD_LOGIN in result.stderr:
            stats.failures += 1
            raise PermanentError(
                "the calibre content server refused the login: check [fanfic.calibre] "
                "username and password_file"
            )
        if _ANOTHER in result.stdout or _ANOTHER in result.stderr:
            stats.failures += 1
            raise CalibreBusy(
                "another calibre program holds the library; use the content server URL "
                "as [fanfic.calibre] library"
            )
        return result

    def _fail(self, command: str, result: spawn.SpawnResult) -> RetryableError:
        self.calibre.stats.failures += 1
        return RetryableError(
            f"calibredb {command} failed (status {result.returncode}): {result.tail(3)}"
        )

    async def find(self, url: str) -> int | None:
        """The id of the book of story ``url`` (by its ``url`` identifier), or ``None``."""
        expression = await trio.to_thread.run_sync(calibre_search, url) or url_search(url)
        result = await self.run("search", ["--limit", "1", expression])
        if result.returncode != 0:
            if _NO_MATCH in result.stderr or _NO_MATCH in result.stdout:
                return None
            raise self._fail("search", result)
        ids = parse_search_ids(result.stdout)
        return ids[0] if ids else None

    async def add(self, epub: Path, url: str) -> int:
        """Add ``epub`` as a new book (``add -d``); returns its id.

        :raises RetryableError: calibredb failed or reported no id and the book cannot be
            found by its URL either.
        """
        result = await self.run("add", ["-d", str(epub)])
        if result.returncode != 0:
            raise self._fail("add", result)
        ids = parse_added_ids(result.stdout)
        if ids:
            return ids[0]
        found = await self.find(url)
        if found is None:
            raise RetryableError(f"calibredb add printed no book id: {result.tail(3)}")
        return found

    async def remove(self, book_id: int) -> None:
        """Remove the book (into calibre's recycle bin)."""
        result = await self.run("remove", [str(book_id)])
        if result.returncode != 0:
            raise self._fail("remove", result)

    async def add_format(self, book_id: int, epub: Path) -> None:
        """Replace the book's EPUB with ``epub``, keeping the id and all metadata."""
        result = await self.run("add_format", [str(book_id), str(epub)])
        if result.returncode != 0:
            raise self._fail("add_format", result)

    async def export(self, book_id: int, to_dir: Path) -> Path | None:
        """Export the book's EPUB into ``to_dir``; returns its path, ``None`` if it has none."""
        await trio.Path(to_dir).mkdir(parents=True, exist_ok=True)
        result = await self.run(
            "export",
            [
                str(book_id),
                "--single-dir",
                "--to-dir",
                str(to_dir),
                "--dont-save-cover",
                "--dont-write-opf",
                "--formats",
                "epub",
            ],
        )
        if result.returncode != 0:
            raise self._fail("export", result)
        epubs = sorted(await trio.to_thread.run_sync(lambda: list(to_dir.glob("*.epub"))))
        return epubs[0] if epubs else None

    async def metadata(self, book_id: int) -> dict[str, Any]:
        """Every field of the book (``list --for-machine --fields all``), ``{}`` if absent."""
        result = await self.run(
            "list", ["--for-machine", "--fields", "all", "--search", f"id:{book_id}"]
        )
        if result.returncode != 0:
            raise self._fail("list", result)
        try:
            rows = json.loads(result.stdout or "[]")
        except json.JSONDecodeError as exc:
            raise RetryableError(f"calibredb list gave no JSON: {exc}") from None
        return dict(rows[0]) if rows else {}

    async def set_custom(self, column: str, book_id: int, value: str) -> None:
        """Set custom column ``column`` (bare, or with ``#`` / ``*``) of the book to ``value``.

        calibre's order is ``set_custom COLUMN ID VALUE`` with the column name without ``#``
        (``cmd_set_custom.py``).
        """
        result = await self.run("set_custom", [column.lstrip("#*"), str(book_id), value])
        if result.returncode != 0:
            raise self._fail("set_custom", result)

    async def replace(self, book_id: int, epub: Path, url: str, mode: str) -> int:
        """Put an updated ``epub`` in place of book ``book_id``; returns the (new) id.

        ``mode``: ``add_format`` (same id, all metadata kept), ``remove_add`` (new id, custom
        columns lost) or ``preserve_metadata`` (new id, custom columns restored: calibredb
        list names them ``*column``).

        :raises PermanentError: unknown mode.
        """
        if mode == "add_format":
            await self.add_format(book_id, epub)
            return book_id
        if mode == "remove_add":
            await self.remove(book_id)
            return await self.add(epub, url)
        if mode == "preserve_metadata":
            meta = await self.metadata(book_id)
            await self.remove(book_id)
            new_id = await self.add(epub, url)
            for key, value in meta.items():
                if not key.startswith(("*", "#")):
                    continue
                text = custom_value(value)
                if text is not None:
                    await self.set_custom(key, new_id, text)
            return new_id
        raise PermanentError(f"unknown metadata mode {mode!r}")
