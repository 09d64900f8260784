"""HLS episodes through yt-dlp used as a library, in a worker thread.

yt-dlp (``yt_dlp.YoutubeDL``, documented in its README "Embedding yt-dlp") fetches the
playlist (RFC 8216) and its segments with its native HLS downloader, then ffmpeg remuxes the
MPEG-TS segments into MP4 (its ``FFmpegVideoRemuxer`` post-processor). Progress hooks are
mapped to the job's progress; cancellation of the Trio task sets a flag that the next hook call
turns into an exception inside the worker thread, so the thread ends promptly and the task
then sees its cancellation.
"""

from __future__ import annotations

import gc
import io
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

log = logging.getLogger(__name__)

HOOK_INTERVAL = 0.25
"""Seconds between two progress reports from the worker thread."""


class HlsStopped(Exception):
    """Raised inside the worker thread by a progress hook once the job is cancelled."""


class _Logger:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def info(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def warning(self, msg: str) -> None:
        log.debug("yt-dlp warning: %s", msg)

    def error(self, msg: str) -> None:
        self.errors.append(msg)


def _work(
    url: str,
    headers: dict[str, str],
    workdir: Path,
    ffmpeg: str,
    stop: threading.Event,
    report: Callable[[int, int | None], None],
    max_bytes: int | None,
) -> tuple[Path | None, str | None]:
    from yt_dlp import YoutubeDL  # type: ignore[import-untyped]

    logger = _Logger()
    last = 0.0

    def hook(d: dict[str, Any]) -> None:
        nonlocal last
        if stop.is_set():
            raise HlsStopped("cancelled")
        if d.get("status") != "downloading":
            return
        now = time.monotonic()
        if now - last < HOOK_INTERVAL:
            return
        last = now
        done = int(d.get("downloaded_bytes") or 0)
        total = d.get("total_bytes") or d.get("total_bytes_estimate")
        report(done, int(total) if total else None)

    opts: dict[str, Any] = {
        "outtmpl": str(workdir / "episode.%(ext)s"),
        "paths": {"home": str(workdir), "temp": str(workdir)},
        "http_headers": headers,
        "force_generic_extractor": True,
        "hls_prefer_native": True,
        "ffmpeg_location": ffmpeg,
        "postprocessors": [{"key": "FFmpegVideoRemuxer", "preferedformat": "mp4"}],
        "progress_hooks": [hook],
        "logger": logger,
        "quiet": True,
        "noprogress": True,
        "noplaylist": True,
        "cachedir": False,
        "socket_timeout": 30,
        "retries": 2,
        "fragment_retries": 3,
        "skip_unavailable_fragments": False,
        "overwrites": True,
    }
    if max_bytes is not None:
        opts["max_filesize"] = max_bytes
    try:
        with YoutubeDL(opts) as ydl:
            info = ydl.extract_info(url, download=True)
    except HlsStopped:
        _close_left_open(workdir)
        return None, "cancelled"
    except Exception as exc:  # yt-dlp's DownloadError and whatever a hook re-raised
        _close_left_open(workdir)
        if stop.is_set():
            return None, "cancelled"
        message = logger.errors[-1] if logger.errors else f"{type(exc).__name__}: {exc}"
        return None, message.removeprefix("ERROR: ")
    if stop.is_set():
        return None, "cancelled"
    found: Path | None = None
    for item in (info or {}).get("requested_downloads") or []:
        path = item.get("filepath")
        if path and Path(path).is_file():
            found = Path(path)
    if found is None:
        files = sorted(workdir.glob("episode.mp4")) or sorted(workdir.glob("episode.*"))
        found = files[0] if files else None
    if found is None:
        return None, "yt-dlp finished without an output file"
    return found, None


def _close_left_open(workdir: Path) -> None:
    """Close files under ``workdir`` that yt-dlp left open: its fragment downloader keeps the
    output stream open when a progress hook raises. Only runs after a failed or stopped
    download (it scans the objects the garbage collector tracks)."""
    prefix = os.path.realpath(workdir) + os.sep
    for obj in gc.get_objects():
        if not isinstance(obj, io.IOBase):
            continue
        try:
            if obj.closed:
                continue
            name = getattr(obj, "name", "")
            if isinstance(name, int):  # opened by os.fdopen: find the path of the descriptor
                name = os.readlink(f"/proc/self/fd/{name}")
            if isinstance(name, str) and os.path.realpath(name).startswith(prefix):
                obj.close()
        except (OSError, ValueError):
            continue


async def fetch_hls(
    url: str,
    headers: dict[str, str],
    workdir: Path,
    ffmpeg: str,
    progress: Callable[[int, int | None], None],
    *,
    max_bytes: int | None = None,
) -> tuple[Path | None, str | None]:
    """Download the HLS playlist ``url`` into ``workdir`` as MP4 (``max_bytes``: yt-dlp's
    ``max_filesize``, checked against the size it knows or estimates).

    :returns: ``(path, None)`` on success, ``(None, reason)`` when yt-dlp failed.
    Cancellation (a pause, shutdown) stops the worker thread at its next progress hook and
    propagates as ``trio.Cancelled``.
    """
    stop = threading.Event()

    def report(done: int, total: int | None) -> None:
        try:
            trio.from_thread.run_sync(progress, done, total)
        except trio.RunFinishedError:
            stop.set()

    outcome: tuple[Path | None, str | None] = (None, "not run")

    async def watch() -> None:
        try:
            await trio.sleep_forever()
        finally:
            stop.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        outcome = await trio.to_thread.run_sync(
            _work,
            url,
            headers,
            workdir,
            ffmpeg,
            stop,
            report,
            max_bytes,
            abandon_on_cancel=False,
        )
        nursery.cancel_scope.cancel()
    return outcome
