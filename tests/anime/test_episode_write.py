"""The part file's batch write: one writev per batch, every byte in order."""

from __future__ import annotations

import os
from pathlib import Path

from hathd.anime import episode


def test_a_batch_longer_than_iov_max_is_written_whole_and_in_order(tmp_path: Path) -> None:
    chunks = [os.urandom(n) for n in (0, 1, 65_536, 3, 100_000)] * (episode._IOV_MAX // 4)
    path = tmp_path / "part"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        episode._write_all(fd, chunks[:7])
        episode._write_all(fd, chunks[7:])
    finally:
        os.close(fd)
    assert len(chunks) > episode._IOV_MAX
    assert path.read_bytes() == b"".join(chunks)
