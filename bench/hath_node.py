"""Run one H@H node (``HathNode``) in its own process for ``bench_hath.py``.

Usage: ``python bench/hath_node.py --rpc 127.0.0.1:PORT --state DIR --cid N --key KEY
[--serving-processes N]``.
Prints ``PORT <n>`` on stdout once the image server listens, then serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

import trio

from hathd.events import EventBus
from hathd.hath.config import HathConfig
from hathd.hath.node import HathNode
from hathd.hath.protocol import Credentials
from hathd.store import open_store


async def main(args: argparse.Namespace) -> None:
    creds = Credentials(args.cid, args.key)
    cfg = HathConfig(
        enabled=True,
        rpc_server=args.rpc,
        listen_host="127.0.0.1",
        prune_interval=3600.0,
        verify_on_serve=False,
        **({"serving_processes": args.serving_processes} if args.serving_processes else {}),
    )
    state = Path(args.state)
    async with open_store(state / "hathd.sqlite3") as store, trio.open_nursery() as nursery:
        node = HathNode(
            cfg,
            creds,
            store=store,
            bus=EventBus(),
            data_dir=state / "data",
            cache_root=state / "cache",
        )
        port = await nursery.start(node.serve)
        print(f"PORT {port}", flush=True)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rpc", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--cid", type=int, required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--serving-processes", type=int, default=0, help="0: the config default")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    trio.run(main, parser.parse_args())
