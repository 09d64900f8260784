"""The ``download`` kind against a real HTTP/1.1 server on 127.0.0.1 (raw Trio sockets).

The server speaks HTTP/1.1 byte for byte (RFC 9112 framing; RFC 9110 Range / Content-Range)
and can cut a response half-way to test resuming.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from hathd.engine.api import JobState
from hathd.engine.config import RetryPresetConfig
from hathd.engine.download import (
    NAME_MAX,
    download_spec,
    part_path,
    resolve_destination,
    resume_validator,
)

SLOW_RETRY = RetryPresetConfig(delays=[3600.0], jitter=0.0, final_wait=None)
"""A job that fails once stays ``waiting`` for the rest of the test."""


def partial_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.name.endswith(".part"))


async def wait_state(engine: Any, job_id: str, state: str, timeout: float = 20) -> Any:
    with trio.fail_after(timeout):
        while (job := await engine.get(job_id)) is not None and job.state != state:
            await trio.sleep(0.01)
    return job


def download_root(rt: Any) -> Path:
    root: Path = rt.engine.download_root
    return root


async def test_download_completes_with_size_and_sha256(make_engine: Any, http_server: Any) -> None:
    async with make_engine() as (rt, engine):
        async with rt.bus.subscribe(["progress"], buffer=1000) as sub:
            spec = download_spec(
                http_server.url("/files/a%20b.bin"),
                dest="sub/dir",
                size=len(http_server.body),
                sha256=http_server.digest,
            )
            job = await engine.wait_final((await engine.submit(spec)).job.id, timeout=60)
            progress = []
            while True:
                try:
                    progress.append(sub._recv.receive_nowait().data)
                except trio.WouldBlock:
                    break
        assert job.state == JobState.DONE, job.error
        assert job.result is not None
        target = download_root(rt) / "sub" / "dir" / "a b.bin"
        assert job.result == {
            "path": str(target),
            "size": len(http_server.body),
            "sha256": http_server.digest,
            "resumed_from": 0,
            "already_present": False,
        }
        assert target.read_bytes() == http_server.body
        assert not list(target.parent.glob("*.part"))
        assert progress
        assert progress[-1]["done"] == len(http_server.body)
        assert progress[-1]["total"] == len(http_server.body)


async def test_download_resumes_with_range_after_the_connection_is_cut(
    make_engine: Any, http_server: Any
) -> None:
    http_server.cut_once.add("/cut.bin")
    async with make_engine() as (rt, engine):
        spec = download_spec(http_server.url("/cut.bin"), sha256=http_server.digest)
        job = await engine.wait_final((await engine.submit(spec)).job.id, timeout=60)
        assert job.state == JobState.DONE, job.error
        assert job.attempts == 2
        assert job.result is not None
        half = len(http_server.body) // 2
        kept = job.result["resumed_from"]
        assert 0 < kept <= half  # what arrived before the cut was kept, not fetched again
        first, second = http_server.requests
        assert "range" not in first[1]
        assert second[1]["range"] == f"bytes={kept}-"
        # resumed only if the remote file is still the one the first bytes came from
        assert second[1]["if-range"] == http_server.etag(http_server.body)
        assert job.checkpoint["validator"] == http_server.etag(http_server.body)
        assert (download_root(rt) / "cut.bin").read_bytes() == http_server.body
        assert partial_files(download_root(rt)) == []


async def test_a_changed_remote_file_is_fetched_again_from_byte_zero(
    make_engine: Any, http_server: Any
) -> None:
    # the file changes on the server between the cut and the resume: If-Range gets a 200
    http_server.cut_once.add("/changes.bin")
    first_body = http_server.body
    http_server.on_cut = lambda _path: setattr(http_server, "body", http_server.other_body)
    async with make_engine() as (rt, engine):
        spec = download_spec(http_server.url("/changes.bin"))
        job = await engine.wait_final((await engine.submit(spec)).job.id, timeout=60)
        assert job.state == JobState.DONE, job.error
        assert job.result is not None
        assert job.result["resumed_from"] == 0
        _first, second = list(http_server.request_headers("/changes.bin"))
        assert second["if-range"] == http_server.etag(first_body)
        assert second["range"].startswith("bytes=")
        assert (download_root(rt) / "changes.bin").read_bytes() == http_server.other_body
        assert job.checkpoint["validator"] == http_server.etag(http_server.other_body)


async def test_a_range_of_another_version_is_not_appended(
    make_engine: Any, http_server: Any
) -> None:
    # a server that ignores If-Range answers 206 with the new version's ETag: start over
    http_server.cut_once.add("/ignores.bin")
    http_server.ignore_if_range = True
    http_server.on_cut = lambda _path: setattr(http_server, "body", http_server.other_body)
    async with make_engine() as (rt, engine):
        spec = download_spec(http_server.url("/ignores.bin"))
        job = await engine.wait_final((await engine.submit(spec)).job.id, timeout=60)
        assert job.state == JobState.DONE, job.error
        assert job.attempts == 3
        _first, second, third = http_server.request_headers("/ignores.bin")
        assert "range" in second  # answered 206 from the new version: not appended
        assert "range" not in third
        assert (download_root(rt) / "ignores.bin").read_bytes() == http_server.other_body


async def test_two_urls_with_the_same_file_name_at_once_do_not_mix(
    make_engine: Any, http_server: Any
) -> None:
    # two hosts (two lanes, so they run at the same time) serve different files named same.bin
    http_server.host_bodies["localhost"] = http_server.other_body
    http_server.chunk_delay = 0.05
    async with make_engine() as (rt, engine):
        subs = await engine.submit_many(
            [
                download_spec(http_server.url("/same.bin")),
                download_spec(http_server.url("/same.bin", host="localhost")),
            ]
        )
        jobs = [await engine.wait_final(s.job.id, timeout=60) for s in subs]
        assert [j.state for j in jobs] == [JobState.DONE, JobState.DONE], [j.error for j in jobs]
        for job, body in zip(jobs, (http_server.body, http_server.other_body), strict=True):
            assert job.result is not None
            assert await trio.Path(job.result["path"]).read_bytes() == body
            assert job.attempts == 1
        names = sorted(p.name for p in download_root(rt).iterdir())
        assert names == ["same (1).bin", "same.bin"]


async def test_a_cancelled_jobs_partial_file_is_removed_not_resumed_by_another_url(
    make_engine: Any, http_server: Any
) -> None:
    http_server.cut_once.add("/same.bin")
    http_server.host_bodies["localhost"] = http_server.other_body
    async with make_engine(retry={"slow": SLOW_RETRY}) as (rt, engine):
        root = download_root(rt)
        first = attrs.evolve(download_spec(http_server.url("/same.bin")), retry_preset="slow")
        a = (await engine.submit(first)).job.id
        await wait_state(engine, a, "waiting")
        (kept,) = partial_files(root)
        assert kept.name == f".same.bin.{a}.part"  # hidden, one per job
        assert kept.stat().st_size > 0
        await engine.cancel_job(a)
        assert partial_files(root) == []
        second = download_spec(http_server.url("/same.bin", host="localhost"))
        job = await engine.wait_final((await engine.submit(second)).job.id, timeout=60)
        assert job.state == JobState.DONE, job.error
        assert job.result is not None
        assert job.result["resumed_from"] == 0
        assert "range" not in list(http_server.request_headers("/same.bin"))[1]
        assert (root / "same.bin").read_bytes() == http_server.other_body


async def test_a_paused_job_keeps_its_partial_file_and_a_failed_one_loses_it(
    make_engine: Any, http_server: Any
) -> None:
    http_server.cut_once.update({"/kept.bin", "/gone.bin"})
    async with make_engine(retry={"slow": SLOW_RETRY}) as (rt, engine):
        root = download_root(rt)
        kept = attrs.evolve(download_spec(http_server.url("/kept.bin")), retry_preset="slow")
        kept_id = (await engine.submit(kept)).job.id
        await wait_state(engine, kept_id, "waiting")
        await engine.pause_job(kept_id)
        assert [p.name for p in partial_files(root)] == [f".kept.bin.{kept_id}.part"]
        # the second try of gone.bin gets a 404: a permanent failure
        http_server.on_cut = lambda path: http_server.missing.add(path)
        gone = (await engine.submit(download_spec(http_server.url("/gone.bin")))).job.id
        job = await engine.wait_final(gone, timeout=60)
        assert job.state == JobState.FAILED
        assert job.attempts == 2
        with trio.fail_after(10):  # the final hook runs just after the state is stored
            while len(partial_files(root)) > 1:
                await trio.sleep(0.01)
        assert [p.name for p in partial_files(root)] == [f".kept.bin.{kept_id}.part"]
        await engine.resume_job(kept_id)
        job = await engine.wait_final(kept_id, timeout=60)
        assert job.state == JobState.DONE, job.error
        assert job.result is not None
        assert job.result["resumed_from"] > 0
        assert (root / "kept.bin").read_bytes() == http_server.body
        assert partial_files(root) == []


def test_partial_file_names_fit_in_a_file_name() -> None:
    job_id = "0123456789abcdef"
    assert part_path(Path("/r/x.bin"), job_id) == Path(f"/r/.x.bin.{job_id}.part")
    long = "é" * 120  # 240 bytes, the longest file name a download may have
    name = part_path(Path("/r") / long, job_id).name
    assert len(name.encode()) <= NAME_MAX
    assert name.endswith(f".{job_id}.part")
    assert name.startswith(".é")
    with pytest.raises(ValueError, match=r"^filename:"):
        resolve_destination(Path("/r"), {"filename": "a" * 241}, "http://h/x")


def test_resume_validator_prefers_a_strong_etag() -> None:
    import httpx

    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert resume_validator(httpx.Headers({"ETag": '"v1"', "Last-Modified": date})) == '"v1"'
    later = "Wed, 21 Oct 2015 07:28:01 GMT"
    weak_etag = {"ETag": 'W/"v1"', "Last-Modified": date}
    # a date is strong only when the response was sent at least 1 s after it (RFC 9110 §8.8.2.2)
    assert resume_validator(httpx.Headers({**weak_etag, "Date": later})) == date
    assert resume_validator(httpx.Headers({**weak_etag, "Date": date})) is None
    assert resume_validator(httpx.Headers(weak_etag)) is None
    assert resume_validator(httpx.Headers({**weak_etag, "Date": "garbage"})) is None
    assert resume_validator(httpx.Headers({"ETag": 'W/"v1"'})) is None
    assert resume_validator(httpx.Headers({})) is None


async def test_wrong_sha256_fails_and_leaves_no_file(make_engine: Any, http_server: Any) -> None:
    async with make_engine() as (rt, engine):
        spec = download_spec(http_server.url("/x.bin"), sha256="0" * 64)
        job = await engine.wait_final((await engine.submit(spec)).job.id, timeout=60)
        assert job.state == JobState.FAILED
        assert job.error_class == "permanent"
        assert "sha256 mismatch" in (job.error or "")
        assert job.attempts == 1
        assert list(download_root(rt).iterdir()) == []


async def test_announced_size_other_than_expected_fails_before_any_byte(
    make_engine: Any, http_server: Any
) -> None:
    async with make_engine() as (rt, engine):
        spec = download_spec(http_server.url("/sized.bin"), size=len(http_server.body) + 1)
        job = await engine.wait_final((await engine.submit(spec)).job.id, timeout=60)
        assert job.state == JobState.FAILED
        assert job.error_class == "permanent"
        assert job.error is not None
        assert f"server announces {len(http_server.body)} bytes" in job.error
        assert list(download_root(rt).iterdir()) == []


async def test_missing_url_fails_permanently(make_engine: Any, http_server: Any) -> None:
    async with make_engine() as (_rt, engine):
        spec = download_spec(http_server.url("/missing"))
        job = await engine.wait_final((await engine.submit(spec)).job.id, timeout=60)
        assert job.state == JobState.FAILED
        assert job.attempts == 1
        assert "404" in (job.error or "")


async def test_rate_limited_download_waits_for_retry_after(
    make_engine: Any, http_server: Any
) -> None:
    # Retry-After 2 s is longer than both the fast retry (0.05 s) and the lane's first
    # rate-limit backoff (1 s): only honouring it explains a 2 s gap
    http_server.rate_limited_once.add("/slow.bin")
    http_server.retry_after = 2
    async with make_engine() as (rt, engine):
        spec = download_spec(http_server.url("/slow.bin"))
        sub = await engine.submit(spec)
        job = await engine.wait_final(sub.job.id, timeout=60)
        assert job.state == JobState.DONE
        assert job.attempts == 1  # the rate-limited try is not counted
        first, second = http_server.times
        assert second - first >= 1.9
        assert (download_root(rt) / "slow.bin").read_bytes() == http_server.body


async def test_file_already_present_with_the_sha256_is_not_fetched_again(
    make_engine: Any, http_server: Any
) -> None:
    async with make_engine() as (rt, engine):
        (download_root(rt) / "have.bin").write_bytes(http_server.body)
        spec = download_spec(http_server.url("/have.bin"), sha256=http_server.digest)
        job = await engine.wait_final((await engine.submit(spec)).job.id, timeout=60)
        assert job.state == JobState.DONE
        assert job.result is not None
        assert job.result["already_present"] is True
        assert http_server.requests == []
        assert sorted(p.name for p in download_root(rt).iterdir()) == ["have.bin"]


async def test_existing_file_is_not_overwritten(make_engine: Any, http_server: Any) -> None:
    async with make_engine() as (rt, engine):
        existing = download_root(rt) / "keep.bin"
        existing.write_bytes(b"mine")
        spec = download_spec(http_server.url("/keep.bin"))
        job = await engine.wait_final((await engine.submit(spec)).job.id, timeout=60)
        assert job.state == JobState.DONE
        assert existing.read_bytes() == b"mine"
        assert (download_root(rt) / "keep (1).bin").read_bytes() == http_server.body


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"dest": "../outside"}, "dest"),
        ({"dest": "a/../../outside"}, "dest"),
        ({"dest": "/etc"}, "dest"),
        ({"filename": "../x"}, "filename"),
        ({"filename": ".."}, "filename"),
        ({"sha256": "xyz"}, "sha256"),
        ({"size": -1}, "size"),
    ],
)
async def test_escapes_and_bad_params_are_refused_at_submit(
    make_engine: Any, http_server: Any, params: dict[str, Any], field: str
) -> None:
    async with make_engine() as (rt, engine):
        spec = download_spec(http_server.url("/x.bin"))
        spec = attrs.evolve(spec, params=params)
        with pytest.raises(ValueError, match=rf"^{field}:"):
            await engine.submit(spec)
        _jobs, total = await engine.list_jobs()
        assert total == 0
        assert http_server.requests == []
        assert not (download_root(rt).parent / "outside").exists()


def test_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(ValueError, match=r"^dest:"):
        resolve_destination(root, {"dest": "link"}, "http://h/x")
    inside = resolve_destination(root, {"dest": "a/b"}, "http://h/file.txt")
    assert inside == (root / "a" / "b" / "file.txt").resolve()


async def test_escape_in_a_stored_job_fails_without_writing(
    make_engine: Any, http_server: Any
) -> None:
    # a job row that bypassed submit validation (e.g. an older version) is still refused
    async with make_engine() as (rt, engine):
        spec = download_spec(http_server.url("/x.bin"))
        sub = await engine.submit(spec)
        job = await engine.wait_final(sub.job.id, timeout=60)
        assert job.state == JobState.DONE
        await rt.store.execute(
            "UPDATE engine_jobs SET params = ? WHERE id = ?", ('{"dest": "../../x"}', sub.job.id)
        )
        await engine.retry_job(sub.job.id)
        job = await engine.wait_final(sub.job.id, timeout=60)
        assert job.state == JobState.FAILED
        assert "escapes" in (job.error or "")


def test_bad_urls_name_the_target_field() -> None:
    for url in ("ftp://x/y", "http:///nohost", "not a url"):
        with pytest.raises(ValueError, match=r"^target:"):
            download_spec(url)
