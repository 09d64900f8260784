"""FanFicFare output classification (sans-IO); the observed outputs of FanFicFare 4.62
(docs/fanfic.md) and the messages of ``fanficfare/cli.py``."""

from __future__ import annotations

import pytest

from hathd.fanfic.fff import build_argv, update_flags, written_epub
from hathd.fanfic.outcome import PERMANENT, Outcome, classify


@pytest.mark.parametrize(
    ("stdout", "stderr", "rc", "expected"),
    [
        ("", "", 0, Outcome.SUCCESS),
        (
            "Updating T-tst1_2.epub, URL: http://test1.com?sid=2\n"
            "T-tst1_2.epub already contains 9 chapters.\n",
            "",
            0,
            Outcome.UP_TO_DATE,
        ),
        ("Story does not exist: (http://test1.com?sid=666)\n", "", 0, Outcome.NOT_FOUND),
        (
            "Adult check required on non-interactive process. Set is_adult:true in "
            'personal.ini or pass -o "is_adult=true" to the command.\n',
            "FFF: WARNING: x: adapter_test1.py(107): self.is_adult:False\n",
            0,
            Outcome.ADULT_CHECK,
        ),
        (
            "Login Failed on non-interactive process. Set username and password in personal.ini.\n",
            "",
            0,
            Outcome.LOGIN_FAILED,
        ),
        (
            "",
            "Traceback (most recent call last):\nfanficfare.exceptions.FailedToDownload: "
            "Error downloading Chapter: http://test1.com?sid=667&chapter=2!\n",
            1,
            Outcome.RETRYABLE,
        ),
        (
            "",
            "fanficfare.exceptions.UnknownSite: UnknownSite(...) Supported sites: (...)\n",
            1,
            Outcome.UNKNOWN_SITE,
        ),
        (
            "Do update - epub(2) vs url(3)\n",
            "FFF: WARNING: t: base_writer.py(212): File(a.epub) Updated(2026-11-25) more "
            "recently than Story(2020-02-01) - Skipping\n",
            0,
            Outcome.FORCEABLE,
        ),
        ("a.epub contains 12 chapters, more than source: 10.\n", "", 0, Outcome.FORCEABLE),
        ("", "403 Client Error: Forbidden for url: https://x\n", 0, Outcome.RETRYABLE),
        ("", "Killed\n", -9, Outcome.RETRYABLE),
    ],
)
def test_classify(stdout: str, stderr: str, rc: int, expected: Outcome) -> None:
    assert classify(stdout, stderr, rc).outcome is expected


def test_permanent_messages_name_the_fix() -> None:
    adult = classify("Adult check required on non-interactive process.", "", 0)
    assert adult.outcome in PERMANENT
    assert "is_adult:true" in adult.message
    login = classify("Login Failed on non-interactive process. Set username", "", 0)
    assert "username and password" in login.message


def test_a_permanent_line_beats_a_traceback() -> None:
    out = classify("Story does not exist: (u)", "Traceback\nFailedToDownload: x", 1)
    assert out.outcome is Outcome.NOT_FOUND


@pytest.mark.parametrize(
    ("method", "force", "flags"),
    [
        ("update", False, ["-u"]),
        ("update", True, ["-u", "--force"]),
        ("update_always", False, ["-U"]),
        ("update_always", True, ["-U", "--force"]),
        ("force", False, ["-u", "--force"]),
        ("update_no_force", False, ["-u"]),
        ("update_no_force", True, ["-u"]),
    ],
)
def test_update_flags(method: str, force: bool, flags: list[str]) -> None:
    assert update_flags(method, force=force) == flags


def test_argv_is_a_list_ending_with_the_target() -> None:
    argv = build_argv(["fanficfare"], "http://test1.com?sid=2", "update")
    assert argv == [
        "fanficfare",
        "-u",
        "--update-cover",
        "--non-interactive",
        "-o",
        "always_overwrite=true",
        "http://test1.com?sid=2",
    ]


def test_written_epub_picks_new_or_changed_files(tmp_path: object) -> None:
    from pathlib import Path

    a, b, c = Path("a.epub"), Path("b.epub"), Path("c.epub")
    before = {a: (1, 10), b: (1, 10)}
    assert written_epub(before, dict(before)) is None
    assert written_epub(before, {a: (1, 10), b: (2, 11)}) == b
    assert written_epub(before, {a: (1, 10), b: (1, 10), c: (3, 5)}) == c
