"""The ``gallery`` job handler against the fake control server and its image server (real HTTP)."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest
import trio

from fakes.hath_control import open_fake_control
from fakes.hath_dl import FakeGallery, GalleryQueue
from gallery.helpers import (
    CREDS,
    FAST,
    StubContext,
    make_job,
    open_deps,
    rpc_opener,
    run_row,
    sha1_file,
    zip_members,
)
from hathd.errors import PermanentError, RetryableError
from hathd.gallery.handler import meta_from_params, meta_to_params, run_gallery
from hathd.hath.gallery_meta import parse_gallery_meta


def params_of(gallery: FakeGallery) -> dict[str, object]:
    meta = parse_gallery_meta(gallery.metadata())
    return meta_to_params(meta)


def test_params_round_trip() -> None:
    gallery = FakeGallery.build(5, "T", [10, 20], minxres="780")
    meta = parse_gallery_meta(gallery.metadata())
    assert meta_from_params(json.loads(json.dumps(meta_to_params(meta)))) == meta
    with pytest.raises(PermanentError):
        meta_from_params({"gid": 5, "files": "nope"})


async def test_corrupt_first_try_is_retried_and_verified(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            queue = GalleryQueue.attach(fake)
            gallery = queue.add(FakeGallery.build(101, "Retry me", [3000, 5000, 700]))
            gallery.file(2).corrupt_requests = {1}
            async with open_deps(tmp_path, fake) as deps:
                ctx = StubContext(make_job(params_of(gallery)), tmp_path)
                result = await run_gallery(deps, ctx)
                gdir = tmp_path / "download" / "Retry me [101]"
                assert result["directory"] == str(gdir)
                assert (result["downloaded"], result["kept"], result["archive"]) == (3, 0, None)
                for f in gallery.files:
                    assert sha1_file(gdir / f"{f.filename}.jpg") == f.sha1
                assert gallery.file(2).hits == 2
                assert gallery.file(1).hits == 1
                info = (gdir / "galleryinfo.txt").read_text(encoding="utf-8")
                assert info == gallery.information
                assert sorted(p.name for p in gdir.iterdir()) == [
                    "001.jpg",
                    "002.jpg",
                    "003.jpg",
                    "galleryinfo.txt",
                ]
                row = await run_row(deps.store, 101)
                assert row["status"] == "complete"
                assert json.loads(row["failures"]) == ["127.0.0.1-101002-org"]
                # dlfetch carries the file's try number (1, then 2 for the retried file).
                assert "101;2;101002;org;2" in queue.dlfetch_adds
                assert ctx.reports[-1][:2] == (3, 3)


async def test_file_that_always_fails_gives_a_permanent_error(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            queue = GalleryQueue.attach(fake)
            gallery = queue.add(FakeGallery.build(102, "Broken", [1000, 1000]))
            gallery.file(1).always_corrupt = True
            async with open_deps(tmp_path, fake) as deps:
                ctx = StubContext(make_job(params_of(gallery)), tmp_path)
                with pytest.raises(PermanentError, match="1 of 2 files failed"):
                    await run_gallery(deps, ctx)
                gdir = tmp_path / "download" / "Broken [102]"
                assert gallery.file(1).hits == 3  # tries_per_file
                assert not (gdir / "001.jpg").exists()
                assert not (gdir / "galleryinfo.txt").exists()
                assert sha1_file(gdir / "002.jpg") == gallery.file(2).sha1
                assert not [p for p in gdir.iterdir() if p.name.endswith(".part")]
                row = await run_row(deps.store, 102)
                assert row["status"] == "incomplete"
                # Three failed tries, one key: each key is recorded once (J162 logFailure).
                assert json.loads(row["failures"]) == ["127.0.0.1-102001-org"]


async def test_one_file_gallery_gets_every_try(tmp_path: Path) -> None:
    # No gallery-wide failure budget (J162 limits passes only): a one-file gallery whose
    # first two tries fail still gets its third (tries_per_file) and completes.
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            queue = GalleryQueue.attach(fake)
            gallery = queue.add(FakeGallery.build(109, "Third time", [500]))
            gallery.file(1).corrupt_requests = {1, 2}
            async with open_deps(tmp_path, fake) as deps:
                ctx = StubContext(make_job(params_of(gallery)), tmp_path)
                result = await run_gallery(deps, ctx)
                row = await run_row(deps.store, 109)
            assert gallery.file(1).hits == 3
            assert (result["downloaded"], result["passes"], result["failed_tries"]) == (1, 3, 2)
            assert row["status"] == "complete"
            assert json.loads(row["failures"]) == ["127.0.0.1-109001-org"]
            assert [a.rsplit(";", 1)[1] for a in queue.dlfetch_adds] == ["1", "2", "3"]


async def test_malformed_download_url_is_one_failed_try(tmp_path: Path) -> None:
    # A dlfetch URL that httpx cannot parse fails that try (with a dlfails key), never the
    # whole job; the next try gets a good URL.
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            queue = GalleryQueue.attach(fake)
            gallery = queue.add(FakeGallery.build(111, "Bad url", [100, 200]))
            gallery.file(1).dlfetch_urls = {1: "http://[::1/gfile/111/1"}
            async with open_deps(tmp_path, fake) as deps:
                ctx = StubContext(make_job(params_of(gallery)), tmp_path)
                result = await run_gallery(deps, ctx)
                row = await run_row(deps.store, 111)
            assert (result["downloaded"], result["failed_tries"]) == (2, 1)
            assert "111;1;111001;org;2" in queue.dlfetch_adds
            assert json.loads(row["failures"]) == ["[::1-111001-org"]
            gdir = tmp_path / "download" / "Bad url [111]"
            for f in gallery.files:
                assert sha1_file(gdir / f"{f.filename}.jpg") == f.sha1


async def test_long_japanese_names_fit_with_their_temporary_names(tmp_path: Path) -> None:
    # Every name hathd creates fits 255 bytes: the directory (and so "<dir>.zip" and the
    # archive's ".<dir>.zip.part"), and each file with its ".<name>.part".
    title = "(C99) [サークル] " + "あいうえおかきくけこ" * 12
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            queue = GalleryQueue.attach(fake)
            gallery = queue.add(FakeGallery.build(112, title, [300, 400, 500]))
            gallery.file(1).filename = "あ" * 82  # + ".jpg": 250 bytes, no room for ".part"
            gallery.file(2).filename = "い" * 81  # + ".jpg": 247 bytes, fits with ".part"
            config = attrs.evolve(FAST, archive="zip")
            async with open_deps(tmp_path, fake, config) as deps:
                ctx = StubContext(make_job(params_of(gallery)), tmp_path)
                result = await run_gallery(deps, ctx)
            root = tmp_path / "download"
            [gdir] = [p for p in root.iterdir() if p.is_dir()]
            assert gdir.name.startswith("(C99) [サークル] あいうえお")
            assert gdir.name.endswith("... [112]")
            assert len(gdir.name.encode()) <= 245
            assert len(f".{gdir.name}.zip.part".encode()) <= 255
            assert result["archive"] == str(root / f"{gdir.name}.zip")
            assert sorted(p.name for p in root.iterdir()) == [gdir.name, f"{gdir.name}.zip"]
            names = ["0001.jpg", f"{'い' * 81}.jpg", "003.jpg"]
            assert sorted(p.name for p in gdir.iterdir()) == sorted([*names, "galleryinfo.txt"])
            members = zip_members(root / f"{gdir.name}.zip")
            assert members == {
                **{n: f.sha1 for n, f in zip(names, gallery.files, strict=True)},
                "galleryinfo.txt": members["galleryinfo.txt"],
            }


async def test_existing_files_are_kept_or_replaced(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            queue = GalleryQueue.attach(fake)
            gallery = queue.add(FakeGallery.build(103, "Resume", [800, 900, 1000]))
            gallery.file(3).hash_known = False
            gdir = tmp_path / "download" / "Resume [103]"
            gdir.mkdir(parents=True)
            (gdir / "001.jpg").write_bytes(gallery.file(1).data)  # verified: kept
            (gdir / "002.jpg").write_bytes(b"stale partial")  # wrong hash: replaced
            (gdir / "003.jpg").write_bytes(b"any")  # unknown hash, size > 0: kept
            async with open_deps(tmp_path, fake) as deps:
                result = await run_gallery(
                    deps, StubContext(make_job(params_of(gallery)), tmp_path)
                )
            assert (result["kept"], result["downloaded"]) == (2, 1)
            assert [f.hits for f in gallery.files] == [0, 1, 0]
            assert sha1_file(gdir / "002.jpg") == gallery.file(2).sha1
            assert (gdir / "003.jpg").read_bytes() == b"any"


async def test_unknown_hash_needs_a_non_empty_body(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            queue = GalleryQueue.attach(fake)
            gallery = queue.add(FakeGallery.build(104, "Empty", [0, 10]))
            gallery.file(1).hash_known = False
            gallery.file(2).hash_known = False
            async with open_deps(tmp_path, fake) as deps:
                with pytest.raises(PermanentError):
                    await run_gallery(deps, StubContext(make_job(params_of(gallery)), tmp_path))
            assert gallery.file(1).hits == 3
            assert (tmp_path / "download" / "Empty [104]" / "002.jpg").stat().st_size == 10


async def test_zip_and_delete(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            queue = GalleryQueue.attach(fake)
            gallery = queue.add(FakeGallery.build(105, "Zipped", [4000, 100, 2500], minxres="780"))
            config = attrs.evolve(FAST, archive="zip_delete")
            async with open_deps(tmp_path, fake, config) as deps:
                result = await run_gallery(
                    deps, StubContext(make_job(params_of(gallery)), tmp_path)
                )
                zpath = tmp_path / "download" / "Zipped [105-780x].zip"
                assert result["archive"] == str(zpath)
                assert result["directory"] is None
                members = zip_members(zpath)
                want = {f"{f.filename}.jpg": f.sha1 for f in gallery.files}
                assert set(members) == {*want, "galleryinfo.txt"}
                for name, digest in want.items():
                    assert members[name] == digest
                assert sorted(p.name for p in (tmp_path / "download").iterdir()) == [zpath.name]
                # A queued-again gallery whose archive exists is not fetched again.
                again = await run_gallery(deps, StubContext(make_job(params_of(gallery)), tmp_path))
                assert again["skipped"] == "archive exists"
                assert [f.hits for f in gallery.files] == [1, 1, 1]


async def test_zip_keeps_directory(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            queue = GalleryQueue.attach(fake)
            gallery = queue.add(FakeGallery.build(106, "Both", [300]))
            config = attrs.evolve(FAST, archive="zip")
            async with open_deps(tmp_path, fake, config) as deps:
                await run_gallery(deps, StubContext(make_job(params_of(gallery)), tmp_path))
            root = tmp_path / "download"
            assert sorted(p.name for p in root.iterdir()) == ["Both [106]", "Both [106].zip"]
            assert set(zip_members(root / "Both [106].zip")) == {"001.jpg", "galleryinfo.txt"}


async def test_cancel_mid_file_leaves_no_partial_and_resume_skips_verified(
    tmp_path: Path,
) -> None:
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            queue = GalleryQueue.attach(fake)
            gallery = queue.add(FakeGallery.build(107, "Halt", [2000, 3000, 4000]))
            gallery.file(2).gate = trio.Event()
            async with open_deps(tmp_path, fake) as deps:
                ctx = StubContext(make_job(params_of(gallery)), tmp_path)
                with trio.CancelScope() as scope:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(run_gallery, deps, ctx)
                        await queue.wait_hits(2)  # file 1 served, file 2 held
                        scope.cancel()
                gdir = tmp_path / "download" / "Halt [107]"
                assert sorted(p.name for p in gdir.iterdir()) == ["001.jpg"]
                gallery.file(2).gate = None
                result = await run_gallery(
                    deps, StubContext(make_job(params_of(gallery)), tmp_path)
                )
            assert (result["kept"], result["downloaded"]) == (1, 2)
            assert [f.hits for f in gallery.files] == [1, 2, 1]


async def test_unreachable_control_server_is_retryable(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            gallery = GalleryQueue.attach(fake).add(FakeGallery.build(108, "Offline", [100]))
            opener = rpc_opener(fake)
            async with opener():  # the clock is synced while the server is up
                pass
        # The fake has stopped: dlfetch cannot connect; verified files would be kept.
        async with open_deps(tmp_path, fake, opener=opener) as deps:
            with pytest.raises(RetryableError, match="interrupted"):
                await run_gallery(deps, StubContext(make_job(params_of(gallery)), tmp_path))
            row = await run_row(deps.store, 108)
            assert row["status"] == "interrupted"
            # Without a synced clock the server_stat on opening fails: retryable as well.
            fresh = rpc_opener(fake)
            with pytest.raises(RetryableError, match="server_stat"):
                await run_gallery(
                    attrs.evolve(deps, open_rpc=fresh),
                    StubContext(make_job(params_of(gallery)), tmp_path),
                )


async def test_low_disk_waits_until_there_is_room(tmp_path: Path) -> None:
    mib = 1024 * 1024
    # free < server's diskremaining (5 MiB) + margin (1000 MiB) twice, then plenty.
    readings = [1004 * mib, 1004 * mib, 2000 * mib]
    asked: list[Path] = []

    def free(path: Path) -> int:
        asked.append(path)
        return readings.pop(0) if readings else 2000 * mib

    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            queue = GalleryQueue.attach(fake)
            gallery = queue.add(FakeGallery.build(109, "Low disk", [100, 100]))
            async with open_deps(tmp_path, fake) as deps:
                deps = attrs.evolve(deps, free_bytes=free, server_disk_remaining=lambda: 5 * mib)
                ctx = StubContext(make_job(params_of(gallery)), tmp_path)
                result = await run_gallery(deps, ctx)
    assert result["downloaded"] == 2
    waits = [r for r in ctx.reports if r[2] == "waiting: disk low"]
    assert len(waits) == 2
    # Nothing was fetched while the disk was low: the first waits come before any file.
    assert ctx.reports.index(waits[-1]) < min(
        i for i, r in enumerate(ctx.reports) if r[2] and r[2].startswith("downloaded")
    )
    assert asked[0].name == "Low disk [109]"


async def test_unwritable_outputs_are_retryable_and_keep_the_files(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            queue = GalleryQueue.attach(fake)
            gallery = queue.add(FakeGallery.build(110, "Blocked", [100, 200]))
            gdir = tmp_path / "download" / "Blocked [110]"
            (gdir / "galleryinfo.txt").mkdir(parents=True)  # in the way of the info file
            async with open_deps(tmp_path, fake) as deps:
                with pytest.raises(RetryableError, match="cannot write its outputs"):
                    await run_gallery(deps, StubContext(make_job(params_of(gallery)), tmp_path))
                assert (await run_row(deps.store, 110))["status"] == "interrupted"
                (gdir / "galleryinfo.txt").rmdir()
                result = await run_gallery(
                    deps, StubContext(make_job(params_of(gallery)), tmp_path)
                )
            assert (result["kept"], result["downloaded"]) == (2, 0)
            assert [f.hits for f in gallery.files] == [1, 1]
            assert (gdir / "galleryinfo.txt").read_text() == gallery.information
