"""The recipes plugin inside a real ``hathd run`` process, driven by the real CLI."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from fakes.imagehost_setup import IMX_KEY
from fakes.imagehosts import FakeImx, content_id


@pytest.mark.slow
async def test_upload_through_daemon_and_cli(
    start_daemon: Callable[..., Awaitable[Any]], imx: FakeImx, images: list[Path]
) -> None:
    config = (
        '[recipes.services."imx.to"]\n'
        f'base_url = "{imx.base_url}"\n'
        f'credentials = {{ api_key = "{IMX_KEY}" }}\n'
    )
    handle = await start_daemon(config_toml_text=config)
    argv = [sys.executable, "-m", "hathd", "--state-dir", str(handle.state_dir)]
    with trio.fail_after(120):
        done = await trio.run_process(
            [*argv, "upload", *map(str, images[:2]), "--to", "imx.to", "--wait",
             "--format", "links", "--timeout", "60"],
            capture_stdout=True, capture_stderr=True, env=handle.env, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        assert done.stdout.decode().splitlines() == [
            f"https://imx.to/i/{content_id(p.read_bytes())}" for p in images[:2]
        ]
        listed = await trio.run_process(
            [*argv, "recipes", "list"], capture_stdout=True, env=handle.env
        )
        assert "imx.to           2 req/s burst 5, 2 at once" in listed.stdout.decode()
        async with handle.admin() as admin:
            shown = await admin.get("/api/v1/config")
            status = await admin.get("/api/v1/status")
        assert shown["recipes"]["services"]["imx.to"]["credentials"] == "***"
        assert IMX_KEY not in str(shown)
        uploads = [s for s in status["services"] if s["name"] == "uploads"]
        assert uploads
        assert await handle.stop() == 0
    assert imx.lines() == ["POST /v1/upload.php", "POST /v1/upload.php"]
    assert IMX_KEY not in handle.log()
