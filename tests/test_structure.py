"""The shape the code keeps (issue 14): packages never reach up into the top-level entry points
or the tests, the install carries no top-level `worker`/`starter` modules, and `starter.py` is
the `mahak-sync` command line under its deployment verbs."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

import starter
from mahak_sync import cli

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mahak_sync", "mahak_client", "mahak_simulator", "shopdb", "workflows", "activities")
TOP_LEVEL = {"worker", "starter", "tests", "bench"}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_no_package_imports_a_top_level_module() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & TOP_LEVEL)
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if _imports(path) & TOP_LEVEL
    }
    assert offenders == {}


def test_the_install_carries_no_top_level_entry_points() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = config.get("tool", {}).get("setuptools", {})
    assert "py-modules" not in setuptools
    assert set(setuptools["packages"]["find"]["include"]) == {f"{p}*" for p in PACKAGES}


@pytest.mark.parametrize(
    ("argv", "command", "handler"),
    [
        (["incoming", "--page-size", "0", "--paused"], ["sync", "start"], "_start"),
        (["sync-now"], ["sync", "now"], "_signal"),
        (["sweep"], ["order", "sweep"], "_sweep"),
        (["order", "42"], ["order", "start"], "_start"),
    ],
)
def test_starter_verbs_are_mahak_sync_commands(
    argv: list[str], command: list[str], handler: str
) -> None:
    translated = starter.translate(argv)
    assert translated[:2] == command
    args = cli.build_parser().parse_args(translated)
    assert args.func.__name__ == handler
    if argv[0] == "incoming":
        assert args.page_size == 0 and args.paused
    if argv[0] == "order":
        assert args.order_id == 42
    assert starter.translate(["unknown"]) == ["unknown"]


def test_settings_are_passed_down_not_read_below_the_entry_points() -> None:
    readers = [
        str(path.relative_to(ROOT))
        for package in ("activities", "workflows", "shopdb", "mahak_client")
        for path in (ROOT / package).rglob("*.py")
        if "get_settings" in path.read_text()
    ]
    assert readers == []


def test_the_worker_hands_its_settings_to_the_incoming_sync() -> None:
    from activities.incoming import IncomingActivities
    from mahak_sync.config import Settings

    settings = Settings(
        _env_file=None,
        SHOP_PRICE_LEVEL=3,  # type: ignore[call-arg]
        INCOMING_LOOKBACK_ROWVERSIONS=7,
    )
    sync = IncomingActivities(None, None, settings).sync  # type: ignore[arg-type]
    assert (sync.price_level, sync.lookback) == (3, 7)
