"""The image server's request histogram and byte counter move with real requests."""

from __future__ import annotations

import os
from pathlib import Path

import trio
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fakes.hath_control import open_fake_control
from hathd.hath import protocol as p
from hathd.metrics import REGISTRY

from .helpers import CREDS, raw_request, run_node, sha1, split_response


def _scrape() -> dict[str, object]:
    families = text_string_to_metric_families(generate_latest(REGISTRY).decode())
    return {f.name: f for f in families}


def _sample(families: dict[str, object], name: str, sample: str, **labels: str) -> float:
    family = families[name]
    for s in family.samples:  # type: ignore[attr-defined]
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    return 0.0


async def test_hits_are_timed_and_their_bytes_counted(tmp_path: Path) -> None:
    data = os.urandom(54321)
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake, run_node(tmp_path, fake) as node:
            assert node.cache is not None
            assert node.server is not None
            fid = p.FileId.parse(f"{sha1(data)}-{len(data)}-640-480-jpg")
            src = tmp_path / "src.bin"
            src.write_bytes(data)
            assert await node.cache.import_file(src, fid)
            before = _scrape()
            for _ in range(2):
                req = f"GET {fake.keystamped_path(str(fid))} HTTP/1.1\r\nHost: x\r\n\r\n"
                raw = await raw_request(fake, node.server.port, req.encode())
                assert split_response(raw)[2] == data
            missing = await raw_request(fake, node.server.port, b"GET /nope HTTP/1.1\r\n\r\n")
            assert split_response(missing)[0].startswith("HTTP/1.1 404")
            after = _scrape()
    seconds = "hathd_hath_request_duration_seconds"
    sent = "hathd_hath_sent_bytes"
    assert before[seconds].type == "histogram"  # type: ignore[attr-defined]
    assert after[sent].type == "counter"  # type: ignore[attr-defined]
    count = seconds + "_count"
    assert (
        _sample(after, seconds, count, route="h") - _sample(before, seconds, count, route="h") == 2
    )
    assert (
        _sample(after, seconds, count, route="other")
        - _sample(before, seconds, count, route="other")
        == 1
    )
    moved = _sample(after, sent, sent + "_total", route="h") - _sample(
        before, sent, sent + "_total", route="h"
    )
    assert 2 * len(data) < moved < 2 * len(data) + 4096  # bodies plus two heads
