"""The one subprocess spawner every pipeline uses (lftp, fanficfare, calibredb).

API::

    result = await spawn.run(
        ["lftp", "-c", script],            # argv list only: never a shell
        cwd=ctx.tmp_dir,                   # per-job working directory (None: a private temp dir,
                                           #   created here and always removed afterwards)
        env={"LFTP_PASSWORD": pw},         # overrides on top of os.environ (None value = unset)
        secrets=[pw],                      # refused on argv; replaced by *** in captured output
        timeout=3600.0,                    # hard limit in seconds -> kill ladder, timed_out=True
        on_stdout_line=parse_progress,     # optional callback per line (\\n or \\r terminated)
    )
    result.returncode, result.stdout, result.stderr, result.duration, result.timed_out

    path = await spawn.write_secret_file(ctx.tmp_dir, ".netrc", text)   # mode 0600, O_EXCL

Behaviour:

- The child starts in its own session (``start_new_session=True``), so it leads a new process
  group whose id is its pid; every signal goes to the whole group (lftp's ``ssh`` included).
- stdout and stderr are captured separately, each bounded to ``capture_limit`` bytes: when a
  stream says more, the oldest bytes are dropped and ``*_truncated`` is set (the tail is what
  explains a failure). Text is decoded as UTF-8 with replacement characters.
- The kill ladder runs when ``timeout`` expires and when the caller is cancelled (shutdown, a
  user's pause): close stdin (only if it was held open with ``hold_stdin``) → wait
  ``stdin_grace`` s → SIGTERM to the process group → wait ``term_grace`` s → SIGKILL to the
  process group. Cancellation is re-raised after the ladder; a timeout returns a result with
  ``timed_out=True``. The ladder itself is shielded, so no child outlives its caller.
- After the child exits, its pipes get ``drain_grace`` s to reach EOF; stragglers in the group
  that still hold them (a daemonised grandchild) are then SIGKILLed.

Errors:

- :class:`SpawnError` (a :class:`~hathd.errors.HathdError`): the program could not be started
  (not found, not executable, bad working directory), or a secret appears on argv.
- A non-zero exit status is *not* an error here: the caller classifies the result.

Sources: ``setsid(2)``/``killpg(2)`` for group signalling; trio 0.35 ``trio.lowlevel.open_process``
(the process is not killed on cancel unless we do it; trio documentation, "Spawning
subprocesses": only ``trio.run_process`` kills its child on cancellation).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from subprocess import DEVNULL, PIPE

import attrs
import trio

from hathd.errors import HathdError
from hathd.excgroups import single

log = logging.getLogger(__name__)

LineCallback = Callable[[str], None]
"""Called with each complete output line (without its terminator), secrets redacted."""

REDACTED = "***"


class SpawnError(HathdError):
    """The program could not be started, or the call was refused (a secret on argv)."""


@attrs.frozen
class SpawnResult:
    """What a finished child left behind.

    ``returncode`` is the exit status, negative for a signal (``-15`` = SIGTERM). ``duration`` is
    wall-clock seconds from start to reaping. ``ended_by`` names the ladder step that ended the
    child (``"stdin"``, ``"term"``, ``"kill"``) or is ``None`` when it exited on its own.
    """

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    ended_by: str | None = None

    @property
    def ok(self) -> bool:
        """Exit status 0 and no timeout."""
        return self.returncode == 0 and not self.timed_out

    def tail(self, lines: int = 5) -> str:
        """The last ``lines`` non-empty lines of stderr, else of stdout (for error messages)."""
        for text in (self.stderr, self.stdout):
            kept = [ln.strip() for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
            if kept:
                return " | ".join(kept[-lines:])
        return ""


class _Capture:
    """A bounded byte buffer that also splits lines for a callback (sans-IO)."""

    def __init__(self, limit: int, on_line: LineCallback | None, redact: Callable[[str], str]):
        self.limit = limit
        self.on_line = on_line
        self.redact = redact
        self.buf = bytearray()
        self.truncated = False
        self._partial = bytearray()
        self.eof = trio.Event()

    def feed(self, data: bytes | bytearray) -> None:
        self.buf += data
        if len(self.buf) > self.limit:
            del self.buf[: len(self.buf) - self.limit]
            self.truncated = True
        if self.on_line is None:
            return
        self._partial += data
        while True:
            hits = [i for i in (self._partial.find(b"\n"), self._partial.find(b"\r")) if i >= 0]
            if not hits:
                break
            cut = min(hits)
            line = bytes(self._partial[:cut])
            del self._partial[: cut + 1]
            self._emit(line)
        if len(self._partial) > self.limit:
            self._emit(bytes(self._partial))
            self._partial.clear()

    def close(self) -> None:
        if self.on_line is not None and self._partial:
            self._emit(bytes(self._partial))
            self._partial.clear()

    def _emit(self, line: bytes) -> None:
        assert self.on_line is not None
        if not line:
            return
        try:
            self.on_line(self.redact(line.decode("utf-8", "replace")))
        except Exception:
            log.exception("output line callback failed; output is still captured")

    def text(self) -> str:
        return self.redact(bytes(self.buf).decode("utf-8", "replace"))


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:  # pragma: no cover - the group was reused by someone else
        log.warning("cannot signal process group %d", pid)


def build_env(
    overrides: Mapping[str, str | None] | None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``base`` (default ``os.environ`` without its ``HATHD_*`` variables, which may carry
    hathd's own secrets) with ``overrides`` applied; a ``None`` value unsets."""
    if base is None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("HATHD_")}
    env = dict(base)
    for key, value in (overrides or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


MIN_SECRET_LEN = 4
"""Shorter secrets are neither checked on argv nor redacted: a one- or two-character string
occurs by chance in paths and output, and refusing every call would help nobody."""


def _make_redactor(secrets: Sequence[str]) -> Callable[[str], str]:
    needles = sorted({s for s in secrets if len(s) >= MIN_SECRET_LEN}, key=len, reverse=True)

    def redact(text: str) -> str:
        for needle in needles:
            text = text.replace(needle, REDACTED)
        return text

    return redact


async def write_secret_file(directory: Path, name: str, content: str) -> Path:
    """Write ``content`` to ``directory/name`` with mode 0600 (created exclusively).

    For credentials a tool reads from a file (a netrc, a password file): they stay off argv
    and out of the environment of unrelated processes.

    :raises FileExistsError: the file already exists.
    """

    def write() -> Path:
        path = directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
        return path

    return await trio.to_thread.run_sync(write)


async def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str | None] | None = None,
    base_env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    hold_stdin: bool = False,
    timeout: float | None = None,
    on_stdout_line: LineCallback | None = None,
    on_stderr_line: LineCallback | None = None,
    capture_limit: int = 1 << 20,
    secrets: Sequence[str] = (),
    stdin_grace: float = 2.0,
    term_grace: float = 5.0,
    drain_grace: float = 2.0,
    tmp_root: Path | None = None,
) -> SpawnResult:
    """Run ``argv`` to completion (or timeout) and return a :class:`SpawnResult`.

    :param argv: program and arguments; no shell is involved, so nothing needs quoting.
    :param cwd: working directory; ``None`` creates a private temporary directory (under
        ``tmp_root``) that is removed when the call ends, whatever the outcome.
    :param env: overrides on ``base_env`` (default ``os.environ`` minus ``HATHD_*``); ``None``
        values unset.
    :param stdin: bytes written to the child's stdin; without ``hold_stdin`` stdin is closed
        afterwards (``None`` and no ``hold_stdin``: stdin is ``/dev/null``).
    :param hold_stdin: keep stdin open until the child exits; closing it is then the first,
        gentlest step of the kill ladder.
    :param timeout: seconds before the kill ladder runs; ``None`` = no limit.
    :param on_stdout_line: called for each stdout line (e.g. progress parsing).
    :param on_stderr_line: called for each stderr line.
    :param capture_limit: bytes kept per stream (the tail).
    :param secrets: strings that must not appear on argv (substring match), and are redacted
        from output; those shorter than :data:`MIN_SECRET_LEN` characters are ignored.
    :param stdin_grace: seconds after closing stdin before SIGTERM.
    :param term_grace: seconds after SIGTERM before SIGKILL.
    :param drain_grace: seconds the pipes get to reach EOF after the child exits.
    :raises SpawnError: the program could not be started, or a secret is on argv.
    :raises trio.Cancelled: re-raised after the kill ladder when the caller is cancelled.
    """
    args = tuple(str(a) for a in argv)
    if not args:
        raise SpawnError("empty argv")
    redact = _make_redactor(secrets)
    for arg in args:
        if redact(arg) != arg:
            raise SpawnError(f"refusing to put a secret on the command line of {args[0]}")
    own_dir: Path | None = None
    if cwd is None:
        own_dir = Path(
            await trio.to_thread.run_sync(
                lambda: tempfile.mkdtemp(prefix="hathd-spawn-", dir=tmp_root)
            )
        )
    try:
        return await _run_in(
            args,
            cwd=cwd if cwd is not None else own_dir,
            env=build_env(env, base_env),
            stdin=stdin,
            hold_stdin=hold_stdin,
            timeout=timeout,
            out=_Capture(capture_limit, on_stdout_line, redact),
            err=_Capture(capture_limit, on_stderr_line, redact),
            stdin_grace=stdin_grace,
            term_grace=term_grace,
            drain_grace=drain_grace,
        )
    finally:
        if own_dir is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(shutil.rmtree, own_dir, True)


