"""Sessions: tests, lint (ruff, import-linter's layer contract), typecheck (mypy --strict),
bench (benchmarks in bench/).

The interpreter is ``$HATHD_PYTHON`` when set (``scripts/test`` sets it), else ``python3.13``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_external_run = True

PYTHON = os.environ.get("HATHD_PYTHON", "3.13")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite (real servers on 127.0.0.1); arguments after ``--`` go to pytest."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check, and lint-imports (the contracts in pyproject.toml)."""
    session.install("ruff>=0.8,<0.18", "import-linter>=2.1,<3")
    session.run("ruff", "check", "src", "tests", "bench", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "bench", "noxfile.py")
    # import-linter reads the sources; it finds the package on PYTHONPATH without installing it
    session.run("lint-imports", env={"PYTHONPATH": "src"})


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over src/hathd."""
    session.install("-e", ".[test]", "mypy>=1.13,<3")
    session.run("mypy")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Every benchmark in bench/ (``-- --quick`` for a smoke run); results go to bench/results/."""
    session.install("-e", ".[test]")
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    for script in sorted(Path("bench").glob("bench_*.py")):
        session.run("python", str(script), *session.posargs)


@nox.session(python=PYTHON)
def screenshots(session: nox.Session) -> None:
    """The browser tests (headless Debian chromium), saving their screenshots of the web pages
    (the library grid and a series page included) into docs/images/web/ for docs/web.md."""
    session.install("-e", ".[test]")
    folder = Path("docs/images/web").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    session.run(
        "pytest",
        "tests/web/test_browser.py",
        "tests/web/test_browser_roles.py",
        "tests/web/test_browser_library.py",
        "-p",
        "no:cacheprovider",
        # a short, neutral temporary path: the pages show where downloads landed
        f"--basetemp={Path(tempfile.gettempdir()) / 'hathd-screenshots'}",
        *session.posargs,
        env={"HATHD_SCREENSHOTS": str(folder)},
    )
