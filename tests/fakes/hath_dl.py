"""The gallery side of the fake H@H control server: ``/15/dl`` fetchqueue, the ``dlfetch`` and
``dlfails`` RPC actions, and an image server for gallery files (docs/hath-protocol.md §1.3, §6).

It extends :class:`fakes.hath_control.FakeControlServer` (real HTTP on 127.0.0.1 through
hypercorn) with:

* ``GET /15/dl?clientbuild=…&act=fetchqueue&add=…&cid=…&acttime=…&actkey=…`` — the actkey is
  checked as for ``/15/rpc`` (a wrong key gets ``INVALID_REQUEST``, a stale ``acttime``
  ``KEY_EXPIRED``). ``add`` = ``<gid>;<minxres>`` of the gallery at the head of the queue marks
  it done and removes it. The reply is the raw body: the head gallery's metadata, or
  ``NO_PENDING_DOWNLOADS``. :meth:`GalleryQueue.script_raw` queues raw bodies to send instead
  (malformed replies, ``INVALID_REQUEST``).
* ``dlfetch`` (``add = <gid>;<page>;<fileindex>;<xres>;<n>``) → ``OK`` + the file's URL on
  ``/gfile/<gid>/<page>`` (or, for try ``n`` listed in the file's ``dlfetch_urls``, that URL
  instead: malformed-URL tests); unknown files get ``OK`` with no URL (a failure, §1.3).
* ``dlfails`` → ``OK``; each report's keys are kept in :attr:`GalleryQueue.dlfails`.
* ``GET /gfile/<gid>/<page>`` — the file's bytes with ``Content-Length``; per file a set of
  1-based request numbers that get a corrupted body, ``always_corrupt``, an HTTP ``status``,
  and a ``gate`` that holds a request until set.

Usage::

    async with open_fake_control(creds) as fake:
        queue = GalleryQueue.attach(fake)
        queue.add(FakeGallery.build(gid=1, title="x", sizes=[1000, 2000]))
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict, deque
from collections.abc import Sequence

import attrs
import trio

from fakes.hath_control import FakeControlServer, FakeReply, FakeRequest
from hathd.hath import protocol as p


@attrs.define(eq=False)
class FakeGalleryFile:
    """One gallery file as the fake serves it."""

    page: int
    fileindex: int
    data: bytes
    filename: str
    filetype: str = "jpg"
    xres: str = "org"
    hash_known: bool = True
    corrupt_requests: set[int] = attrs.field(factory=set)
    always_corrupt: bool = False
    status: int = 200
    gate: trio.Event | None = None
    dlfetch_urls: dict[int, str] = attrs.field(factory=dict)
    """URL that ``dlfetch`` try ``n`` (1-based, the last field of ``add``) answers instead."""
    hits: int = 0

    @property
    def sha1(self) -> str:
        return hashlib.sha1(self.data).hexdigest()

    def filelist_line(self) -> str:
        digest = self.sha1 if self.hash_known else "unknown"
        return f"{self.page} {self.fileindex} {self.xres} {digest} {self.filetype} {self.filename}"


@attrs.define(eq=False)
class FakeGallery:
    """A queued gallery."""

    gid: int
    title: str
    files: list[FakeGalleryFile]
    minxres: str = "org"
    information: str = "Uploader: fake\nTags: none\n"

    @classmethod
    def build(
        cls,
        gid: int,
        title: str,
        sizes: Sequence[int],
        *,
        minxres: str = "org",
        seed: int = 0,
    ) -> FakeGallery:
        """A gallery of ``len(sizes)`` files of random bytes (``sizes`` in bytes), named
        ``001``, ``002``, …; file indexes ``gid*1000 + page``."""
        rng = random.Random(seed or gid)
        files = [
            FakeGalleryFile(
                page=i,
                fileindex=gid * 1000 + i,
                data=rng.randbytes(size) if size else b"",
                filename=f"{i:03d}",
                xres=minxres,
            )
            for i, size in enumerate(sizes, start=1)
        ]
        return cls(gid, title, files, minxres)

    @property
    def queue_add(self) -> str:
        return f"{self.gid};{self.minxres}"

    def metadata(self) -> str:
        """The ``fetchqueue`` body for this gallery (docs/hath-protocol.md §6)."""
        lines = [
            f"GID {self.gid}",
            f"FILECOUNT {len(self.files)}",
            f"MINXRES {self.minxres}",
            f"TITLE {self.title}",
            "FILELIST",
            *(f.filelist_line() for f in self.files),
            "INFORMATION",
        ]
        return "\n".join(lines) + "\n" + self.information

    def file(self, page: int) -> FakeGalleryFile:
        return self.files[page - 1]


class GalleryQueue:
    """The downloader queue of a :class:`FakeControlServer`; see the module docstring."""

    def __init__(self, fake: FakeControlServer) -> None:
        self.fake = fake
        self.queue: deque[FakeGallery] = deque()
        self.known: dict[int, FakeGallery] = {}
        self.done: list[str] = []
        self.fetchqueue_adds: list[str] = []
        self.dlfetch_adds: list[str] = []
        self.dlfails: list[list[str]] = []
        self.rejected: int = 0
        self._raw: deque[bytes] = deque()
        self._hit_event = trio.Event()
        self._queue_event = trio.Event()
        self.hits: dict[tuple[int, int], int] = defaultdict(int)

    @classmethod
    def attach(cls, fake: FakeControlServer) -> GalleryQueue:
        queue = cls(fake)
        fake.add_route("/15/dl", queue._fetchqueue)
        fake.add_route("/gfile/", queue._file)
        fake.add_action("dlfetch", queue._dlfetch)
        fake.add_action("dlfails", queue._dlfails)
        return queue

    def add(self, gallery: FakeGallery) -> FakeGallery:
        self.queue.append(gallery)
        self.known[gallery.gid] = gallery
        return gallery

    def script_raw(self, *bodies: bytes) -> None:
        """Send these raw bodies to the next ``fetchqueue`` requests instead of the queue."""
        self._raw.extend(bodies)

    def file_url(self, gid: int, page: int) -> str:
        return f"{self.fake.url}/gfile/{gid}/{page}"

    async def wait_hits(self, total: int) -> None:
        """Wait until the image server has answered ``total`` requests in all."""
        while sum(self.hits.values()) < total:
            await self._hit_event.wait()

    async def wait_done(self, count: int) -> None:
        """Wait until ``count`` galleries have been marked done through ``fetchqueue``."""
        while len(self.done) < count:
            await self._queue_event.wait()

    # -------------------------------------------------------------------- handlers

    def _check(self, req: FakeRequest, act: str) -> FakeReply | None:
        try:
            t = int(req.query.get("acttime", ""))
            cid = int(req.query.get("cid", ""))
        except ValueError:
            return FakeReply.text("INVALID_REQUEST")
        want = p.actkey(act, req.add, cid, t, self.fake.creds.client_key)
        if (
            req.act != act
            or cid != self.fake.creds.client_id
            or req.query.get("actkey") != want
            or req.query.get("clientbuild") != str(p.CLIENT_BUILD)
        ):
            self.rejected += 1
            return FakeReply.text("INVALID_REQUEST")
        if abs(t - self.fake.server_time()) > self.fake.key_window:
            return FakeReply.text("KEY_EXPIRED")
        req.verified = True
        return None

    async def _fetchqueue(self, req: FakeRequest) -> FakeReply:
        bad = self._check(req, "fetchqueue")
        if bad is not None:
            return bad
        self.fetchqueue_adds.append(req.add)
        if req.add and self.queue and req.add == self.queue[0].queue_add:
            self.done.append(req.add)
            self.queue.popleft()
        self._queue_event.set()
        self._queue_event = trio.Event()
        if self._raw:
            return FakeReply(200, self._raw.popleft())
        if not self.queue:
            return FakeReply.text("NO_PENDING_DOWNLOADS")
        body = self.queue[0].metadata().encode("utf-8")
        return FakeReply(200, body, [(b"content-type", b"text/plain; charset=UTF-8")])

    async def _dlfetch(self, req: FakeRequest) -> FakeReply:
        self.dlfetch_adds.append(req.add)
        parts = req.add.split(";")
        try:
            gid, page, fileindex = int(parts[0]), int(parts[1]), int(parts[2])
            gallery = self.known[gid]
            gfile = gallery.file(page)
        except (ValueError, IndexError, KeyError):
            return FakeReply.text("OK")
        if len(parts) != 5 or gfile.fileindex != fileindex or parts[3] != gfile.xres:
            return FakeReply.text("OK")
        if parts[4].isdigit() and int(parts[4]) in gfile.dlfetch_urls:
            return FakeReply.text("OK", gfile.dlfetch_urls[int(parts[4])])
        return FakeReply.text("OK", self.file_url(gid, page))

    async def _dlfails(self, req: FakeRequest) -> FakeReply:
        self.dlfails.append(req.add.split(";"))
        return FakeReply.text("OK")

    async def _file(self, req: FakeRequest) -> FakeReply:
        try:
            _, _, gid_s, page_s = req.path.split("/", 3)
            gfile = self.known[int(gid_s)].file(int(page_s))
        except (ValueError, KeyError, IndexError):
            return FakeReply(404, b"no such file")
        gfile.hits += 1
        self.hits[(int(gid_s), int(page_s))] += 1
        self._hit_event.set()
        self._hit_event = trio.Event()
        if gfile.gate is not None:
            await gfile.gate.wait()
        if gfile.status != 200:
            return FakeReply(gfile.status, b"image server error")
        data = gfile.data
        if data and (gfile.always_corrupt or gfile.hits in gfile.corrupt_requests):
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        return FakeReply(200, data, [(b"content-type", b"image/jpeg")])
