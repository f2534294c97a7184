"""`mahak-sync dev`: the whole system on embedded defaults, until Ctrl-C or a part dies."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from .config import load_settings
from .devstack import DEFAULT_PORTS, DevOptions, DevStack, DevStackRunning, PartDied

# Exit status when a part of the stack died (EX_UNAVAILABLE, as the CLI's error table).
PART_DIED_EXIT = 69


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "dev",
        help="run Temporal + Web UI, PostgreSQL, the Mahak simulator, worker and webhook",
        description="Bring the whole system up locally; uses DATABASE_URL, TEMPORAL_ADDRESS and "
        "MAHAK_USERNAME instead of the embedded servers when they are set. Ports default to the "
        "ones the last run used (remembered in MAHAK_SYNC_DATA_DIR), else the defaults shown; "
        "0 is any free port. A port in use is replaced by a free one, and said so.",
    )
    for part, flag in (
        ("temporal", "--temporal-port"),
        ("ui", "--ui-port"),
        ("webhook", "--webhook-port"),
        ("simulator", "--simulator-port"),
    ):
        p.add_argument(
            flag,
            type=int,
            default=None,
            help=f"default: last run's, else {DEFAULT_PORTS[part]}",
        )
    p.add_argument(
        "--seed-products",
        type=int,
        default=50,
        help="catalog size a new simulator starts with (default 50; a remembered "
        "simulator keeps its own)",
    )
    p.add_argument(
        "--ready-file",
        type=Path,
        help="where to write the JSON of endpoints once ready "
        "(default MAHAK_SYNC_DATA_DIR/dev-ready.json)",
    )
    p.add_argument(
        "--forget-simulator",
        action="store_true",
        help="keep the simulator's data in memory only (not in MAHAK_SYNC_DATA_DIR)",
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
        persist_simulator=not args.forget_simulator,
    )
    if not (sys.stdout.isatty() and sys.stderr.isatty()):
        # The Temporal core's own log lines (a worker's reconnect warnings, written to stdout)
        # carry no colour codes into a file or a pipe.
        os.environ.setdefault("NO_COLOR", "1")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # The stack's own settings: never another running stack's env file.
    settings = load_settings(dev_stack=False)
    try:
        async with DevStack(settings, options) as stack:
            print(json.dumps(stack.info, indent=2), flush=True)
            for notice in stack.notices:
                print(f"note: {notice}", flush=True)
            print(
                f"Endpoints and credentials are in {stack.env_file} (mode 0600); mahak-sync "
                "commands run from this folder use them while the stack runs. To load them "
                f"into another shell: {stack.info['load_env']}",
                flush=True,
            )
            print("mahak-sync dev stack ready; Ctrl-C to stop", flush=True)
            waiter = asyncio.create_task(stack.wait())
            stopper = asyncio.create_task(stop.wait())
            done, pending = await asyncio.wait(
                {waiter, stopper}, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()
            if waiter in done:
                try:
                    waiter.result()
                except PartDied as died:
                    print(
                        f"mahak-sync dev: {died}; stopping everything", file=sys.stderr, flush=True
                    )
                    raise
    except PartDied:
        return PART_DIED_EXIT
    except DevStackRunning as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 75  # EX_TEMPFAIL: try again once the other stack stops
    return 0
