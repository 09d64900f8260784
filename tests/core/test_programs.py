"""External programs resolved at start: own environment, ``PATH``, paths, missing ones."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from hathd.errors import PermanentError
from hathd.programs import ProgramTable, own_scripts_dir, resolve


def _tool(folder: Path, name: str, mode: int = 0o755) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(mode)
    return path


def test_own_environment_is_searched_before_path(tmp_path: Path) -> None:
    # the virtualenv running these tests has the fanficfare console script
    assert own_scripts_dir() == Path(sys.executable).parent
    found = resolve("fanficfare", ["fanficfare"], fix="-", own_environment=True, environ={})
    assert found.found
    assert found.argv == (str(own_scripts_dir() / "fanficfare"),)
    # without it, the same empty PATH finds nothing, and says where it looked
    missing = resolve("fanficfare", ["fanficfare"], fix="install it", environ={"PATH": ""})
    assert not missing.found
    assert missing.reason == "'fanficfare' is not in PATH"
    with pytest.raises(PermanentError, match=r"fanficfare is missing: .*; fix: install it"):
        missing.require()


def test_path_lookup_keeps_the_arguments(tmp_path: Path) -> None:
    tool = _tool(tmp_path / "bin", "lftp")
    found = resolve("lftp", ["lftp", "-c"], fix="-", environ={"PATH": str(tmp_path / "bin")})
    assert found.argv == (str(tool), "-c")
    assert found.to_plain()["path"] == str(tool)


def test_paths_must_be_executable_files(tmp_path: Path) -> None:
    plain = _tool(tmp_path, "calibredb", mode=0o644)
    not_exec = resolve("calibredb", [str(plain)], fix="chmod it")
    assert not not_exec.found
    assert not_exec.reason == f"{plain} is not an executable file"
    gone = resolve("calibredb", [str(tmp_path / "nowhere")], fix="-")
    assert gone.reason == f"{tmp_path / 'nowhere'} does not exist"
    assert resolve("x", [], fix="-").reason == "no command is configured"
    home = resolve("x", ["~/no-such-tool-here"], fix="-")
    assert home.reason.startswith(os.path.expanduser("~"))


def test_table_lists_missing_programs_by_name(tmp_path: Path) -> None:
    table = ProgramTable()
    table.add(resolve("lftp", ["/nonexistent/lftp"], fix="install lftp", needed_by="transfer"))
    table.add(resolve("sh", ["sh"], fix="-", environ={"PATH": "/bin:/usr/bin"}))
    assert [p.name for p in table.missing()] == ["lftp"]
    entries = {e["name"]: e for e in table.to_plain()}
    assert entries["lftp"] == {
        "name": "lftp",
        "found": False,
        "path": None,
        "configured": ["/nonexistent/lftp"],
        "reason": "/nonexistent/lftp does not exist",
        "fix": "install lftp",
        "needed_by": "transfer",
    }
    assert entries["sh"]["found"] is True
