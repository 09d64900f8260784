"""Running the FanFicFare CLI for one story in a private working directory.

Layout of the job's temporary directory (removed by the engine after the try)::

    tmp/
      home/          HOME and XDG_CONFIG_HOME (FanFicFare's ~/.fanficfare and
                     $XDG_CONFIG_HOME/fanficfare lookups land here, not in the user's home)
      work/          cwd: personal.ini / defaults.ini copied in; new EPUBs are written here
      export/        the book's current EPUB exported from Calibre (updates only)

Command line (``fanficfare/cli.py``; docs/fanfic.md):
``fanficfare [-u | -U | -u --force] --update-cover --non-interactive -o always_overwrite=true
TARGET`` where TARGET is the exported EPUB when the book exists (FanFicFare rewrites it in
place) and the story URL otherwise. ``always_overwrite`` (AutomatedFanfic's shipped
personal.ini sets it too): the export is a fresh copy whose file date is "now", so without it
every update would stop at "File(…) Updated(…) more recently than Story(…) - Skipping" and
need a second, forced download. Update modes: ``update`` → ``-u``, ``update_always`` →
``-U``, ``force`` → ``-u --force``, ``update_no_force`` → ``-u`` and a forceable outcome is
not forced.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import attrs
import trio

from hathd import spawn
from hathd.errors import RetryableError
from hathd.fanfic.outcome import Classified, classify


def update_flags(method: str, *, force: bool = False) -> list[str]:
    """FanFicFare flags for an update ``method`` (see module docstring); ``force`` adds
    ``--force`` (a forceable outcome being retried) unless the method is ``update_no_force``."""
    if method == "update_always":
        flags = ["-U"]
    elif method == "force":
        flags = ["-u", "--force"]
    else:
        flags = ["-u"]
    if force and method != "update_no_force" and "--force" not in flags:
        flags.append("--force")
    return flags


def build_argv(
    program: Sequence[str], target: str, method: str, *, force: bool = False
) -> list[str]:
    """The full FanFicFare command line for ``target`` (a URL or an EPUB path)."""
    return [
        *program,
        *update_flags(method, force=force),
        "--update-cover",
        "--non-interactive",
        "-o",
        "always_overwrite=true",
        target,
    ]


@attrs.frozen
class Workspace:
    """The folders of one FanFicFare try (see module docstring)."""

    root: Path

    @property
    def home(self) -> Path:
        """HOME and XDG_CONFIG_HOME of the child."""
        return self.root / "home"

    @property
    def work(self) -> Path:
        """The child's cwd, with the INI files."""
        return self.root / "work"

    @property
    def export(self) -> Path:
        """Where the existing book's EPUB is exported."""
        return self.root / "export"


def _prepare(ws: Workspace, personal_ini: str, defaults_ini: str) -> None:
    for folder in (ws.home, ws.work, ws.export):
        folder.mkdir(parents=True, exist_ok=True)
    for source, name in ((personal_ini, "personal.ini"), (defaults_ini, "defaults.ini")):
        if not source:
            continue
        src = Path(source).expanduser()
        if src.is_dir():
            src = src / name
        shutil.copyfile(src, ws.work / name)


async def prepare_workspace(
    root: Path, personal_ini: str = "", defaults_ini: str = ""
) -> Workspace:
    """Create the folders under ``root`` and copy the INI files (a file, or a folder holding
    ``personal.ini`` / ``defaults.ini``) into ``work/``.

    :raises RetryableError: an INI file cannot be read (it may be fixed without losing the job).
    """
    ws = Workspace(root)
    try:
        await trio.to_thread.run_sync(_prepare, ws, personal_ini, defaults_ini)
    except OSError as exc:
        raise RetryableError(f"cannot copy FanFicFare INI file: {exc}") from exc
    return ws


@attrs.frozen
class RunResult:
    """A classified FanFicFare run and the EPUB it wrote (``None`` if none)."""

    classified: Classified
    epub: Path | None
    spawn: spawn.SpawnResult


Snapshot = dict[Path, tuple[int, int]]


def _snapshot(folders: Sequence[Path]) -> Snapshot:
    snap: Snapshot = {}
    for folder in folders:
        for path in folder.rglob("*.epub"):
            st = path.stat()
            snap[path] = (st.st_mtime_ns, st.st_size)
    return snap


def written_epub(before: Snapshot, after: Snapshot) -> Path | None:
    """The EPUB created or rewritten between two snapshots (the newest if several)."""
    changed = [(stamp, path) for path, stamp in after.items() if before.get(path) != stamp]
    return max(changed)[1] if changed else None


async def run_fanficfare(
    ws: Workspace,
    program: Sequence[str],
    target: str,
    method: str,
    *,
    force: bool = False,
    timeout: float | None = None,
) -> RunResult:
    """Run FanFicFare once on ``target`` in ``ws`` and classify the output.

    ``timeout`` is seconds (the spawner's kill ladder then stops it and the run counts as
    retryable).

    :raises RetryableError: FanFicFare could not be started.
    """
    argv = build_argv(program, target, method, force=force)
    env: dict[str, str | None] = {
        "HOME": str(ws.home),
        "XDG_CONFIG_HOME": str(ws.home / ".config"),
        "PYTHONIOENCODING": "utf-8",
    }
    folders = (ws.work, ws.export)
    before = await trio.to_thread.run_sync(_snapshot, folders)
    try:
        result = await spawn.run(argv, cwd=ws.work, env=env, timeout=timeout)
    except spawn.SpawnError as exc:
        raise RetryableError(f"fanficfare: {exc}") from exc
    classified = classify(
        result.stdout, result.stderr, -1 if result.timed_out else result.returncode
    )
    after = await trio.to_thread.run_sync(_snapshot, folders)
    epub = written_epub(before, after)
    return RunResult(classified, epub, result)
