"""The subprocess spawner: real child processes (the Python interpreter running small scripts)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
import trio

from hathd import spawn
from hathd.spawn import SpawnError, SpawnResult

PY = sys.executable


def py(code: str) -> list[str]:
    return [PY, "-c", code]


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def entries(folder: Path) -> list[Path]:
    return list(folder.iterdir())


def exists(path: Path) -> bool:
    return path.exists()


async def wait_dead(pid: int) -> None:
    """Poll /proc until ``pid`` is gone (a signal's delivery has no event to wait on)."""
    for _ in range(400):
        if not alive(pid):
            return
        await trio.sleep(0.05)
    raise AssertionError(f"pid {pid} still alive")


async def test_captures_stdout_stderr_and_status() -> None:
    code = "import sys; print('out 1'); print('err 1', file=sys.stderr); sys.exit(3)"
    with trio.fail_after(30):
        res = await spawn.run(py(code))
    assert isinstance(res, SpawnResult)
    assert res.argv == (PY, "-c", code)
    assert res.returncode == 3
    assert res.stdout == "out 1\n"
    assert res.stderr == "err 1\n"
    assert not res.ok
    assert not res.timed_out
    assert res.ended_by is None
    assert res.duration > 0
    assert res.tail() == "err 1"


async def test_argv_is_not_interpreted_by_a_shell(tmp_path: Path) -> None:
    tricky = "a b; rm -rf $HOME `x` (y) 'z'"
    res = await spawn.run([*py("import sys; print(sys.argv[1])"), tricky], cwd=tmp_path)
    assert res.ok
    assert res.stdout == tricky + "\n"


async def test_env_overrides_and_unset() -> None:
    code = "import os; print(os.environ.get('HATHD_T_A'), os.environ.get('HATHD_T_B'))"
    res = await spawn.run(
        py(code),
        env={"HATHD_T_A": "set here", "HATHD_T_B": None},
        base_env={**os.environ, "HATHD_T_B": "inherited"},
    )
    assert res.stdout == "set here None\n"


async def test_hathd_variables_do_not_reach_children(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HATHD_HATH__CLIENT_KEY", "daemon-secret")
    monkeypatch.setenv("SPAWN_TEST_KEPT", "kept")
    code = (
        "import os; print(os.environ.get('HATHD_HATH__CLIENT_KEY'), os.environ['SPAWN_TEST_KEPT'])"
    )
    res = await spawn.run(py(code))
    assert res.stdout == "None kept\n"


async def test_private_workdir_is_created_and_removed(tmp_path: Path) -> None:
    res = await spawn.run(
        py("import os; open('x', 'w').write('1'); print(os.getcwd())"), tmp_root=tmp_path
    )
    workdir = Path(res.stdout.strip())
    assert workdir.parent == tmp_path
    assert not exists(workdir)
    assert entries(tmp_path) == []


async def test_given_workdir_is_used_and_kept(tmp_path: Path) -> None:
    res = await spawn.run(py("open('made', 'w').write('1')"), cwd=tmp_path)
    assert res.ok
    assert (tmp_path / "made").read_text() == "1"


async def test_private_workdir_removed_on_cancel(tmp_path: Path) -> None:
    with trio.move_on_after(1):
        await spawn.run(py("import time; time.sleep(60)"), tmp_root=tmp_path, term_grace=5)
    assert entries(tmp_path) == []


async def test_secret_on_argv_is_refused() -> None:
    with pytest.raises(SpawnError, match="secret"):
        await spawn.run([PY, "-c", "pass", "--password=hunter2"], secrets=["hunter2"])


async def test_very_short_secrets_are_ignored() -> None:
    res = await spawn.run([PY, "-c", "print('abc')", "x"], secrets=["x", "abc"])
    assert res.stdout == "abc\n"


async def test_secrets_are_redacted_from_output_and_lines() -> None:
    lines: list[str] = []
    res = await spawn.run(
        py("import os,sys; p=os.environ['PW']; print('pw is', p); print(p, file=sys.stderr)"),
        env={"PW": "hunter2"},
        secrets=["hunter2"],
        on_stdout_line=lines.append,
    )
    assert res.stdout == "pw is ***\n"
    assert res.stderr == "***\n"
    assert lines == ["pw is ***"]


async def test_capture_is_bounded_and_keeps_the_tail() -> None:
    code = "import sys; sys.stdout.write('a' * 3_000_000 + 'THE END')"
    res = await spawn.run(py(code), capture_limit=1000)
    assert res.ok
    assert len(res.stdout) == 1000
    assert res.stdout.endswith("aTHE END")
    assert res.stdout_truncated
    assert not res.stderr_truncated


async def test_line_callback_splits_on_newline_and_carriage_return() -> None:
    out: list[str] = []
    err: list[str] = []
    code = "import sys; sys.stdout.write('one\\ntwo\\r10%\\r20%\\nlast'); sys.stderr.write('e1\\n')"
    res = await spawn.run(py(code), on_stdout_line=out.append, on_stderr_line=err.append)
    assert res.ok
    assert out == ["one", "two", "10%", "20%", "last"]
    assert err == ["e1"]


async def test_failing_callback_does_not_lose_output(caplog: pytest.LogCaptureFixture) -> None:
    def boom(line: str) -> None:
        raise ValueError(line)

    res = await spawn.run(py("print('a'); print('b')"), on_stdout_line=boom)
    assert res.ok
    assert res.stdout == "a\nb\n"
    assert "callback failed" in caplog.text


async def test_stdin_bytes_are_delivered_without_deadlock() -> None:
    data = os.urandom(1 << 20).hex().encode()  # 2 MiB, more than any pipe buffer
    code = "import sys; d=sys.stdin.buffer.read(); sys.stdout.write(str(len(d)))"
    with trio.fail_after(60):
        res = await spawn.run(py(code), stdin=data)
    assert res.stdout == str(len(data))


async def test_missing_program_raises_spawn_error(tmp_path: Path) -> None:
    with pytest.raises(SpawnError, match="cannot start"):
        await spawn.run([str(tmp_path / "no-such-program")])


async def test_timeout_runs_the_ladder_sigterm() -> None:
    with trio.fail_after(30):
        res = await spawn.run(py("import time; time.sleep(60)"), timeout=0.5)
    assert res.timed_out
    assert res.ended_by == "term"
    assert res.returncode == -signal.SIGTERM
    assert not res.ok


async def test_timeout_escalates_to_sigkill_when_term_is_ignored() -> None:
    code = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    ready = trio.Event()

    def on_line(line: str) -> None:
        if line == "ready":
            ready.set()

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            results: list[SpawnResult] = []

            async def go() -> None:
                results.append(
                    await spawn.run(py(code), timeout=3, term_grace=0.5, on_stdout_line=on_line)
                )

            nursery.start_soon(go)
            await ready.wait()
    (res,) = results
    assert res.timed_out
    assert res.ended_by == "kill"
    assert res.returncode == -signal.SIGKILL


async def test_cancel_closes_held_stdin_first(tmp_path: Path) -> None:
    marker = tmp_path / "eof"
    code = (
        "import sys; print('up', flush=True); sys.stdin.read(); "
        f"open({str(marker)!r}, 'w').write('eof seen')"
    )
    up = trio.Event()

    def on_line(line: str) -> None:
        if line == "up":
            up.set()

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:

            async def go() -> None:
                await spawn.run(py(code), hold_stdin=True, on_stdout_line=on_line, term_grace=9)

            nursery.start_soon(go)
            await up.wait()
            nursery.cancel_scope.cancel()
    # The child saw EOF on stdin (the first step of the ladder) and exited on its own.
    assert marker.read_text() == "eof seen"


async def test_cancel_kills_the_whole_process_group() -> None:
    # The child starts a grandchild (same process group) and reports both pids.
    code = (
        "import subprocess, sys, time, os; "
        "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print(os.getpid(), g.pid, flush=True); time.sleep(60)"
    )
    pids: list[int] = []
    got = trio.Event()

    def on_line(line: str) -> None:
        pids.extend(int(p) for p in line.split())
        got.set()

    with trio.fail_after(30):
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lambda: spawn.run(py(code), on_stdout_line=on_line))
                await got.wait()
                scope.cancel()
        assert scope.cancelled_caught
        child, grandchild = pids
        await wait_dead(child)
        await wait_dead(grandchild)


async def test_straggler_holding_the_pipe_is_swept() -> None:
    # The child exits at once, leaving a grandchild that keeps stdout open for a minute.
    code = (
        "import subprocess, sys; "
        "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print(g.pid, flush=True)"
    )
    with trio.fail_after(30):
        res = await spawn.run(py(code), drain_grace=0.5)
    assert res.ok
    await wait_dead(int(res.stdout.split()[0]))


async def test_write_secret_file_mode_0600(tmp_path: Path) -> None:
    path = await spawn.write_secret_file(tmp_path, ".netrc", "machine h login u password p\n")
    assert path.read_text() == "machine h login u password p\n"
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        await spawn.write_secret_file(tmp_path, ".netrc", "again")


def test_tail_prefers_stderr_and_limits_lines() -> None:
    res = SpawnResult(("x",), 1, "o1\no2\n", "e1\n\ne2\re3\ne4\n", 0.1)
    assert res.tail(2) == "e3 | e4"
    assert SpawnResult(("x",), 1, "o1\no2\n", "", 0.1).tail() == "o1 | o2"
    assert SpawnResult(("x",), 1, "", "", 0.1).tail() == ""
