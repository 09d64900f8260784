"""The ``transfer`` job handler: one seedbox payload copied home with lftp.

Steps of one try:

1. Probe: ask the server whether the remote path is a directory or a file and how many bytes it
   holds (:func:`hathd.q4d.lftp.probe_script`), rather than failing a ``mirror`` first as the
   original script does.
2. Transfer into a staging name next to the destination (:func:`staging_path`), with
   ``mirror -c`` (directory) or ``pget -c`` (file), so a retry resumes and a media server never
   sees a half-copied payload. A directory that already exists at the destination is mirrored
   into in place (``mirror -c`` completes it), as Queue4Download does.
3. Check that the local byte count equals the probe's (at least the probe's for a folder
   completed in place, which may hold extra files), then rename the staging name to
   ``<dest>/<name>``.

A file already present at ``<dest>/<name>`` with the probe's size is not fetched again (the job
is ``done`` with ``skipped: true``): a redelivered event costs a probe, not a transfer.

Two jobs that would publish to the same ``<dest>/<name>`` (two events for one payload with
different hashes, e.g. a cross-seeded torrent) take turns: steps 2 and 3 run under a lock per
local path, so the second finds the first's result (a complete file is skipped, a folder is
completed in place) instead of racing it to the rename.

Progress: the staged bytes are counted once a second and reported with ``ctx.progress``; the
file ``mirror -v`` is working on is the progress message.

Errors (see :mod:`hathd.errors`): a vanished remote path → :class:`PermanentError`; a login
failure, a network error, a timeout, a size mismatch → :class:`RetryableError` (the engine's
retry preset decides how often); an unusable destination or missing lftp →
:class:`PermanentError`. The error text carries lftp's own reason (the tail of its stderr).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import cattrs
import trio

from hathd import spawn
from hathd.engine.api import JobContext
from hathd.errors import ConfigError, PermanentError, RetryableError
from hathd.programs import Program
from hathd.q4d import lftp
from hathd.q4d.config import Q4DConfig

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 120.0
"""Seconds allowed for the probe (login + two listings)."""

PROGRESS_INTERVAL = 1.0
"""Seconds between two counts of the staged bytes."""

PART_SUFFIX = ".hathd-part"


@attrs.frozen
class TransferParams:
    """A transfer job's parameters: the remote ``path``, torrent ``hash``, the type ``code``
    (after the rules) and the local folder ``dest_dir`` that receives the payload."""

    path: str
    hash: str
    code: str
    dest_dir: str
    payload_code: str = ""

    @property
    def name(self) -> str:
        """The last component of the remote path (the local file or folder name)."""
        return self.path.rstrip("/").rsplit("/", 1)[-1]


_converter = cattrs.Converter(forbid_extra_keys=False)


def destination_roots(type_map: Mapping[str, str], root: Path) -> list[Path]:
    """The folders a transfer may write under: the q4d download ``root`` and every
    ``type_map`` folder (a relative one taken under ``root``, as
    :func:`hathd.q4d.rules.destination` does), ``ERR``'s included; each resolved.

    :raises RuntimeError: a ``~user`` folder names an unknown user.
    """
    folders = [root, root / "ERR", *(root / Path(f).expanduser() for f in type_map.values())]
    out: list[Path] = []
    for folder in folders:
        resolved = folder.resolve()
        if resolved not in out:
            out.append(resolved)
    return out


def check_params(raw: Mapping[str, Any], roots: Sequence[Path]) -> TransferParams:
    """``raw`` (a job's params) as :class:`TransferParams`, confined to ``roots``.

    ``dest_dir`` must be absolute, hold no ``..`` component and, with symlinks resolved, lie in
    or under one
    of ``roots`` (see :func:`destination_roots`); the payload's name (the last component of
    ``path``) must be a plain name (not empty, ``.`` or ``..``), so ``<dest_dir>/<name>``
    cannot leave the folder either.

    :raises ValueError: naming the field (``dest_dir``, ``path``, ``params``).
    """
    try:
        params = _converter.structure(dict(raw), TransferParams)
    except (cattrs.BaseValidationError, TypeError, KeyError, ValueError) as exc:
        raise ValueError(f"params: not transfer parameters: {exc}") from None
    for field in ("path", "hash", "code", "dest_dir", "payload_code"):
        if not isinstance(getattr(params, field), str):
            raise ValueError(f"{field}: must be a string")
    if "\x00" in params.path or params.name in ("", ".", ".."):
        raise ValueError(f"path: {params.path!r} does not end in a file or folder name")
    dest = params.dest_dir
    if "\x00" in dest or not os.path.isabs(dest):
        raise ValueError(f"dest_dir: {dest!r} is not an absolute folder path")
    if ".." in Path(dest).parts:
        raise ValueError(f"dest_dir: {dest!r} has a '..' component")
    resolved = Path(dest).resolve()
    if not any(resolved.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise ValueError(f"dest_dir: {dest!r} lies outside the q4d destinations ({allowed})")
    return params


def tree_bytes(path: Path) -> int:
    """Bytes held by the file or tree at ``path`` (0 if absent); blocking, use a thread.

    Counts ``min(st_size, st_blocks * 512)`` per file, so a preallocated (sparse) segment
    file counts what has really arrived.
    """

    def one(st: os.stat_result) -> int:
        return min(st.st_size, st.st_blocks * 512)

    try:
        st = path.lstat()
    except FileNotFoundError:
        return 0
    if not path.is_dir():
        return one(st)
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += one(Path(root, name).lstat())
            except FileNotFoundError:
                continue
    return total


def apparent_bytes(path: Path) -> int:
    """Sum of ``st_size`` of the file or of every file under ``path``; blocking.

    :raises OSError: ``path`` does not exist.
    """
    if not path.is_dir():
        return path.stat().st_size
    return sum(
        Path(root, name).lstat().st_size for root, _d, files in os.walk(path) for name in files
    )


def staging_path(dest_dir: Path, params: TransferParams) -> Path:
    """Where a payload is assembled: ``<dest>/.<name>.<hash prefix>.hathd-part``.

    Stable across tries of one job (so lftp resumes), distinct for two torrents with the same
    name (so they never write into one file).
    """
    tag = "".join(ch for ch in params.hash if ch.isalnum())[:16] or "nohash"
    return dest_dir / f".{params.name}.{tag}{PART_SUFFIX}"


def _file_size(path: Path) -> int | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size if path.is_file() else None


@attrs.define
class _PathLock:
    lock: trio.Lock = attrs.field(factory=trio.Lock)
    users: int = 0


class PathLocks:
    """One :class:`trio.Lock` per local path, created on demand and dropped when unused."""

    def __init__(self) -> None:
        self._locks: dict[str, _PathLock] = {}

    @staticmethod
    def key(path: Path) -> str:
        """The lock key of ``path``: its normalised text (no file system access)."""
        return os.path.normpath(path)

    def busy(self, path: Path) -> bool:
        """Whether a task holds or waits for ``path``'s lock."""
        entry = self._locks.get(self.key(path))
        return entry is not None and entry.users > 0

    @asynccontextmanager
    async def hold(self, path: Path) -> AsyncIterator[None]:
        """Hold the lock of ``path`` (normalised) for the ``async with`` block."""
        key = self.key(path)
        entry = self._locks.setdefault(key, _PathLock())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[key]


