"""Classifying a FanFicFare run from its output text (sans-IO, pure functions).

FanFicFare's exit status is unreliable: "story does not exist", "adult check required" and
"login failed" print a line and exit 0, and with several URLs most errors are printed rather
than raised (``fanficfare/cli.py``: ``do_download``, ``dispatch``). So the outcome is read from
stdout + stderr. Patterns and their meaning: observed with FanFicFare 4.62.0 (docs/fanfic.md)
and AutomatedFanfic's ``root/app/parsers/regex_parsing.py``.

============================  =====================  ========================================
output                        :class:`Outcome`       what the handler does
============================  =====================  ========================================
``Story does not exist``      ``NOT_FOUND``          permanent failure
``Adult check required``      ``ADULT_CHECK``        permanent, names ``is_adult:true``
``Login Failed``              ``LOGIN_FAILED``       permanent, names username/password
``UnknownSite``               ``UNKNOWN_SITE``       permanent
``… already contains N ch…``  ``UP_TO_DATE``         done, nothing to add
``more than source`` /        ``FORCEABLE``          run again with ``--force``
``Updated(…) more recently``
``FailedToDownload``,         ``RETRYABLE``          retry later
``Error downloading Chapter``,
4xx/5xx, flaresolverr,
non-zero exit
exit 0, none of the above     ``SUCCESS``            an EPUB was written (checked by caller)
============================  =====================  ========================================
"""

from __future__ import annotations

import re
from enum import StrEnum

import attrs


class Outcome(StrEnum):
    """The classified result of one FanFicFare run."""

    SUCCESS = "success"
    UP_TO_DATE = "up_to_date"
    FORCEABLE = "forceable"
    NOT_FOUND = "not_found"
    ADULT_CHECK = "adult_check"
    LOGIN_FAILED = "login_failed"
    UNKNOWN_SITE = "unknown_site"
    RETRYABLE = "retryable"


PERMANENT = frozenset(
    {Outcome.NOT_FOUND, Outcome.ADULT_CHECK, Outcome.LOGIN_FAILED, Outcome.UNKNOWN_SITE}
)
"""Outcomes that retrying cannot fix."""


@attrs.frozen
class Classified:
    """An outcome, the output line that decided it, and a message for the job's error."""

    outcome: Outcome
    line: str = ""
    message: str = ""


_RULES: tuple[tuple[Outcome, re.Pattern[str], str], ...] = (
    (
        Outcome.NOT_FOUND,
        re.compile(r"Story does not exist: .*"),
        "the story does not exist (removed, or a wrong URL)",
    ),
    (
        Outcome.ADULT_CHECK,
        re.compile(r"Adult check required.*"),
        "the site requires an adult check: set is_adult:true in the personal.ini "
        "([fanfic] personal_ini)",
    ),
    (
        Outcome.LOGIN_FAILED,
        re.compile(r"Login Failed on non-interactive process.*|FailedToLogin.*"),
        "the site refused the login: set username and password for the site in the "
        "personal.ini ([fanfic] personal_ini)",
    ),
    (
        Outcome.UNKNOWN_SITE,
        re.compile(r".*\bUnknownSite\b.*|.*Unknown Site\(.*"),
        "FanFicFare has no adapter for this site",
    ),
    (
        Outcome.FORCEABLE,
        re.compile(r".*contains \d+ chapters, more than source: \d+\..*"),
        "the EPUB has more chapters than the site",
    ),
    (
        Outcome.FORCEABLE,
        re.compile(r".*File\(.*\) Updated\(.*\) more recently than Story\(.*\) - Skipping.*"),
        "the EPUB is newer than the story",
    ),
    (
        Outcome.UP_TO_DATE,
        re.compile(r".* already contains \d+ chapters\..*"),
        "the story is already up to date",
    ),
    (
        Outcome.RETRYABLE,
        re.compile(
            r".*(FailedToDownload|Error downloading Chapter|chapters errored downloading"
            r"|\d{3} Client Error|\d{3} Server Error|Connection to flaresolverr proxy server failed"
            r").*"
        ),
        "the download failed",
    ),
)


def classify(stdout: str, stderr: str, returncode: int) -> Classified:
    """Classify one FanFicFare run from its output and exit status.

    The first rule (in the table order of the module docstring) matching any line wins, so a
    permanent message beats a traceback that follows it. With no match, exit status 0 means
    :attr:`Outcome.SUCCESS` and anything else :attr:`Outcome.RETRYABLE`.
    """
    lines = [ln.strip() for ln in (stdout + "\n" + stderr).splitlines() if ln.strip()]
    for outcome, pattern, message in _RULES:
        for line in lines:
            if pattern.fullmatch(line):
                return Classified(outcome, line, message)
    if returncode == 0:
        return Classified(Outcome.SUCCESS)
    tail = " | ".join(lines[-3:])
    return Classified(Outcome.RETRYABLE, tail, f"fanficfare exited with status {returncode}")
