"""calibredb: finding, adding, exporting and replacing books in a Calibre library.

Every call goes through :func:`hathd.spawn.run` (argv list, hard timeout, kill ladder) and
one :class:`trio.Lock` per :class:`Calibre`, so at most one calibredb runs at a time (a local
library is a single SQLite file and calibre refuses concurrent writers).

Command shapes and outputs (calibre 6.13 ``src/calibre/db/cli/cmd_*.py``; docs/fanfic.md):

- global options right after the command: ``--with-library PATH|http://host:port/#lib``,
  ``--username U``, ``--password <f:/path/to/file>`` (calibre's file form; the password is
  never on argv). calibredb parses options anywhere (optparse), so a positional value that
  starts with ``-`` (a custom column value ``-3`` or ``-WIP``) must follow ``--``; options
  after ``--`` are positional too, hence the global options come first.
- ``search EXPR`` prints ids comma-joined without a newline; no match exits 1 with
  ``No books matching the search expression``. The expression is FanFicFare's own
  (``adapters.get_url_search``: a regex on the ``url`` identifier FanFicFare writes into the
  EPUB, http or https, any title slug where the site's URLs carry one; see
  :func:`hathd.fanfic.stories.calibre_search`).
- ``add -d FILE`` prints ``Added book ids: 7`` (``, ``-joined).
- ``remove ID``, ``add_format ID FILE`` (replaces by default), ``export ID --single-dir
  --to-dir D --dont-save-cover --dont-write-opf --formats epub``,
  ``list --for-machine --fields all --search id:ID`` (JSON; custom columns as ``*name``),
  ``set_custom -- COLUMN ID VALUE`` (column without ``#``: calibre adds it),
  ``custom_columns --details`` (per column: the label, a blank line, a ``pprint`` dict with
  ``datatype``, ``is_multiple``, ``multiple_seps``…).
- ``Another calibre program such as calibre-server or the main calibre program is running``
  (a local library locked by the GUI or a server) is retryable; ``The username/password
  combination is incorrect`` (content server) is permanent.
"""

from __future__ import annotations

import ast
import json
import logging
import re
import secrets
from collections.abc import Mapping, Sequence
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
CLEANUP_TIMEOUT = 60.0
"""Seconds a failed replace may spend removing its new copy (shielded from cancellation)."""


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


