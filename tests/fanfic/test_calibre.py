"""calibredb through :mod:`hathd.fanfic.calibre`: the real calibredb on a local library and
through a real calibre-server (content server URL, password in calibredb's file form)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from fanfic.support import free_port
from hathd.errors import PermanentError, RetryableError
from hathd.fanfic.calibre import (
    Calibre,
    CalibreBusy,
    CalibreSession,
    custom_value,
    parse_added_ids,
    parse_custom_columns,
    parse_search_ids,
    restorable_columns,
    url_search,
)
from hathd.fanfic.config import CalibreConfig
from hathd.fanfic.fff import prepare_workspace, run_fanficfare
from hathd.fanfic.outcome import Outcome

FANFICFARE = [sys.executable, "-m", "fanficfare.cli"]
URL2 = "http://test1.com?sid=2"


def test_output_parsers() -> None:
    assert parse_added_ids("Added book ids: 7\n") == [7]
    assert parse_added_ids("junk\nAdded book ids: 7, 8, 12\n") == [7, 8, 12]
    assert parse_added_ids("The following books were not added as they already exist") == []
    assert parse_search_ids("3,17") == [3, 17]
    assert parse_search_ids("") == []
    assert url_search('http://a.b/?q="x"\\y') == 'identifiers:"url:=http://a.b/?q=\\"x\\"\\\\y"'
    assert custom_value(["a", "b"]) == "a, b"
    assert custom_value(None) is None
    assert custom_value([]) is None
    assert custom_value(3) == "3"
    assert custom_value(True) == "true"
    assert custom_value(["Ann, B", "Cee"], " & ") == "Ann, B & Cee"


def test_custom_columns_parser_and_restorable_values() -> None:
    details = (
        "delta\n\n{'datatype': 'int',\n 'is_multiple': False,\n 'label': 'delta',\n"
        " 'multiple_seps': {},\n 'num': 1}\n\n\n"
        "comp\n\n{'datatype': 'composite',\n 'display': {'composite_template': '{title}'},"
        "\n 'label': 'comp',\n 'num': 2}\n\n\n"
        "ppl\n\n{'datatype': 'text',\n 'is_multiple': {'cache_to_list': '|',\n"
        "                  'list_to_ui': ' & ',\n                  'ui_to_list': '&'},\n"
        " 'label': 'ppl',\n 'multiple_seps': {'cache_to_list': '|',\n"
        "                    'list_to_ui': ' & ',\n                    'ui_to_list': '&'},\n"
        " 'num': 3}\n\n\n"
    )
    columns = parse_custom_columns(details)
    assert sorted(columns) == ["comp", "delta", "ppl"]
    assert columns["comp"]["datatype"] == "composite"
    meta = {"*delta": -3, "*comp": "Title", "*ppl": ["Ann, B", "Cee"], "*gone": "x", "id": 4}
    assert restorable_columns(meta, columns) == [("delta", "-3"), ("ppl", "Ann, B & Cee")]


async def test_password_goes_through_a_file_never_argv(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret-value\n")
    cal = Calibre(
        CalibreConfig(library="http://127.0.0.1:9/#lib", username="u", password_file=str(secret))
    )
    session = cal.session(tmp_path)
    opts = await session._global_options()
    assert "s3cret-value" not in " ".join(opts)
    assert opts[:4] == ["--with-library", "http://127.0.0.1:9/#lib", "--username", "u"]
    assert opts[4] == "--password"
    assert opts[5].startswith("<f:")
    assert opts[5].endswith(">")
    pw_file = trio.Path(opts[5][3:-1])
    assert await pw_file.read_text() == "s3cret-value"
    assert (await pw_file.stat()).st_mode & 0o777 == 0o600


async def make_epub(tmp_path: Path, sid: int) -> Path:
    ws = await prepare_workspace(tmp_path / f"fff-{sid}")
    run = await run_fanficfare(ws, FANFICFARE, f"http://test1.com?sid={sid}", "update")
    assert run.classified.outcome is Outcome.SUCCESS
    assert run.epub is not None
    return run.epub


def calibredb(library: Path, config_dir: Path, *args: str) -> str:
    return subprocess.run(
        ["calibredb", *args, "--with-library", str(library)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "CALIBRE_CONFIG_DIRECTORY": str(config_dir)},
    ).stdout


@pytest.mark.slow
async def test_local_library_and_metadata_modes(tmp_path: Path) -> None:
    library = tmp_path / "library"
    config_dir = tmp_path / "calibre-config"
    epub = await make_epub(tmp_path, 2)
    await trio.to_thread.run_sync(
        calibredb, library, config_dir, "add_custom_column", "readcount", "Read count", "int"
    )
    cal = Calibre(CalibreConfig(library=str(library)), config_dir=config_dir)
    work = tmp_path / "work"
    work.mkdir()
    session = cal.session(work)

    assert await session.find(URL2) is None  # "No books matching" is not an error
    first = await session.add(epub, URL2)
    assert await session.find(URL2) == first
    assert await session.find("http://test1.com?sid=20") is None
    await session.set_custom("#readcount", first, "5")

    kept = await session.replace(first, epub, URL2, "add_format")
    assert kept == first

    restored = await session.replace(first, epub, URL2, "preserve_metadata")
    assert restored != first
    meta = await session.metadata(restored)
    assert meta["*readcount"] == 5
    assert meta["identifiers"]["url"] == URL2

    plain = await session.replace(restored, epub, URL2, "remove_add")
    assert plain != restored
    assert (await session.metadata(plain)).get("*readcount") is None
    assert cal.statistics().failures == 0


@pytest.mark.slow
async def test_preserve_metadata_keeps_dash_values_and_never_loses_the_book(
    tmp_path: Path,
) -> None:
    """``-3`` and ``-WIP`` are column values, not calibredb options; composite columns are
    computed, not restored; names keep their ``&`` separator. A calibredb failure while
    restoring or removing the old book leaves the old book untouched (the new one is removed
    again), so the retry still finds the book with its columns; a remove that worked but
    reported an error keeps the new book."""
    library = tmp_path / "library"
    config_dir = tmp_path / "calibre-config"
    epub = await make_epub(tmp_path, 2)
    for args in (
        ("delta", "Delta", "int"),
        ("shelf", "Shelf", "text"),
        ("ppl", "People", "text", "--is-multiple", "--display", '{"is_names": true}'),
        ("comp", "Comp", "composite", "--display", '{"composite_template": "{title}!"}'),
    ):
        await trio.to_thread.run_sync(calibredb, library, config_dir, "add_custom_column", *args)
    cal = Calibre(CalibreConfig(library=str(library)), config_dir=config_dir)
    work = tmp_path / "work"
    work.mkdir()
    session = cal.session(work)
    first = await session.add(epub, URL2)
    await session.set_custom("delta", first, "-3")
    await session.set_custom("#shelf", first, "-WIP")
    await session.set_custom("ppl", first, "Ann, B & Cee")

    real = shutil.which("calibredb") or "calibredb"

    def through(name: str, rule: str) -> CalibreSession:
        """A session whose calibredb is a shell wrapper: ``rule`` (shell, ``$last`` is the
        last argument) runs first, then the real calibredb."""
        wrapper = tmp_path / name
        wrapper.write_text(f'#!/bin/sh\nfor last; do :; done\n{rule}\nexec {real} "$@"\n')
        wrapper.chmod(0o755)
        return Calibre(
            CalibreConfig(library=str(library), calibredb=str(wrapper)), config_dir=config_dir
        ).session(work)

    failing = through(
        "no-set-custom",
        'if [ "$1" = set_custom ]; then echo "simulated failure" >&2; exit 1; fi',
    )
    with pytest.raises(RetryableError, match="simulated failure"):
        await failing.replace(first, epub, URL2, "preserve_metadata")
    assert await session.find_all(URL2) == [first]
    assert (await session.metadata(first))["*delta"] == -3

    # the old book's remove fails: the new copy goes again and the old book stays
    stuck = through(
        "no-remove",
        f'if [ "$1" = remove ] && [ "$last" = {first} ]; then echo "no remove" >&2; exit 1; fi',
    )
    with pytest.raises(RetryableError, match="no remove"):
        await stuck.replace(first, epub, URL2, "remove_add")
    assert await session.find_all(URL2) == [first]

    new = await session.replace(first, epub, URL2, "preserve_metadata")

    assert new != first
    assert await session.find_all(URL2) == [new]  # the old book is gone, no duplicate
    meta = await session.metadata(new)
    assert meta["*delta"] == -3
    assert meta["*shelf"] == "-WIP"
    assert meta["*ppl"] == ["Ann, B", "Cee"]
    assert meta["*comp"].endswith("!")
    assert cal.statistics().failures == 0

    # a remove that worked but reported an error: the new book is kept, the story not lost
    liar = through(
        "remove-then-fail",
        f'if [ "$1" = remove ] && [ "$last" = {new} ]; then {real} "$@"; exit 1; fi',
    )
    with pytest.raises(RetryableError):
        await liar.replace(new, epub, URL2, "remove_add")
    remaining = await session.find_all(URL2)
    assert len(remaining) == 1
    assert remaining[0] not in (first, new)


@pytest.fixture
async def content_server(tmp_path: Path) -> AsyncIterator[tuple[Path, str, Path]]:
    """calibre-server with one user on a fresh library: (library, URL, config dir)."""
    library = tmp_path / "served"
    config_dir = tmp_path / "calibre-config"
    env = {**os.environ, "CALIBRE_CONFIG_DIRECTORY": str(config_dir)}
    await trio.to_thread.run_sync(lambda: calibredb(library, config_dir, "list"))
    userdb = tmp_path / "users.sqlite"
    await trio.run_process(
        [
            "calibre-server",
            "--userdb",
            str(userdb),
            "--manage-users",
            "--",
            "add",
            "fanfic",
            "s3cret",
        ],
        env=env,
        capture_stdout=True,
        capture_stderr=True,
    )
    port = free_port()
    proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; stopped below
        [
            "calibre-server",
            "--port",
            str(port),
            "--listen-on",
            "127.0.0.1",
            "--userdb",
            str(userdb),
            "--enable-auth",
            str(library),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        with trio.fail_after(60):
            while True:
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                except OSError:
                    assert proc.poll() is None
                    await trio.sleep(0.1)
                    continue
                await stream.aclose()
                break
        yield library, f"http://127.0.0.1:{port}/#served", config_dir
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        await trio.to_thread.run_sync(proc.wait)


@pytest.mark.slow
async def test_content_server_and_busy_library(
    tmp_path: Path, content_server: tuple[Path, str, Path]
) -> None:
    library, url, config_dir = content_server
    epub = await make_epub(tmp_path, 3)
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "pw").write_text("s3cret\n")
    (tmp_path / "bad").write_text("wrong\n")

    # the local path while calibre-server holds the library: retryable, with the fix named
    local = Calibre(CalibreConfig(library=str(library)), config_dir=config_dir).session(work)
    with pytest.raises(CalibreBusy, match="content server URL"):
        await local.find("http://test1.com?sid=3")

    remote = Calibre(
        CalibreConfig(library=url, username="fanfic", password_file=str(tmp_path / "pw")),
        config_dir=config_dir,
    ).session(work)
    book = await remote.add(epub, "http://test1.com?sid=3")
    assert await remote.find("http://test1.com?sid=3") == book

    refused = Calibre(
        CalibreConfig(library=url, username="fanfic", password_file=str(tmp_path / "bad")),
        config_dir=config_dir,
    ).session(work)
    with pytest.raises(PermanentError, match="refused the login"):
        await refused.find("http://test1.com?sid=3")


async def test_calibredb_runs_one_call_at_a_time(tmp_path: Path) -> None:
    """Sessions of several jobs share one library: their calibredb calls never overlap (a
    wrapper records any call that starts while another one runs)."""
    marker = tmp_path / "running"
    log = tmp_path / "calls.log"
    fake = tmp_path / "calibredb"
    fake.write_text(
        "#!/bin/sh\n"
        f'mkdir "{marker}" 2>/dev/null || echo overlap >> "{log}"\n'
        f'echo "$1" >> "{log}"\n'
        "sleep 0.2\n"
        f'rmdir "{marker}" 2>/dev/null\n'
        "exit 0\n"
    )
    fake.chmod(0o755)
    cal = Calibre(CalibreConfig(library=str(tmp_path / "lib"), calibredb=str(fake)))
    found: list[dict[str, Any]] = []

    async def one(index: int) -> None:
        work = tmp_path / f"work{index}"
        work.mkdir()
        found.append(await cal.session(work).custom_columns())

    async with trio.open_nursery() as nursery:
        for index in range(4):
            nursery.start_soon(one, index)
    assert log.read_text().split() == ["custom_columns"] * 4
    assert found == [{}] * 4
    assert cal.statistics().calls == 4