async def _pump(stream: trio.abc.ReceiveStream | None, capture: _Capture) -> None:
    if stream is None:
        capture.eof.set()
        return
    try:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                break
            capture.feed(data)
    except (trio.ClosedResourceError, trio.BrokenResourceError):
        pass
    finally:
        capture.close()
        capture.eof.set()


async def _feed_stdin(proc: trio.Process, data: bytes | None, hold: bool) -> None:
    if proc.stdin is None:
        return
    try:
        if data:
            await proc.stdin.send_all(data)
        if not hold:
            await proc.stdin.aclose()
    except (trio.ClosedResourceError, trio.BrokenResourceError):
        pass


async def _ladder(proc: trio.Process, stdin_grace: float, term_grace: float) -> str:
    """Stop ``proc`` and its group; return the step that ended it. Must run shielded."""
    stdin = proc.stdin
    if stdin is not None:
        try:
            await stdin.aclose()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        with trio.move_on_after(stdin_grace):
            await proc.wait()
        if proc.returncode is not None:
            return "stdin"
    _killpg(proc.pid, signal.SIGTERM)
    with trio.move_on_after(term_grace):
        await proc.wait()
    if proc.returncode is not None:
        _killpg(proc.pid, signal.SIGKILL)  # stragglers of the group
        return "term"
    _killpg(proc.pid, signal.SIGKILL)
    await proc.wait()
    return "kill"


