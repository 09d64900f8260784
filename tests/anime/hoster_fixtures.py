"""Hoster embed pages after the public pages' structure, and real media made by ffmpeg.

The page builders reproduce what each public hoster page carries where the resolvers look
(origins cited in each resolver's docstring): VOE's ``<script type="application/json">``
player data (encoded by :func:`voe_encode`, the inverse of the public decoding steps) and its
older base64 ``'hls'`` value and mirror redirect; Vidoza's ``sourcesCode``; Doodstream's
``pass_md5`` call and ``makePlay`` token; Streamtape's ``robotlink`` assembly; Filemoon's
p.a.c.k.e.r-packed JW Player setup (packed by :func:`pack_js`).
"""

from __future__ import annotations

import base64
import codecs
import json
import re
import shutil
import subprocess
from pathlib import Path

import attrs

from hathd.anime.hosters.voe import MARKS


def voe_encode(data: dict[str, object]) -> str:
    """VOE's obfuscation of ``data``: JSON, base64, reversed, every character shifted up by
    3, base64, separator marks interleaved, ROT13."""
    step = base64.b64encode(json.dumps(data).encode()).decode()[::-1]
    step = "".join(chr(ord(ch) + 3) for ch in step)
    step = base64.b64encode(step.encode()).decode()
    marked = "".join(
        ch + (MARKS[i % len(MARKS)] if i % 9 == 8 else "") for i, ch in enumerate(step)
    )
    return codecs.encode(marked, "rot13")


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out


def pack_js(source: str) -> str:
    """``source`` packed as Dean Edwards' p.a.c.k.e.r does with base 36: each word becomes
    the base-36 index of its entry in the keyword list (``source`` must not contain ``'``
    or backslashes)."""
    words: list[str] = []
    index: dict[str, int] = {}

    def sub(match: re.Match[str]) -> str:
        word = match.group(0)
        if word not in index:
            index[word] = len(words)
            words.append(word)
        return _base36(index[word])

    packed = re.sub(r"\b\w+\b", sub, source)
    return (
        "eval(function(p,a,c,k,e,d){while(c--)if(k[c])p=p.replace(new RegExp('\\\\b'+"
        "c.toString(a)+'\\\\b','g'),k[c]);return p}"
        f"('{packed}',36,{len(words)},'{'|'.join(words)}'.split('|')))"
    )


def _page(title: str, body: str) -> str:
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body><div id='player'></div>{body}</body></html>"
    )


def voe_page(stream_url: str) -> str:
    """A current VOE page: player data in an ``application/json`` script."""
    blob = voe_encode({"source": stream_url, "title": "episode.mp4"})
    return _page("VOE", f'<script type="application/json">["{blob}"]</script>')


def voe_legacy_page(stream_url: str) -> str:
    """An older VOE page: the HLS URL base64-encoded in ``'hls': '…'``."""
    value = base64.b64encode(stream_url.encode()).decode()
    return _page(
        "VOE", f"<script>var sources = {{'hls': '{value}', 'video_height': 720}};</script>"
    )


def voe_redirect_page(mirror_url: str) -> str:
    """VOE's first page that only sends the browser to a mirror."""
    return _page("VOE", f"<script>window.location.href = '{mirror_url}';</script>")


def vidoza_page(mp4_url: str) -> str:
    """A Vidoza embed page with its ``sourcesCode`` player setup."""
    return _page(
        "Vidoza",
        f'<video id="player"><source src="{mp4_url}" type="video/mp4"></video>'
        "<script>window.pData = { sourcesCode: [{ src: "
        f'"{mp4_url}", type: "video/mp4", label:"SD", res:"720"}}] }};</script>',
    )


def doodstream_page(pass_path: str, token: str) -> str:
    """A Doodstream embed page: the ``pass_md5`` call and the ``makePlay`` token."""
    return _page(
        "DoodStream",
        "<script>function makePlay(){for(var a='',t='ABC',n=t.length,o=0;10>o;o++)"
        f"a+=t.charAt(Math.floor(Math.random()*n));return a+'?token={token}&expiry='+Date.now();}}"
        f"$.get('{pass_path}', function(data){{ dsplayer.src({{src: data + makePlay()}}); }});"
        "</script>",
    )


def streamtape_page(get_video_url_without_token: str, token: str) -> str:
    """A Streamtape page assembling the ``get_video`` link in ``robotlink``."""
    head = get_video_url_without_token.split(":", 1)[1]  # "//host/get_video?…&token="
    return _page(
        "Streamtape",
        f'<div id="robotlink" style="display:none;">{head}xxx</div>'
        f"<script>document.getElementById('robotlink').innerHTML = '{head}"
        f"' + ('xcd{token}').substring(1).substring(2);</script>",
    )


def filemoon_page(playlist_url: str) -> str:
    """A Filemoon embed page: the JW Player setup packed with p.a.c.k.e.r."""
    setup = (
        'jwplayer("vplayer").setup({sources:[{file:"' + playlist_url + '"}],'
        'image:"",width:"100%",height:"100%",preload:"none"});'
    )
    return _page("Filemoon", f"<script type='text/javascript'>{pack_js(setup)}</script>")


@attrs.frozen
class Media:
    """Real media made by ffmpeg: ``mp4`` bytes and an HLS ``playlist`` with ``segments``."""

    mp4: bytes
    playlist: str
    segments: dict[str, bytes]


def make_media(folder: Path, seconds: int = 3) -> Media:
    """An H.264/AAC MP4 of ``seconds`` seconds (test pattern + tone) and the same as HLS
    (1-second MPEG-TS segments), made by ffmpeg in ``folder``.

    :raises RuntimeError: ffmpeg is missing (a test dependency: scripts/system-packages).
    """
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("ffmpeg is required (see scripts/system-packages)")
    folder.mkdir(parents=True, exist_ok=True)
    mp4 = folder / "episode.mp4"
    common = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y"]
    subprocess.run(
        [
            *common,
            "-f", "lavfi", "-i", f"testsrc=duration={seconds}:size=160x120:rate=10",
            "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
            "-c:v", "libx264", "-preset", "ultrafast", "-g", "10",
            "-c:a", "aac", "-b:a", "32k", "-shortest", "-movflags", "+faststart",
            str(mp4),
        ],
        check=True,
    )  # fmt: skip
    hls = folder / "hls"
    hls.mkdir(exist_ok=True)
    subprocess.run(
        [
            *common, "-i", str(mp4), "-c", "copy", "-f", "hls", "-hls_time", "1",
            "-hls_list_size", "0", "-hls_segment_filename", str(hls / "seg%03d.ts"),
            str(hls / "index.m3u8"),
        ],
        check=True,
    )  # fmt: skip
    segments = {p.name: p.read_bytes() for p in sorted(hls.glob("seg*.ts"))}
    return Media(mp4.read_bytes(), (hls / "index.m3u8").read_text(), segments)
