"""`mahak-sync dev`: the whole system on embedded defaults, until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path

from .config import get_settings
from .devstack import DevOptions, DevStack


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "dev",
        help="run Temporal + Web UI, PostgreSQL, the Mahak simulator, worker and webhook",
        description="Bring the whole system up locally; uses DATABASE_URL, TEMPORAL_ADDRESS and "
        "MAHAK_USERNAME instead of the embedded servers when they are set.",
    )
    p.add_argument("--temporal-port", type=int, default=7233)
    p.add_argument("--ui-port", type=int, default=8233)
    p.add_argument("--webhook-port", type=int, default=8080)
    p.add_argument("--simulator-port", type=int, default=9000)
    p.add_argument(
        "--seed-products",
        type=int,
        default=50,
        help="catalog size the simulator starts with (default 50)",
    )
    p.add_argument(
        "--ready-file",
        type=Path,
        help="where to write the JSON of endpoints once ready "
        "(default MAHAK_SYNC_DATA_DIR/dev-ready.json)",
    )
    p.set_defaults(func=_dev)


async def _dev(args: argparse.Namespace) -> int:
    options = DevOptions(
        temporal_port=args.temporal_port,
        ui_port=args.ui_port,
        webhook_port=args.webhook_port,
        simulator_port=args.simulator_port,
        seed_products=args.seed_products,
        ready_file=args.ready_file,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with DevStack(get_settings(), options) as stack:
        print(json.dumps(stack.info, indent=2), flush=True)
        print("mahak-sync dev stack ready; Ctrl-C to stop", flush=True)
        waiter = asyncio.create_task(stack.wait())
        stopper = asyncio.create_task(stop.wait())
        done, pending = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if waiter in done:
            waiter.result()
            return 1
    return 0
