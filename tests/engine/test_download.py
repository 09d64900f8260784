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
from hathd.engine.download import (
    download_spec,
    parse_retry_after,
    resolve_destination,
)


def download_root(rt: Any) -> Path:
    root: Path = rt.extras["engine"].download_root
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
        assert (download_root(rt) / "cut.bin").read_bytes() == http_server.body


async def test_wrong_sha256_fails_and_leaves_no_file(make_engine: Any, http_server: Any) -> None:
    async with make_engine() as (rt, engine):
        spec = download_spec(http_server.url("/x.bin"), sha256="0" * 64)
        job = await engine.wait_final((await engine.submit(spec)).job.id, timeout=60)
        assert job.state == JobState.FAILED
        assert job.error_class == "permanent"
        assert "sha256 mismatch" in (job.error or "")
        assert job.attempts == 1
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
    http_server.rate_limited_once.add("/slow.bin")
    async with make_engine() as (rt, engine):
        spec = download_spec(http_server.url("/slow.bin"))
        sub = await engine.submit(spec)
        job = await engine.wait_final(sub.job.id, timeout=60)
        assert job.state == JobState.DONE
        assert job.attempts == 2
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


def test_retry_after_forms() -> None:
    import httpx

    assert parse_retry_after(httpx.Headers({"Retry-After": "120"})) == 120.0
    assert parse_retry_after(httpx.Headers({"RateLimit-Reset": "7"})) == 7.0
    date = parse_retry_after(
        httpx.Headers({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), now=1445412480.0 - 60
    )
    assert date == 60.0
    assert parse_retry_after(httpx.Headers({"Retry-After": "soon"})) is None