def custom_value(value: Any, separator: str = ", ") -> str | None:
    """A custom column value from ``list --for-machine`` as ``set_custom`` wants it (lists
    joined with ``separator``: the column's ``multiple_seps["list_to_ui"]``, ``", "`` for
    tag-like and ``" & "`` for name-like columns), or ``None`` when there is nothing to
    restore."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, list):
        return separator.join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_COLUMN_BLOCK = re.compile(r"^(?P<label>[^\s{][^\n]*)\n\n(?P<data>\{.*?\})\n\n", re.M | re.S)


def parse_custom_columns(stdout: str) -> dict[str, dict[str, Any]]:
    """``calibredb custom_columns --details`` output → label → details (``datatype``,
    ``is_multiple``, ``multiple_seps``…). Blocks that do not parse are left out."""
    columns: dict[str, dict[str, Any]] = {}
    for match in _COLUMN_BLOCK.finditer(stdout):
        try:
            data = ast.literal_eval(match.group("data"))
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(data, dict):
            columns[match.group("label").strip()] = data
    return columns


def restorable_columns(
    meta: Mapping[str, Any], columns: Mapping[str, Mapping[str, Any]]
) -> list[tuple[str, str]]:
    """``(label, value)`` pairs to write back with ``set_custom`` from a book's
    ``list --for-machine`` row ``meta`` (custom columns named ``*label``), given the
    library's ``columns`` (:func:`parse_custom_columns`). Empty values, composite (computed,
    read-only) columns and columns the library does not list (logged: a calibredb whose
    output is not understood) are skipped."""
    out: list[tuple[str, str]] = []
    for key, value in meta.items():
        if not key.startswith(("*", "#")):
            continue
        label = key.lstrip("*#")
        details = columns.get(label)
        if details is None:
            log.warning("custom column %r is not in calibredb custom_columns; not restored", label)
            continue
        if details.get("datatype") == "composite":
            continue
        seps = details.get("multiple_seps") or {}
        text = custom_value(value, str(seps.get("list_to_ui") or ", "))
        if text is not None:
            out.append((label, text))
    return out


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
        """Run ``calibredb COMMAND GLOBAL-OPTIONS ARGS…`` under the library lock (``ARGS`` may
        start with ``--`` to make every later argument positional).

        :raises CalibreBusy: another calibre program holds the library.
        :raises PermanentError: the content server refused the username/password.
        :raises RetryableError: the call timed out or calibredb could not be started.
        """
        cfg = self.calibre.config
        argv = [cfg.calibredb, command, *await self._global_options(), *args]
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

    async def find_all(self, url: str) -> list[int]:
        """The ids (ascending) of every book of story ``url``, ``[]`` when none.

        The expression is FanFicFare's ``get_url_search`` (a regex on the ``url`` identifier,
        http or https; :func:`~hathd.fanfic.stories.calibre_search`), or the exact
        ``identifiers:"url:=URL"`` (:func:`url_search`) when FanFicFare cannot build one.
        """
        expression = await trio.to_thread.run_sync(calibre_search, url) or url_search(url)
        result = await self.run("search", ["--", expression])
        if result.returncode != 0:
            if _NO_MATCH in result.stderr or _NO_MATCH in result.stdout:
                return []
            raise self._fail("search", result)
        return sorted(parse_search_ids(result.stdout))

    async def find(self, url: str) -> int | None:
        """The id of the book of story ``url`` (the oldest when a failed replacement left two;
        see :meth:`find_all`), or ``None``."""
        ids = await self.find_all(url)
        return ids[0] if ids else None

    async def add(self, epub: Path, url: str, *, besides: int | None = None) -> int:
        """Add ``epub`` as a new book (``add -d``: duplicates allowed); returns its id.

        ``besides``: the id of a book of the same story that stays in the library for now
        (a replacement); never returned when calibredb prints no id and the new book is
        looked up by its URL.

        :raises RetryableError: calibredb failed or reported no id and the book cannot be
            found by its URL either.
        """
        result = await self.run("add", ["-d", "--", str(epub)])
        if result.returncode != 0:
            raise self._fail("add", result)
        ids = parse_added_ids(result.stdout)
        if ids:
            return ids[0]
        found = [i for i in await self.find_all(url) if i != besides]
        if not found:
            raise RetryableError(f"calibredb add printed no book id: {result.tail(3)}")
        return found[-1]

    async def remove(self, book_id: int) -> None:
        """Remove the book (into calibre's recycle bin)."""
        result = await self.run("remove", ["--", str(book_id)])
        if result.returncode != 0:
            raise self._fail("remove", result)

    async def add_format(self, book_id: int, epub: Path) -> None:
        """Replace the book's EPUB with ``epub``, keeping the id and all metadata."""
        result = await self.run("add_format", ["--", str(book_id), str(epub)])
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

    async def custom_columns(self) -> dict[str, dict[str, Any]]:
        """The library's custom columns: label (no ``#``) → details
        (:func:`parse_custom_columns`)."""
        result = await self.run("custom_columns", ["--details"])
        if result.returncode != 0:
            raise self._fail("custom_columns", result)
        return parse_custom_columns(result.stdout)

    async def set_custom(self, column: str, book_id: int, value: str) -> None:
        """Set custom column ``column`` (bare, or with ``#`` / ``*``) of the book to ``value``
        (any text, ``-3`` and ``-WIP`` included: it follows ``--``).

        calibre's order is ``set_custom COLUMN ID VALUE`` with the column name without ``#``
        (``cmd_set_custom.py``).

        :raises RetryableError: calibredb refused (no such book or column, a bad value).
        """
        result = await self.run("set_custom", ["--", column.lstrip("#*"), str(book_id), value])
        if result.returncode != 0:
            raise self._fail("set_custom", result)

    async def replace(self, book_id: int, epub: Path, url: str, mode: str) -> int:
        """Put an updated ``epub`` in place of book ``book_id``; returns the (new) id.

        ``mode``: ``add_format`` (same id, all metadata kept), ``remove_add`` (new id, custom
        columns lost) or ``preserve_metadata`` (new id, custom columns restored: calibredb
        list names them ``*column``; composite columns are computed and skipped).

        The new book is added (and its columns restored) before the old one is removed, so
        a failure on the way loses nothing: the old book stays as it was, and the new one is
        removed again (best effort; at worst a duplicate remains, which :meth:`find` passes
        over in favour of the old one).

        :raises PermanentError: unknown mode.
        :raises RetryableError: a calibredb call failed (see :meth:`run`).
        """
        if mode == "add_format":
            await self.add_format(book_id, epub)
            return book_id
        if mode not in ("remove_add", "preserve_metadata"):
            raise PermanentError(f"unknown metadata mode {mode!r}")
        restore: list[tuple[str, str]] = []
        if mode == "preserve_metadata":
            meta = await self.metadata(book_id)
            if any(key.startswith(("*", "#")) for key in meta):
                restore = restorable_columns(meta, await self.custom_columns())
        new_id = await self.add(epub, url, besides=book_id)
        try:
            for label, text in restore:
                await self.set_custom(label, new_id, text)
            await self.remove(book_id)
        except BaseException:
            # shielded and bounded: a shutdown during the restore still tries the clean-up
            with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_TIMEOUT):
                await self._drop_new_copy(new_id, book_id, url)
            raise
        return new_id

    async def _drop_new_copy(self, new_id: int, book_id: int, url: str) -> None:
        """After a failed replace: remove ``new_id`` unless the old book is already gone (a
        remove that reported an error but worked), so the story is never left with no book."""
        try:
            if book_id not in await self.find_all(url):
                log.warning(
                    "book %d replaced %d although calibredb reported an error", new_id, book_id
                )
                return
            await self.remove(new_id)
        except Exception as exc:
            log.warning("book %d left as a duplicate of %d: %s", new_id, book_id, exc)
