"""The transfer handler with real lftp against real FTP (pyftpdlib) and SFTP (asyncssh) servers.

The handler is driven through a minimal :class:`~hathd.engine.api.JobContext`; the end-to-end
tests run it inside the real engine.
"""

from __future__ import annotations

import filecmp
import time
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from hathd.engine.api import Job, JobState
from hathd.errors import PermanentError, RetryableError
from hathd.q4d.config import Q4DConfig
from hathd.q4d.transfer import TransferHandler, TransferParams, staging_path
from q4d.rig import (
    PASSWORD,
    USER,
    FileServer,
    open_ftp,
    open_sftp,
    open_slow_ftp,
    ssh_connect_program,
)


@attrs.define
class Ctx:
    """A JobContext of our own: the job, a private directory, recorded progress."""

    job: Job
    tmp_dir: Path
    updates: list[tuple[int, int | None, str | None]] = attrs.field(factory=list)

    def progress(self, done: int, total: int | None = None, *, message: str | None = None) -> None:
        self.updates.append((done, total, message))


def make_ctx(tmp: Path, path: str, dest: Path, attempt: int = 1, hash_: str = "H") -> Ctx:
    params: dict[str, Any] = {"path": path, "hash": hash_, "code": "M", "dest_dir": str(dest)}
    job = Job(
        id="j1",
        kind="transfer",
        target=path,
        domain="seed",
        state=JobState.RUNNING,
        params=params,
        attempts=attempt,
        created_at=time.time(),
    )
    work = tmp / f"job-tmp-{hash_}-{attempt}"
    work.mkdir(parents=True, exist_ok=True)
    return Ctx(job, work)


def handler_for(server: FileServer, tmp: Path, **kw: Any) -> TransferHandler:
    options: dict[str, Any] = {
        "enabled": True,
        "host": server.url,
        "user": USER,
        "password": PASSWORD,
        "threads": 3,
        "segments": 3,
        "net_timeout": 5.0,
        "net_max_retries": 1,
        "reconnect_interval_base": 1.0,
        "reconnect_interval_max": 1.0,
        "sftp_connect_program": ssh_connect_program(tmp),
    }
    options.update(kw)
    return TransferHandler(Q4DConfig(**options), roots=[tmp])


def same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    _match, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    if mismatch or errors:
        return False
    return all(same_tree(a / d, b / d) for d in cmp.common_dirs)


