"""External programs (FanFicFare, lftp, calibredb, ffmpeg …) resolved once at start.

A command is configured as an argv list whose first item is a program name or a path. hathd
resolves it when its subsystem starts:

- a path (it contains ``/``; ``~`` is expanded) must be an executable file;
- a bare name is looked up in hathd's own environment first when the program is a Python
  dependency of hathd (``own_environment=True``: the ``scripts`` directory of the running
  interpreter, i.e. the virtualenv's ``bin``, which is not on ``PATH`` when hathd is started by
  ``scripts/run`` or the systemd unit; :func:`sysconfig.get_path`), then on ``PATH``
  (:func:`shutil.which`).

The result, a :class:`Program`, carries the resolved argv, or the reason it is missing and the
fix; :meth:`Program.require` turns a missing program into a
:class:`~hathd.errors.PermanentError` so a job that needs it fails with that reason instead of
being retried. :class:`ProgramTable` collects the results for ``hathd status``.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from hathd.errors import PermanentError


@attrs.frozen
class Program:
    """One resolved command.

    - ``name``: what it is (``fanficfare``, ``lftp``), shown in the status;
    - ``configured``: the argv as configured;
    - ``argv``: the argv to run (first item an absolute path), or ``None`` when missing;
    - ``reason``: why it is missing (empty when found); ``fix``: what the user can do;
    - ``needed_by``: the subsystem or job kind that runs it.
    """

    name: str
    configured: tuple[str, ...]
    argv: tuple[str, ...] | None
    reason: str = ""
    fix: str = ""
    needed_by: str = ""

    @property
    def found(self) -> bool:
        """Whether the program can be run."""
        return self.argv is not None

    def require(self) -> tuple[str, ...]:
        """The argv to run.

        :raises PermanentError: the program is missing (the text gives the reason and the fix).
        """
        if self.argv is None:
            raise PermanentError(f"{self.name} is missing: {self.reason}; fix: {self.fix}")
        return self.argv

    def to_plain(self) -> dict[str, Any]:
        """The status entry: ``name``, ``found``, ``path``, ``configured``, ``reason``, ``fix``,
        ``needed_by``."""
        return {
            "name": self.name,
            "found": self.found,
            "path": self.argv[0] if self.argv else None,
            "configured": list(self.configured),
            "reason": self.reason,
            "fix": self.fix,
            "needed_by": self.needed_by,
        }


def own_scripts_dir() -> Path:
    """The directory of console scripts installed beside hathd (the virtualenv's ``bin``)."""
    return Path(sysconfig.get_path("scripts"))


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def resolve(
    name: str,
    command: Sequence[str],
    *,
    fix: str,
    own_environment: bool = False,
    needed_by: str = "",
    environ: Mapping[str, str] | None = None,
) -> Program:
    """Resolve ``command`` (an argv list, first item a name or a path) as described in the
    module docstring. ``fix`` is the advice shown when it is missing; ``environ`` supplies
    ``PATH`` (default: :data:`os.environ`). Never raises: a missing program is a result."""
    configured = tuple(command)
    if not configured or not configured[0]:
        return Program(name, configured, None, "no command is configured", fix, needed_by)
    first = configured[0]
    if "/" in first or first.startswith("~"):
        path = Path(os.path.expanduser(first))
        if _executable(path):
            return Program(name, configured, (str(path), *configured[1:]), needed_by=needed_by)
        why = "is not an executable file" if path.exists() else "does not exist"
        return Program(name, configured, None, f"{path} {why}", fix, needed_by)
    env = os.environ if environ is None else environ
    search = env.get("PATH", os.defpath)
    where = "PATH"
    if own_environment:
        search = os.pathsep.join([str(own_scripts_dir()), search])
        where = f"{own_scripts_dir()} or PATH"
    found = shutil.which(first, path=search)
    if found is None:
        return Program(name, configured, None, f"{first!r} is not in {where}", fix, needed_by)
    return Program(name, configured, (found, *configured[1:]), needed_by=needed_by)


@attrs.define
class ProgramTable:
    """The programs resolved by the running subsystems, by name (the last one wins)."""

    programs: dict[str, Program] = attrs.field(factory=dict)

    def add(self, program: Program) -> Program:
        """Record ``program`` and return it."""
        self.programs[program.name] = program
        return program

    def missing(self) -> list[Program]:
        """The programs that cannot be run, by name."""
        return [p for _, p in sorted(self.programs.items()) if not p.found]

    def to_plain(self) -> list[dict[str, Any]]:
        """Every program's status entry, by name."""
        return [p.to_plain() for _, p in sorted(self.programs.items())]
