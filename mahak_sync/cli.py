"""`mahak-sync`: the operators' command line.

Each command group lives in its own `cli_*.py` module exposing `register(subparsers)`; the
handler it sets (`func`) takes the parsed args and returns an exit code (a coroutine is run
with asyncio).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import sys

from .config import get_settings
from .logging import configure_logging, register_secret

# Command groups, in help order. A group whose module is absent is skipped, so a partial
# install (e.g. without the simulator's extras) still offers what it can.
_GROUPS = ("cli_mahak", "cli_simulator", "cli_db", "cli_sync", "cli_dev", "cli_orders")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mahak-sync", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _GROUPS:
        try:
            module = importlib.import_module(f"mahak_sync.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"mahak_sync.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        raise SystemExit(2)
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    register_secret(settings.mahak_password.get_secret_value())
    register_secret(settings.webhook_secret.get_secret_value())
    result = args.func(args)
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    sys.exit(int(result or 0))
