"""Reading a cached file for a plain hit without a worker-thread trip when the kernel has it.

A worker-thread trip (``trio.to_thread.run_sync``) costs tens of microseconds of scheduling and
GIL hand-over, more than reading a 60 KB file that sits in the page cache. So a plain hit is
read on the Trio thread with ``preadv2(RWF_NOWAIT)`` (Linux 4.14+,
https://man7.org/linux/man-pages/man2/preadv2.2.html), which copies only what is already in the
page cache and never waits for the disk; whatever is missing (a cold file) is read by one
worker-thread trip. The ``open`` stays on the Trio thread: it needs the directory entries and
inode, which a node serving its hot set has cached (nginx opens files on its event loop too).

The body goes out in pieces of :data:`PIECE` bytes, each read straight into a reused buffer
(the first piece after the response head), so a hit allocates nothing per request, copies
nothing besides the kernel's, and holds at most one piece in memory per connection.
"""

from __future__ import annotations

import os

PIECE = 256 * 1024
"""Bytes read and sent per step of a hit (the size of a pooled buffer)."""
POOL_SIZE = 64
"""Free buffers kept for reuse (at most ``POOL_SIZE * PIECE`` bytes idle, 16 MiB)."""
INLINE_READS = hasattr(os, "RWF_NOWAIT")
"""Whether this platform offers ``RWF_NOWAIT`` (else every read takes the worker thread)."""


def open_hit(path: str | os.PathLike[str], size: int) -> tuple[int, float] | None:
    """Open a cached file read-only: ``(fd, mtime)`` if it exists with ``size`` bytes (the hit
    rule, docs/hath-protocol.md §3.3), else ``None`` (nothing left open). Does not block on
    data; may block on a cold directory lookup."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        return None
    if st.st_size != size:
        os.close(fd)
        return None
    return fd, st.st_mtime


def read_cached(fd: int, view: memoryview, offset: int = 0) -> int:
    """Copy what the page cache holds of ``fd`` from ``offset`` on into ``view``; the bytes
    read (0 when nothing is cached or the platform lacks ``RWF_NOWAIT``). Never waits for
    disk."""
    if not INLINE_READS or not view:
        return 0
    try:
        return os.preadv(fd, [view], offset, os.RWF_NOWAIT)
    except BlockingIOError:
        return 0
    except OSError:
        return 0


def read_rest(fd: int, view: memoryview, done: int, offset: int = 0) -> bool:
    """Fill ``view[done:]`` with the file's bytes from ``offset + done`` on (blocking: run in a
    worker thread); ``False`` if the file ended early or cannot be read."""
    total = len(view)
    try:
        while done < total:
            n = os.preadv(fd, [view[done:]], offset + done)
            if n <= 0:
                return False
            done += n
    except OSError:
        return False
    return True


class BufferPool:
    """Reused :data:`PIECE`-byte buffers (Trio thread only): :meth:`take` one, :meth:`give`
    it back when its bytes have been sent."""

    def __init__(self, keep: int = POOL_SIZE) -> None:
        self.keep = keep
        self._free: list[bytearray] = []

    def take(self) -> bytearray:
        return self._free.pop() if self._free else bytearray(PIECE)

    def give(self, buf: bytearray) -> None:
        if len(self._free) < self.keep:
            self._free.append(buf)
