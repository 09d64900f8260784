"""Local thumbnails: Pillow in worker threads, at most ``limit`` at once.

:func:`make_thumbnail` is the synchronous core (open, ``Image.thumbnail`` — which also uses
the JPEG decoder's draft mode, decoding a 4 MP JPEG at 1/2, 1/4 or 1/8 scale when the
target is small enough — convert, save); :class:`Thumbnailer` runs it through
``trio.to_thread.run_sync`` behind a ``trio.CapacityLimiter``, so a batch of large images
cannot occupy every thread nor hold more than ``limit`` decoded images in memory.

Sizes are in pixels; a thumbnail fits in ``size`` × ``size`` with the aspect ratio kept and
is never larger than the image (Pillow's ``thumbnail()`` semantics,
https://pillow.readthedocs.io/en/stable/reference/Image.html#PIL.Image.Image.thumbnail).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import attrs
import trio
from PIL import Image, ImageOps, UnidentifiedImageError

from hathd.errors import PermanentError
from hathd.recipes.model import ThumbnailSpec

MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
EXTENSION = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
MAX_PIXELS = 100_000_000
"""Images above this many pixels are refused (a decompression bomb), not decoded."""


@attrs.frozen
class Thumbnail:
    """A thumbnail written to ``path``: ``width`` × ``height`` pixels, ``size`` bytes, in
    ``format`` (``mime``)."""

    path: Path
    width: int
    height: int
    size: int
    format: str

    @property
    def mime(self) -> str:
        """The MIME type of :attr:`format`."""
        return MIME[self.format]


def make_thumbnail(source: Path, dest: Path, spec: ThumbnailSpec) -> Thumbnail:
    """Write a thumbnail of the image at ``source`` to ``dest`` (synchronous; run it in a
    thread). EXIF orientation is applied; images with transparency become RGB on white
    for JPEG.

    :raises PermanentError: ``source`` is not an image Pillow can read, or is larger than
        :data:`MAX_PIXELS`.
    """
    try:
        with Image.open(source) as opened:
            if opened.width * opened.height > MAX_PIXELS:
                raise PermanentError(
                    f"{source.name}: {opened.width}x{opened.height} is too large for a thumbnail"
                )
            opened.thumbnail((spec.size, spec.size))
            image = ImageOps.exif_transpose(opened)
            if spec.format == "JPEG" and image.mode not in ("RGB", "L"):
                background = Image.new("RGB", image.size, "white")
                rgba = image.convert("RGBA")
                background.paste(rgba, mask=rgba.getchannel("A"))
                image = background
            options: dict[str, int] = {}
            if spec.format in ("JPEG", "WEBP"):
                options["quality"] = spec.quality
            image.save(dest, spec.format, **options)
            width, height = image.size
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise PermanentError(f"{source.name}: cannot make a thumbnail: {exc}") from None
    return Thumbnail(dest, width, height, dest.stat().st_size, spec.format)


class Thumbnailer:
    """Makes thumbnails in worker threads, at most ``limit`` at once (default: the number of
    CPUs), into a private temporary folder (made on first use) removed by :meth:`close`."""

    def __init__(self, limit: int | None = None) -> None:
        self.limiter = trio.CapacityLimiter(limit or os.cpu_count() or 2)
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._count = 0

    async def make(self, source: Path, spec: ThumbnailSpec) -> Thumbnail:
        """A thumbnail of ``source`` as ``spec`` says; delete it with :meth:`discard`.

        :raises PermanentError: see :func:`make_thumbnail`.
        """
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="hathd-thumbs-")
        self._count += 1
        dest = Path(self._dir.name) / f"{self._count}.{EXTENSION[spec.format]}"
        return await trio.to_thread.run_sync(
            make_thumbnail, source, dest, spec, limiter=self.limiter
        )

    @staticmethod
    def discard(thumb: Thumbnail) -> None:
        """Remove the thumbnail's file (once it is sent)."""
        thumb.path.unlink(missing_ok=True)

    def close(self) -> None:
        """Remove the temporary folder and whatever is left in it."""
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
