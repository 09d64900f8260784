"""Local thumbnails: Pillow in worker threads, bounded; sent to a host that takes them and
measured into the output templates."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
import trio
from PIL import Image

from fakes.imagehost_setup import TEST_ROOT
from fakes.imagehost_stack import upload_stack
from fakes.imagehosts import FakeThumbHost, running
from hathd.errors import PermanentError
from hathd.recipes import thumbnails
from hathd.recipes.config import RecipesConfig, ServiceConfig
from hathd.recipes.model import ThumbnailSpec
from hathd.recipes.thumbnails import Thumbnailer, make_thumbnail

THUMB_RECIPE = """\
id = "thumbhost"
base_url = "http://127.0.0.1:1"
extensions = ["jpg", "png"]

[thumbnail]
size = 150
format = "PNG"

[upload]
url = "/upload"

[upload.fields.image]
type = "file"

[upload.fields.thumb]
type = "thumbnail"

[upload.response]
extract = { link = "json:url", small = "json:thumb" }
url = "{link}"
thumb = "{small}"
success = "json:ok"
"""


def photo(path: Path, width: int, height: int, mode: str = "RGB", fmt: str = "JPEG") -> Path:
    colour: tuple[int, ...] = (200, 30, 90) if mode == "RGB" else (200, 30, 90, 128)
    Image.new(mode, (width, height), colour).save(path, fmt)
    return path


def size_of(data: bytes) -> tuple[str | None, tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as image:
        return image.format, image.size


@pytest.mark.parametrize(
    ("source", "spec", "expected"),
    [
        ((4000, 3000), ThumbnailSpec(size=180), ("JPEG", (180, 135))),
        ((1200, 2400), ThumbnailSpec(size=250, format="WEBP"), ("WEBP", (125, 250))),
        ((64, 48), ThumbnailSpec(size=180, format="PNG"), ("PNG", (64, 48))),  # no upscaling
    ],
)
def test_thumbnail_fits_the_box_keeping_the_aspect_ratio(
    tmp_path: Path,
    source: tuple[int, int],
    spec: ThumbnailSpec,
    expected: tuple[str, tuple[int, int]],
) -> None:
    src = photo(tmp_path / "src.jpg", *source)
    thumb = make_thumbnail(src, tmp_path / "out", spec)
    assert size_of((tmp_path / "out").read_bytes()) == expected
    assert (thumb.width, thumb.height) == expected[1]
    assert thumb.size == (tmp_path / "out").stat().st_size


def test_transparent_png_becomes_a_jpeg_on_white(tmp_path: Path) -> None:
    src = photo(tmp_path / "src.png", 400, 200, "RGBA", "PNG")
    make_thumbnail(src, tmp_path / "out.jpg", ThumbnailSpec(size=100))
    with Image.open(tmp_path / "out.jpg") as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (100, 50))


def test_not_an_image_is_a_clear_permanent_error(tmp_path: Path) -> None:
    src = tmp_path / "fake.jpg"
    src.write_bytes(b"not a jpeg at all")
    with pytest.raises(PermanentError, match=r"fake\.jpg: cannot make a thumbnail"):
        make_thumbnail(src, tmp_path / "out.jpg", ThumbnailSpec())
    assert not (tmp_path / "out.jpg").exists()


async def test_thumbnails_run_in_threads_at_most_limit_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = [photo(tmp_path / f"p{i}.jpg", 800, 600) for i in range(8)]
    lock = threading.Lock()
    running_now, peak, threads = 0, 0, set()
    real = thumbnails.make_thumbnail

    def counting(source: Path, dest: Path, spec: ThumbnailSpec) -> thumbnails.Thumbnail:
        nonlocal running_now, peak
        with lock:
            running_now += 1
            peak = max(peak, running_now)
            threads.add(threading.get_ident())
        try:
            threading.Event().wait(0.05)  # hold the slot long enough for others to pile up
            return real(source, dest, spec)
        finally:
            with lock:
                running_now -= 1

    monkeypatch.setattr(thumbnails, "make_thumbnail", counting)
    maker = Thumbnailer(limit=2)
    made: list[thumbnails.Thumbnail] = []
    try:
        async with trio.open_nursery() as nursery:
            for src in sources:

                async def one(src: Path = src) -> None:
                    made.append(await maker.make(src, ThumbnailSpec(size=100)))

                nursery.start_soon(one)
        assert peak == 2
        assert threading.get_ident() not in threads
        assert sorted((t.width, t.height) for t in made) == [(100, 75)] * 8
    finally:
        maker.close()
    assert all(not t.path.exists() for t in made)


async def test_host_receives_the_thumbnail_and_templates_see_its_size(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "thumbhost.toml").write_text(THUMB_RECIPE)
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "sized.html.j2").write_text(
        "{% for i in items %}<img src='{{ i.thumb }}' width={{ i.thumb_width }}"
        " height={{ i.thumb_height }}>\n{% endfor %}"
    )
    pics = tmp_path / "pics"
    pics.mkdir()
    photo(pics / "wide.jpg", 2000, 1000)
    photo(pics / "tall.jpg", 900, 1800)
    async with running(FakeThumbHost()) as host:
        assert isinstance(host, FakeThumbHost)
        config = RecipesConfig(
            directory=str(recipes),
            templates_dir=str(templates),
            services={"thumbhost": ServiceConfig(base_url=host.base_url)},
            global_rate=0.0,
            roots=[TEST_ROOT],
        )
        async with upload_stack(config) as stack:
            sub = await stack.uploads.submit([str(pics)], "thumbhost")
            with trio.fail_after(60):
                while (summary := await stack.uploads.summary(sub.batch)) is not None and (
                    summary["state"] == "active"
                ):
                    await trio.sleep(0.05)
    assert summary is not None
    assert summary["state"] == "done", summary
    received = {name: size_of(t.data) for name, t in host.thumbs.items()}
    assert received == {"tall.jpg": ("PNG", (75, 150)), "wide.jpg": ("PNG", (150, 75))}
    assert {t.filename for t in host.thumbs.values()} == {"tall_thumb.png", "wide_thumb.png"}
    assert {t.content_type for t in host.thumbs.values()} == {"image/png"}
    assert [line.split(" width=")[1] for line in summary["output"]["sized"].splitlines()] == [
        "75 height=150>",
        "150 height=75>",
    ]
    assert [i["state"] for i in summary["items"]] == ["done", "done"]
