"""Moving from the official H@H client: its ``data/client_login`` and its ``cache`` directory
are taken over (``hathd hath login --from``, ``[hath] cache_dir``, ``hathd hath verify``), so
the node starts with the files it already had."""

from __future__ import annotations

import os
from pathlib import Path

from asyncclick.testing import CliRunner

from hathd.clictx import CliContext
from hathd.hath.cache import Cache
from hathd.hath.cli import hath_group
from hathd.hath.config import HathConfig
from hathd.hath.credentials import load_credentials
from hathd.hath.protocol import FileId
from hathd.runtime import Paths
from hathd.store import open_store

from .helpers import CREDS, sha1


def _official_client(root: Path) -> tuple[list[FileId], FileId]:
    """An official client's directory: ``data/client_login``, and ``cache/xx/yy/<fileid>``
    files (J162 ``HVFile.getLocalFileRef``), one left at the older ``cache/xx/<fileid>`` level,
    one damaged, plus the client's own ``tmp``/``log`` folders."""
    (root / "data").mkdir(parents=True)
    (root / "data" / "client_login").write_text(CREDS.login_file_text())
    for extra in ("tmp", "log", "download"):
        (root / extra).mkdir()
    kept = []
    for n in range(3):
        data = os.urandom(1000 + n)
        fid = FileId.parse(f"{sha1(data)}-{len(data)}-640-480-jpg")
        folder = root / "cache" / str(fid)[:2] / str(fid)[2:4]
        if n == 2:
            folder = root / "cache" / str(fid)[:2]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / str(fid)).write_bytes(data)
        kept.append(fid)
    data = os.urandom(500)
    damaged = FileId.parse(f"{sha1(data)}-{len(data)}-1-1-png")
    folder = root / "cache" / str(damaged)[:2] / str(damaged)[2:4]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(damaged)).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    return kept, damaged


async def test_login_file_and_cache_of_the_official_client_are_taken_over(
    tmp_path: Path,
) -> None:
    official = tmp_path / "hath"
    kept, damaged = _official_client(official)
    state = tmp_path / "state"
    config = tmp_path / "hathd.toml"
    config.write_text(f'[hath]\ncache_dir = "{official / "cache"}"\n')
    obj = CliContext(state, str(config))
    runner = CliRunner()

    login = await runner.invoke(
        hath_group, ["login", "--from", str(official / "data" / "client_login")], obj=obj
    )
    assert login.exit_code == 0, login.output
    assert CREDS.client_key not in login.output
    assert load_credentials(HathConfig(), Paths(state).data) == CREDS
    assert (Paths(state).data / "client_login").stat().st_mode & 0o777 == 0o600

    verify = await runner.invoke(hath_group, ["verify"], obj=obj)
    assert verify.exit_code == 0, verify.output
    size = sum(f.size for f in kept)
    assert f"kept 3 files ({size} bytes), removed 1, moved 1" in verify.output

    async with open_store(Paths(state).database) as store:
        cache = await Cache.open(store, official / "cache")
        assert cache.count == 3
        assert cache.total_bytes == size
        for fid in kept:
            assert cache.stat_hit(fid) is not None
            assert cache.path_of(fid).parent.parent.parent == official / "cache"
        assert cache.stat_hit(damaged) is None

    bad = tmp_path / "not-a-login"
    bad.write_text("no dash here\n")
    refused = await runner.invoke(hath_group, ["login", "--from", str(bad)], obj=obj)
    assert refused.exit_code != 0
    assert load_credentials(HathConfig(), Paths(state).data) == CREDS
