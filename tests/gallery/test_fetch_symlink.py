"""A gallery page is written through hathd.safepath: a gallery folder swapped for a symlink
out of the download root after it was made is never written through."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from hathd.gallery.fetch import fetch_to_file
from hathd.gallery.storage import make_gallery_dir
from hathd.safepath import UnsafePath

BODY = b"\xff\xd8 a page \xff\xd9"


async def serve_page(stream: trio.SocketStream) -> None:
    """One HTTP/1.1 response (RFC 9112 framing) to whatever request arrives."""
    async with stream:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return
            data += chunk
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n"
            + f"Content-Length: {len(BODY)}\r\nConnection: close\r\n\r\n".encode()
        )
        await stream.send_all(head + BODY)


async def test_page_is_not_written_through_a_planted_symlink(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    root = tmp_path / "download"
    outside = tmp_path / "outside"
    outside.mkdir()
    listeners = await nursery.start(partial(trio.serve_tcp, serve_page, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    url = f"http://127.0.0.1:{port}/h/abc/001.jpg"
    gdir = make_gallery_dir(root, "Gallery [1]", "1")
    async with httpx.AsyncClient() as client:
        got = await fetch_to_file(client, url, gdir / "001.jpg", lambda _d, _s: True, root=root)
        assert got.accepted
        assert (gdir / "001.jpg").read_bytes() == BODY
        os.rename(gdir, root / "moved")
        os.symlink(outside, gdir)
        with pytest.raises(UnsafePath):
            await fetch_to_file(client, url, gdir / "002.jpg", lambda _d, _s: True, root=root)
    assert os.listdir(outside) == []
