"""Run a simulated Mahak Sync API as a process (`mahak-sync simulator`), for demos and manual tests.

Prints one ready line, `mahak simulator listening on http://HOST:PORT/API/v3`, once it
answers requests (with `--port 0`, the default, the OS picks a free port), then serves
until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from typing import Any

from pydantic import SecretStr

READY_LINE = "mahak simulator listening on {base_url}"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "simulator", help="run a simulated Mahak Sync API", description=__doc__.splitlines()[0]
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 (default): a free port")
    p.add_argument("--username", default="shop")
    p.add_argument("--password", default="secret")
    p.add_argument("--database-id", type=int, default=1234567)
    p.add_argument("--package-no", default="7654321")
    p.add_argument("--visitor-id", type=int, default=10101)
    p.add_argument(
        "--seed-products",
        type=int,
        default=0,
        help="products (with details, stock, pictures) every reset creates",
    )
    p.add_argument("--token-lifetime", type=int, default=604_800, metavar="SECONDS")
    p.add_argument(
        "--boundary",
        choices=("inclusive", "exclusive"),
        default="inclusive",
        help="GetAllData from-version semantics",
    )
    p.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help="keep the simulated data in this JSON file across restarts (default: in memory)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mahak_simulator import SimulatorConfig, SimulatorServer

    config = SimulatorConfig(
        host=args.host,
        port=args.port,
        username=args.username,
        password=SecretStr(args.password),
        database_id=args.database_id,
        package_no=args.package_no,
        visitor_id=args.visitor_id,
        seed_products=args.seed_products,
        token_lifetime_seconds=args.token_lifetime,
        boundary=args.boundary,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server = SimulatorServer(config, state_file=args.state_file).start()
    try:
        print(READY_LINE.format(base_url=server.base_url), flush=True)
        while not stop.wait(0.5):
            if not server.running:
                return 1
    finally:
        server.stop()
    return 0