@pytest.fixture(params=["ftp", "sftp"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def open_server(protocol: str, root: Path) -> Any:
    return open_ftp(root) if protocol == "ftp" else open_sftp(root)


async def test_directory_is_mirrored(protocol: str, seed_root: Path, tmp_path: Path) -> None:
    dest = tmp_path / "Movies"
    async with open_server(protocol, seed_root) as server:
        ctx = make_ctx(tmp_path, "/files/My Movie (2024)", dest)
        with trio.fail_after(120):
            result = await handler_for(server, tmp_path)(ctx)
    final = dest / "My Movie (2024)"
    assert result["dest"] == str(final)
    assert result["kind"] == "dir"
    assert same_tree(seed_root / "files" / "My Movie (2024)", final)
    assert (final / "empty file").stat().st_size == 0
    assert sorted(p.name for p in dest.iterdir()) == ["My Movie (2024)"]  # no staging left
    done, total, message = ctx.updates[-1]
    assert done == total == result["bytes"]
    assert message == "done"


async def test_existing_folder_is_completed_in_place_keeping_extras(
    seed_root: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "Movies"
    final = dest / "My Movie (2024)"
    final.mkdir(parents=True)
    (final / "movie part (1).en.srt").write_text("subtitles the media server fetched\n")
    async with open_ftp(seed_root) as server:
        ctx = make_ctx(tmp_path, "/files/My Movie (2024)", dest)
        with trio.fail_after(120):
            result = await handler_for(server, tmp_path)(ctx)
    assert result["dest"] == str(final)
    assert (final / "movie part (1).en.srt").exists()
    src = seed_root / "files" / "My Movie (2024)" / "movie part (1).mkv"
    assert filecmp.cmp(src, final / "movie part (1).mkv", shallow=False)


async def test_file_uses_pget(protocol: str, seed_root: Path, tmp_path: Path) -> None:
    dest = tmp_path / "TV"
    src = seed_root / "files" / "Single Episode S01E02 (720p).mkv"
    async with open_server(protocol, seed_root) as server:
        ctx = make_ctx(tmp_path, "/files/Single Episode S01E02 (720p).mkv", dest)
        with trio.fail_after(120):
            result = await handler_for(server, tmp_path)(ctx)
    assert result["kind"] == "file"
    assert (dest / src.name).read_bytes() == src.read_bytes()
    assert result["bytes"] == src.stat().st_size


async def test_two_jobs_for_one_destination_take_turns(seed_root: Path, tmp_path: Path) -> None:
    # Two events for the same folder with different hashes (a cross-seed), run at once: the
    # second must not race the first to the rename (a folder cannot replace a non-empty
    # folder); it waits, then completes the first's result in place.
    dest = tmp_path / "Movies"
    async with open_ftp(seed_root) as server:
        handler = handler_for(server, tmp_path)
        ctxs = [make_ctx(tmp_path, "/files/My Movie (2024)", dest, hash_=h) for h in ("A", "B")]
        results: list[dict[str, Any]] = []

        async def run(ctx: Ctx) -> None:
            results.append(await handler(ctx))

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for ctx in ctxs:
                    nursery.start_soon(run, ctx)
    final = dest / "My Movie (2024)"
    assert [r["dest"] for r in results] == [str(final), str(final)]
    assert same_tree(seed_root / "files" / "My Movie (2024)", final)
    assert sorted(p.name for p in dest.iterdir()) == ["My Movie (2024)"]
    waited = [m for ctx in ctxs for _d, _t, m in ctx.updates if m and m.startswith("waiting")]
    assert len(waited) == 1
    assert handler.locks.busy(final) is False


async def test_complete_file_is_not_fetched_again(seed_root: Path, tmp_path: Path) -> None:
    dest = tmp_path / "TV"
    name = "Single Episode S01E02 (720p).mkv"
    async with open_ftp(seed_root) as server:
        handler = handler_for(server, tmp_path)
        with trio.fail_after(120):
            first = await handler(make_ctx(tmp_path, f"/files/{name}", dest))
            stamp = (dest / name).stat().st_mtime_ns
            second = await handler(make_ctx(tmp_path, f"/files/{name}", dest, attempt=2))
    assert "skipped" not in first
    assert second["skipped"] is True
    assert (dest / name).stat().st_mtime_ns == stamp


async def test_wrong_password_is_retryable_with_lftps_reason(
    protocol: str, seed_root: Path, tmp_path: Path
) -> None:
    async with open_server(protocol, seed_root) as server:
        ctx = make_ctx(tmp_path, "/files/My Movie (2024)", tmp_path / "d")
        with trio.fail_after(120), pytest.raises(RetryableError, match="Login"):
            await handler_for(server, tmp_path, password="Not-The-Password")(ctx)


async def test_missing_remote_path_is_permanent(seed_root: Path, tmp_path: Path) -> None:
    async with open_ftp(seed_root) as server:
        ctx = make_ctx(tmp_path, "/files/gone (1999)", tmp_path / "d")
        with trio.fail_after(120), pytest.raises(PermanentError, match="No such file"):
            await handler_for(server, tmp_path)(ctx)


async def test_password_from_file_and_never_on_argv(seed_root: Path, tmp_path: Path) -> None:
    pw_file = tmp_path / "seedbox.pw"
    pw_file.write_text(PASSWORD + "\n")
    async with open_ftp(seed_root) as server:
        handler = handler_for(server, tmp_path, password=None, password_file=str(pw_file))
        ctx = make_ctx(tmp_path, "/files/Single Episode S01E02 (720p).mkv", tmp_path / "d")
        with trio.fail_after(120):
            await handler(ctx)
    # spawn.run refuses a secret on argv; reaching here means lftp got it from LFTP_PASSWORD.
    assert (tmp_path / "d" / "Single Episode S01E02 (720p).mkv").exists()


async def test_unreachable_server_fails_fast_not_forever(tmp_path: Path) -> None:
    from q4d.rig import free_port

    port = free_port()
    server = FileServer(None, f"ftp://127.0.0.1:{port}", port)  # type: ignore[arg-type]
    ctx = make_ctx(tmp_path, "/files/x", tmp_path / "d")
    with trio.fail_after(60), pytest.raises(RetryableError, match="max-retries exceeded"):
        await handler_for(server, tmp_path)(ctx)


async def test_retry_resumes_a_partial_file(seed_root: Path, tmp_path: Path) -> None:
    src = seed_root / "files" / "Big Payload (2160p).bin"
    dest = tmp_path / "Big"
    dest.mkdir()
    # What an interrupted first try leaves: the staging file holding the first 10 MiB.
    part = staging_path(dest, TransferParams(f"/files/{src.name}", "H", "M", str(dest)))
    with src.open("rb") as fh:
        part.write_bytes(fh.read(10 * 1024 * 1024))
    async with open_ftp(seed_root) as server:
        ctx = make_ctx(tmp_path, f"/files/{src.name}", dest, attempt=2)
        with trio.fail_after(120):
            result = await handler_for(server, tmp_path, segments=1)(ctx)
    assert filecmp.cmp(src, dest / src.name, shallow=False)
    assert not part.exists()
    assert result["bytes"] == src.stat().st_size


async def test_cancellation_stops_lftp_and_keeps_the_partial(
    seed_root: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "Big"
    src = seed_root / "files" / "Big Payload (2160p).bin"
    async with open_slow_ftp(seed_root, 512 * 1024) as server:  # 55 MB would take minutes
        ctx = make_ctx(tmp_path, f"/files/{src.name}", dest)
        handler = handler_for(server, tmp_path, segments=2)
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(handler, ctx)
                # Wait until bytes are flowing, then shut down.
                while not any(done > 0 for done, _t, _m in ctx.updates):
                    await trio.sleep(0.1)
                nursery.cancel_scope.cancel()
    assert not (dest / src.name).exists()
    staged = staging_path(dest, TransferParams(f"/files/{src.name}", "H", "M", str(dest)))
    assert staged.exists()
    assert processes_mentioning(str(staged)) == []  # the kill ladder left no lftp behind


async def test_mirror_progress_counts_bytes_and_names_lftps_current_file(
    seed_root: Path, tmp_path: Path
) -> None:
    # lftp prints no byte counts without a terminal: the bytes are counted in the staging tree,
    # the message is the file ``mirror -v`` announced ("Transferring file `…'").
    dest = tmp_path / "Movies"
    async with open_slow_ftp(seed_root, 256 * 1024) as server:
        ctx = make_ctx(tmp_path, "/files/My Movie (2024)", dest)
        handler = handler_for(server, tmp_path, threads=1, segments=1)
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(handler, ctx)
                while not any(m == "movie part (1).mkv" and d > 0 for d, _t, m in ctx.updates):
                    await trio.sleep(0.05)
                nursery.cancel_scope.cancel()
    folder = seed_root / "files" / "My Movie (2024)"
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert {t for _d, t, _m in ctx.updates} == {total}  # the probe's size
    assert not (dest / "My Movie (2024)").exists()


def processes_mentioning(text: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains ``text``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(proc.name))
    return found


async def test_hard_timeout_is_retryable_and_keeps_the_partial(
    seed_root: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "slow"
    name = "movie part (1).mkv"  # 3 MiB at 256 KiB/s: about 12 s, far over the limit
    async with open_slow_ftp(seed_root, 256 * 1024) as server:
        handler = handler_for(server, tmp_path, segments=1, timeout=4.0)
        ctx = make_ctx(tmp_path, f"/files/My Movie (2024)/{name}", dest)
        with trio.fail_after(60), pytest.raises(RetryableError, match="timed out"):
            await handler(ctx)
    staged = staging_path(
        dest, TransferParams(f"/files/My Movie (2024)/{name}", "H", "M", str(dest))
    )
    assert not (dest / name).exists()
    assert processes_mentioning(str(dest)) == []
    # Progress was reported while bytes arrived: done grows, total is the server's size.
    total = (seed_root / "files" / "My Movie (2024)" / name).stat().st_size
    moving = [(done, t) for done, t, _m in ctx.updates if 0 < done < total]
    assert moving
    assert all(t == total for _d, t in moving)
    assert 0 < staged.stat().st_size < total  # kept for the next try to resume
