"""Run one fake image host in its own process (for benchmarks): ``python
tests/fakes/imagehost_serve.py imx API_KEY`` prints the base URL on stdout and serves until
stdin is closed. File contents are hashed, not kept, so memory stays flat."""

from __future__ import annotations

import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fakes.imagehosts import FakeImx, FakePixhost, running


async def main(kind: str, args: list[str]) -> None:
    host = FakeImx(args[0]) if kind == "imx" else FakePixhost()
    host.keep_file_data = False
    async with running(host):
        print(host.base_url, flush=True)
        stdin = trio.lowlevel.FdStream(0)
        while await stdin.receive_some(1024):
            pass


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2:])