async def _run_in(
    args: tuple[str, ...],
    *,
    cwd: Path | None,
    env: dict[str, str],
    stdin: bytes | None,
    hold_stdin: bool,
    timeout: float | None,
    out: _Capture,
    err: _Capture,
    stdin_grace: float,
    term_grace: float,
    drain_grace: float,
) -> SpawnResult:
    use_stdin = stdin is not None or hold_stdin
    began = time.monotonic()
    try:
        proc = await trio.lowlevel.open_process(
            args,
            stdin=PIPE if use_stdin else DEVNULL,
            stdout=PIPE,
            stderr=PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        raise SpawnError(f"cannot start {args[0]}: {exc}") from exc
    log.debug("spawned pid %d: %s", proc.pid, args[0])
    timed_out = False
    ended_by: str | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_pump, proc.stdout, out)
            nursery.start_soon(_pump, proc.stderr, err)
            if use_stdin:
                nursery.start_soon(_feed_stdin, proc, stdin, hold_stdin)
            with trio.move_on_after(timeout if timeout is not None else float("inf")) as scope:
                await proc.wait()
            if scope.cancelled_caught:
                timed_out = True
                log.warning("%s timed out after %.1f s; stopping it", args[0], timeout)
                with trio.CancelScope(shield=True):
                    ended_by = await _ladder(proc, stdin_grace, term_grace)
            with trio.move_on_after(drain_grace) as drain:
                await out.eof.wait()
                await err.eof.wait()
            if drain.cancelled_caught:
                _killpg(proc.pid, signal.SIGKILL)
                nursery.cancel_scope.cancel()
    except BaseException as exc:
        if proc.returncode is None:
            with trio.CancelScope(shield=True):
                ended_by = await _ladder(proc, stdin_grace, term_grace)
            log.info("%s stopped by %s after cancellation", args[0], ended_by)
        leaf = single(exc)
        if leaf is not exc:
            raise leaf from None
        raise
    finally:
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with trio.CancelScope(shield=True):
                    await stream.aclose()
    assert proc.returncode is not None
    return SpawnResult(
        argv=args,
        returncode=proc.returncode,
        stdout=out.text(),
        stderr=err.text(),
        duration=time.monotonic() - began,
        timed_out=timed_out,
        stdout_truncated=out.truncated,
        stderr_truncated=err.truncated,
        ended_by=ended_by,
    )
