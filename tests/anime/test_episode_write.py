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


def test_write_back_advice_loses_no_byte_of_an_appended_part_file(tmp_path: Path) -> None:
    # the advice after each batch starts write-back and drops clean pages: the file, read
    # again (from disk where dropped), is every batch in order, also when a resume appends
    path = tmp_path / "part"
    path.write_bytes(b"resumed-")
    batches = [[os.urandom(1 << 20), os.urandom(12_345)] for _ in range(5)]
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        written = len(b"resumed-")
        for batch in batches:
            start = max(0, written - (2 << 20))
            written += sum(map(len, batch))
            episode._write_batch(fd, batch, start)
        os.fsync(fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"resumed-" + b"".join(c for b in batches for c in b)
