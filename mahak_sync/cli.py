"""`mahak-sync`: the operators' command line.

Each command group lives in its own `cli_*.py` module exposing `register(subparsers)`; the
handler it sets (`func`) takes the parsed args and returns an exit code (a coroutine is run
with asyncio). A handler that cannot do its work raises: `main` turns every error into one
line on stderr and an exit code (`mahak_sync.cli_errors`); `--debug` adds the traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import importlib
import inspect
import os
import sys
import traceback

from .config import Settings, get_settings
from .logging import configure_logging, register_secret

# Command groups, in help order. A group whose module is absent is skipped, so a partial
# install (e.g. without the simulator's extras) still offers what it can.
_GROUPS = (
    "cli_mahak",
    "cli_simulator",
    "cli_db",
    "cli_sync",
    "cli_dev",
    "cli_orders",
    "cli_dead_letters",
    "cli_codec",
    "cli_demo",
    "cli_status",
    "cli_temporal",
)

_DEBUG_HELP = "on an error, print the traceback as well as the one-line message"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mahak-sync", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _GROUPS:
        try:
            module = importlib.import_module(f"mahak_sync.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"mahak_sync.{name}":
                raise
            continue
        module.register(sub)
    _add_debug_everywhere(parser)
    return parser


def _add_debug_everywhere(parser: argparse.ArgumentParser) -> None:
    """`--debug` after the command too (`mahak-sync sync status --debug`)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if "--debug" not in child._option_string_actions:
                    child.add_argument(
                        "--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP
                    )
                _add_debug_everywhere(child)


def run(args: argparse.Namespace) -> int:
    """Run the parsed command; every error becomes one line on stderr and an exit code."""
    settings: Settings | None = None
    try:
        settings = _set_up()
        result = args.func(args)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)
    except BaseException as exc:  # noqa: BLE001 - every error is explained, never a traceback
        return _report(exc, settings, args)


async def run_async(args: argparse.Namespace) -> int:
    """`run` on the caller's event loop (tests, programs that run commands in-process)."""
    settings: Settings | None = None
    try:
        settings = _set_up()
        result = args.func(args)
        if inspect.isawaitable(result):
            result = await result
        return int(result or 0)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # noqa: BLE001
        return _report(exc, settings, args)


def _set_up() -> Settings:
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    register_secret(settings.mahak_password.get_secret_value())
    register_secret(settings.webhook_secret.get_secret_value())
    return settings


def _report(exc: BaseException, settings: Settings | None, args: argparse.Namespace) -> int:
    from .cli_errors import explain

    if isinstance(exc, SystemExit):
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    code, message = explain(exc, settings)
    if getattr(args, "debug", False):
        traceback.print_exception(exc)
    print(f"error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["temporal"]:
        # Everything after `temporal` is the temporal CLI's, options included: argparse would
        # claim the ones it does not know.
        args = argparse.Namespace(func=_temporal_passthrough, args=given[1:], debug=False)
    else:
        args = parser.parse_args(given)
    if not getattr(args, "func", None):
        parser.print_help()
        raise SystemExit(2)
    exit_now(run(args))


def _temporal_passthrough(args: argparse.Namespace) -> int:
    from .cli_temporal import run_temporal

    return run_temporal(list(args.args))


def exit_now(code: int) -> None:
    """Exit with `code` without interpreter teardown: the Temporal core's threads can crash
    it (SIGSEGV, or `PyGILState_Release` and SIGABRT, instead of the status:
    temporalio/sdk-python#300), as `worker.py` does. atexit handlers run first."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