class TransferHandler:
    """``async def __call__(ctx) -> dict``: the handler of job kind ``transfer``.

    One instance serves every transfer job of a daemon (it holds the per-path locks).

    :param config: the ``[q4d]`` section (site, credentials, lftp settings, timeout).
    :param roots: the folders a job's ``dest_dir`` must lie under (:func:`destination_roots`);
        checked again at every try, for jobs stored before a configuration change.
    :param program: lftp as resolved at start (:mod:`hathd.programs`); when it is missing
        every transfer fails at once with the reason and the fix.
    """

    def __init__(
        self, config: Q4DConfig, *, roots: Sequence[Path], program: Program | None = None
    ) -> None:
        self.config = config
        self.roots = [Path(r).resolve() for r in roots]
        self.program = program
        self.locks = PathLocks()

    def site(self, has_password: bool) -> lftp.Site:
        """The lftp site description from the configuration."""
        cfg = self.config
        return lftp.Site(
            url=cfg.host,
            user=cfg.user,
            has_password=has_password,
            threads=cfg.threads,
            segments=cfg.segments,
            net_timeout=cfg.net_timeout,
            max_retries=cfg.net_max_retries,
            reconnect_base=cfg.reconnect_interval_base,
            reconnect_max=cfg.reconnect_interval_max,
            sftp_auto_confirm=cfg.sftp_auto_confirm,
            sftp_connect_program=cfg.sftp_connect_program,
        )

    async def __call__(self, ctx: JobContext) -> dict[str, Any]:
        """Run one try of the job in ``ctx`` (params: :class:`TransferParams`).

        Returns ``{"dest": local path, "kind": "file"|"dir", "bytes": int, "seconds": float,
        "code": str}`` plus ``"skipped": True`` when the file was already complete.

        :raises PermanentError: bad parameters, no ``q4d.host``, an unreadable password file,
            the remote path is gone, lftp is missing, the destination is unusable.
        :raises RetryableError: login or network failure, lftp's timeout, a size mismatch; the
            text carries lftp's reason (the tail of its output).
        """
        try:
            params = await trio.to_thread.run_sync(check_params, ctx.job.params, self.roots)
        except ValueError as exc:
            raise PermanentError(f"bad transfer parameters: {exc}") from None
        if not self.config.host:
            raise PermanentError("q4d.host is not configured")
        if self.program is not None:
            self.program.require()  # lftp missing: fail with the reason and the fix
        try:
            password = await trio.to_thread.run_sync(self.config.read_password)
        except ConfigError as exc:
            raise PermanentError(str(exc)) from None
        site = self.site(password is not None)
        env: dict[str, str | None] = {"LFTP_HOME": str(ctx.tmp_dir / "lftp"), "LFTP_PASSWORD": None}
        secrets: list[str] = []
        if password is not None:
            env["LFTP_PASSWORD"] = password
            secrets.append(password)

        began = trio.current_time()
        probe = await self._probe(ctx, site, params.path, env, secrets)
        dest_dir = Path(params.dest_dir)
        final = dest_dir / params.name
        try:
            await trio.to_thread.run_sync(lambda: dest_dir.mkdir(parents=True, exist_ok=True))
        except OSError as exc:
            raise PermanentError(f"cannot create {dest_dir}: {exc}") from None
        if self.locks.busy(final):
            log.info("transfer %s: waiting for another transfer into %s", params.path, final)
            ctx.progress(0, probe.size, message=f"waiting for another transfer into {final}")
        async with self.locks.hold(final):
            return await self._fetch(ctx, params, site, env, secrets, probe, final, began)

    async def _fetch(
        self,
        ctx: JobContext,
        params: TransferParams,
        site: lftp.Site,
        env: dict[str, str | None],
        secrets: list[str],
        probe: lftp.Probe,
        final: Path,
        began: float,
    ) -> dict[str, Any]:
        """Steps 2 and 3 (the caller holds ``final``'s lock)."""
        dest_dir = final.parent
        if not probe.is_dir and probe.size is not None:
            existing = await trio.to_thread.run_sync(_file_size, final)
            if existing == probe.size:
                # Already here (a redelivered event, or a second event for the same payload):
                # like mirror -c for a folder, a complete file is not fetched again.
                log.info("transfer %s: %s is already complete", params.path, final)
                ctx.progress(existing, existing, message="already complete")
                return {
                    "dest": str(final),
                    "kind": "file",
                    "bytes": existing,
                    "seconds": round(trio.current_time() - began, 3),
                    "code": params.code,
                    "skipped": True,
                }
        in_place = probe.is_dir and await trio.to_thread.run_sync(final.is_dir)
        target = final if in_place else staging_path(dest_dir, params)
        if probe.is_dir:
            script = lftp.mirror_script(site, params.path, str(target))
        else:
            script = lftp.pget_script(site, params.path, str(target))
        await self._run_lftp(ctx, script, env, secrets, target, probe.size)

        try:
            got = await trio.to_thread.run_sync(apparent_bytes, target)
        except OSError as exc:
            raise RetryableError(f"lftp left nothing usable at {target}: {exc}") from None
        # A folder completed in place may hold extra files of its own (subtitles, artwork):
        # there only a shortfall counts.
        short = probe.size is not None and (got < probe.size if in_place else got != probe.size)
        if short:
            raise RetryableError(
                f"size mismatch after lftp: {got} bytes local, {probe.size} on the server"
            )
        if target != final:
            try:
                await trio.to_thread.run_sync(os.replace, target, final)
            except OSError as exc:
                raise PermanentError(f"cannot move {target} to {final}: {exc}") from None
        ctx.progress(got, probe.size if probe.size is not None else got, message="done")
        log.info("transfer %s → %s (%d bytes)", params.path, final, got)
        return {
            "dest": str(final),
            "kind": "dir" if probe.is_dir else "file",
            "bytes": got,
            "seconds": round(trio.current_time() - began, 3),
            "code": params.code,
        }

    async def _lftp(
        self,
        ctx: JobContext,
        script: str,
        env: dict[str, str | None],
        secrets: list[str],
        timeout: float,
        on_line: Callable[[str], None] | None = None,
    ) -> spawn.SpawnResult:
        try:
            result = await spawn.run(
                [self.config.lftp, "-c", script],
                cwd=ctx.tmp_dir,
                env=env,
                secrets=secrets,
                timeout=timeout,
                on_stdout_line=on_line,
            )
        except spawn.SpawnError as exc:
            raise PermanentError(str(exc)) from None
        if result.timed_out:
            raise RetryableError(f"lftp timed out after {timeout:g} s: {result.tail(2)}")
        if result.returncode != 0:
            reason = result.tail(3) or f"lftp exited with status {result.returncode}"
            if lftp.is_permanent(reason):
                raise PermanentError(f"lftp: {reason}")
            raise RetryableError(f"lftp: {reason}")
        return result

    async def _probe(
        self,
        ctx: JobContext,
        site: lftp.Site,
        path: str,
        env: dict[str, str | None],
        secrets: list[str],
    ) -> lftp.Probe:
        timeout = min(PROBE_TIMEOUT, self.config.timeout)
        result = await self._lftp(ctx, lftp.probe_script(site, path), env, secrets, timeout)
        try:
            return lftp.parse_probe(result.stdout, path)
        except ValueError as exc:
            raise RetryableError(str(exc)) from None

    async def _run_lftp(
        self,
        ctx: JobContext,
        script: str,
        env: dict[str, str | None],
        secrets: list[str],
        target: Path,
        total: int | None,
    ) -> None:
        current: list[str] = []

        def on_line(line: str) -> None:
            name = lftp.transferring(line)
            if name is not None:
                current[:] = [name]

        failure: list[RetryableError | PermanentError] = []
        async with trio.open_nursery() as nursery:

            async def report() -> None:
                while True:
                    await trio.sleep(PROGRESS_INTERVAL)
                    done = await trio.to_thread.run_sync(tree_bytes, target)
                    ctx.progress(done, total, message=current[0] if current else None)

            nursery.start_soon(report)
            try:
                await self._lftp(ctx, script, env, secrets, self.config.timeout, on_line)
            except (RetryableError, PermanentError) as exc:
                failure.append(exc)
            finally:
                nursery.cancel_scope.cancel()
        if failure:
            raise failure[0]
