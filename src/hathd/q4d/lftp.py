"""lftp scripts and lftp output, without running anything (sans-IO).

Every script starts with ``set`` lines and only then ``open``s the site: settings placed after
the URL do not govern the first connection, so a dead server would be retried forever
(observed with lftp 4.9.2; docs/q4d.md). ``cmd:fail-exit`` stops the script at the
first failing command, so the exit status is that command's.

Forms (lftp(1) man page; Q4D ``LFTPtransfer.sh``):

- probe: ``cls -dF -- "<glob-escaped path>"`` (a trailing ``/`` marks a directory) and
  ``du -bs -- "<path>"`` (total bytes), so the server is asked what the path is before any
  transfer starts;
- directory: ``mirror -c --parallel=THREADS --use-pget-n=SEGMENTS --no-perms -v SRC DST``;
- file: ``pget -c -n SEGMENTS SRC -o DST``.

``-c`` makes a retry continue where the last try stopped. ``--no-perms`` because some servers
(pyftpdlib) list ``----------`` permissions and mirror would create mode-000 files.
Credentials: ``open --env-password`` reads ``LFTP_PASSWORD`` from the environment, so the
password is never on argv or in the script.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import attrs

TRANSFERRING = re.compile(r"^Transferring file [`'](?P<name>.*)'$")
"""``mirror -v`` announces each file it starts (lftp 4.9.2 output)."""

PERMANENT_MARKERS: tuple[str, ...] = (
    "No such file or directory",
    "550 No such file",
    "Not a directory",
)
"""lftp reasons that another try cannot fix (the payload is gone from the seedbox)."""


@attrs.frozen
class Site:
    """How to reach the seedbox. Times in seconds; ``password`` tells whether to pass
    ``--env-password`` (the value itself travels in ``LFTP_PASSWORD``)."""

    url: str
    user: str = ""
    has_password: bool = False
    threads: int = 5
    segments: int = 4
    net_timeout: float = 30.0
    max_retries: int = 3
    reconnect_base: float = 5.0
    reconnect_max: float = 60.0
    sftp_auto_confirm: bool = True
    sftp_connect_program: str = ""


@attrs.frozen
class Probe:
    """What the server said about a path: a directory or a file, and its size in bytes."""

    is_dir: bool
    size: int | None


def quote(text: str) -> str:
    """``text`` as one lftp word in double quotes (backslash and quote escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def glob_escape(text: str) -> str:
    """Escape lftp glob characters (``\\ * ? [ ]``) for commands that expand patterns (cls)."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def preamble(site: Site) -> list[str]:
    """The ``set`` lines and the ``open`` line, in that order."""
    lines = [
        "set cmd:fail-exit yes",
        "set cmd:interactive no",
        f"set net:timeout {_seconds(site.net_timeout)}",
        f"set net:max-retries {site.max_retries}",
        f"set net:reconnect-interval-base {_seconds(site.reconnect_base)}",
        f"set net:reconnect-interval-max {_seconds(site.reconnect_max)}",
        "set xfer:clobber yes",
    ]
    if site.url.startswith("sftp:"):
        lines.append(f"set sftp:auto-confirm {'yes' if site.sftp_auto_confirm else 'no'}")
        if site.sftp_connect_program:
            lines.append(f"set sftp:connect-program {quote(site.sftp_connect_program)}")
    if site.url.startswith("ftps:"):
        lines.append("set ftp:ssl-force yes")
    words = ["open"]
    if site.has_password:
        words.append("--env-password")
    if site.user:
        words += ["-u", quote(site.user)]
    words.append(quote(site.url))
    lines.append(" ".join(words))
    return lines


def _script(site: Site, commands: Sequence[str]) -> str:
    return "; ".join([*preamble(site), *commands])


def probe_script(site: Site, path: str) -> str:
    """Ask the server whether ``path`` is a directory, and its total size."""
    return _script(site, [f"cls -dF -- {quote(glob_escape(path))}", f"du -bs -- {quote(path)}"])


def parse_probe(stdout: str, path: str) -> Probe:
    """Read the probe's output.

    :raises ValueError: the output does not hold the ``cls`` line.
    """
    is_dir: bool | None = None
    size: int | None = None
    for line in stdout.splitlines():
        if not line.strip():
            continue
        match = re.match(r"^(\d+)\t", line)
        if match:
            size = int(match.group(1))
        elif is_dir is None:
            is_dir = line.endswith("/")
    if is_dir is None:
        raise ValueError(f"lftp did not list {path!r}: {stdout[-200:]!r}")
    return Probe(is_dir, size)


def mirror_script(site: Site, remote: str, local: str) -> str:
    """Copy the directory ``remote`` to ``local`` (resumable)."""
    return _script(
        site,
        [
            f"mirror -c --parallel={site.threads} --use-pget-n={site.segments} --no-perms -v "
            f"-- {quote(remote)} {quote(local)}"
        ],
    )


def pget_script(site: Site, remote: str, local: str) -> str:
    """Copy the file ``remote`` to ``local`` with ``segments`` connections (resumable)."""
    return _script(site, [f"pget -c -n {site.segments} {quote(remote)} -o {quote(local)}"])


def is_permanent(reason: str) -> bool:
    """Whether lftp's ``reason`` means retrying cannot help (the path is gone)."""
    return any(marker in reason for marker in PERMANENT_MARKERS)


def transferring(line: str) -> str | None:
    """The file name of a ``Transferring file `…'`` line, else ``None``."""
    match = TRANSFERRING.match(line.strip())
    return match.group("name") if match else None
