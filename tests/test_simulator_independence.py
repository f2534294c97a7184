"""The simulator is an independent witness: it imports nothing from the client, so a test
where both agree means two readings of `shared/mahak-api.md` agree."""

from __future__ import annotations

import ast
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from mahak_simulator.schema import InvalidValue, coerce
from mahak_simulator.wire import fold, password_digest, wall_clock

SIMULATOR = Path(__file__).resolve().parents[1] / "mahak_simulator"


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_no_simulator_module_imports_the_client():
    offenders = {
        path.name: sorted(
            m
            for m in _imported_modules(path)
            if m == "mahak_client" or m.startswith("mahak_client.")
        )
        for path in sorted(SIMULATOR.glob("*.py"))
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}
    assert len(offenders) >= 10, "the scan found the simulator's modules"


def test_loading_every_simulator_module_loads_no_client_module():
    code = (
        "import importlib, pkgutil, sys, mahak_simulator\n"
        "for m in pkgutil.walk_packages(mahak_simulator.__path__, 'mahak_simulator.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] == 'mahak_client'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=SIMULATOR.parent,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "[]"


def test_its_own_reading_of_keys_passwords_and_dates():
    assert fold("orderClientId") == fold("OrderClientId") == fold("ORDERCLIENTID")
    assert fold("order_client_id") != fold("OrderClientId"), "a binder does not drop underscores"
    assert password_digest("secret") == "5ebe2294ecd0e0f08eab7690d2a6ee69"
    assert password_digest("5EBE2294ECD0E0F08EAB7690D2A6EE69") == "5ebe2294ecd0e0f08eab7690d2a6ee69"
    # The wall clock sent is kept; an offset is dropped unread (shared/mahak-api.md §1.1).
    assert wall_clock("2025-10-04T15:18:38.2345036") == datetime(2025, 10, 4, 15, 18, 38, 234503)
    assert wall_clock("2025-10-04 10:00:00+00:00") == datetime(2025, 10, 4, 10, 0)
    assert coerce("OrderDate", "d", "2025-10-04T10:00:00Z") == "2025-10-04T10:00:00.0000000"
    with pytest.raises(InvalidValue):
        coerce("OrderDate", "d", "04/10/2025")
