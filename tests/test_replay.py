"""Replays every recorded workflow history against the current workflow code.

A change that would break runs already in flight (a reordered activity, a new timer, a
removed signal handler...) fails here instead of in production. The histories are real runs
exported by `tests/histories/regenerate.py`; see its docstring before regenerating.

They are also checked for what must never be in workflow history: the Mahak password, the
webhook secret, Mahak tokens and the customers' personal data.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from mahak_sync.runtime import WORKFLOWS
from tests.histories.regenerate import SENSITIVE_VALUES

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))

# Histories recorded before the scenarios used `regenerate.CUSTOMER` and a distinctive
# password: the simulator's default password and `tests/order_helpers.make_order`'s customer.
EARLIER_SENSITIVE_VALUES = (
    "secret",
    "Sara",
    "Ahmadi",
    "09120000000",
    "sara@example.com",
    "Tehran, Valiasr St. 1",
    "02100000000",
)
_JWT = re.compile(r"eyJ[\w-]{6,}\.eyJ[\w-]{6,}\.[\w-]+")


def test_histories_are_present() -> None:
    assert HISTORIES, "tests/histories/*.json missing: run tests/histories/regenerate.py"
    # Every workflow type this service runs has at least one recorded history (each is
    # registered under its class name; replaying a history under another name fails below).
    recorded = {_started(json.loads(p.read_text()))["workflowType"]["name"] for p in HISTORIES}
    assert recorded == {w.__name__ for w in WORKFLOWS}


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays_deterministically(path: Path) -> None:
    raw = json.loads(path.read_text())
    history = WorkflowHistory.from_json(f"replay-{path.stem}", raw)
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, (
        f"{path.name} ({_started(raw)['workflowType']['name']}) no longer replays: "
        f"{result.replay_failure}"
    )


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
def test_history_holds_no_secret_token_or_customer_data(path: Path) -> None:
    assert _leaks(json.loads(path.read_text())) == []


def test_leak_scan_reads_inside_encoded_payloads() -> None:
    """The export base64-encodes every payload, so a plain grep of the file would miss them."""
    leaked = {
        "user": "shop",
        "password": SENSITIVE_VALUES[0],
        "token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzaG9wIn0.c2lnbmF0dXJl",
    }
    raw = {
        "events": [
            {
                "input": {
                    "payloads": [
                        {
                            "metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                            "data": base64.b64encode(json.dumps(leaked).encode()).decode(),
                        }
                    ]
                }
            }
        ]
    }
    assert _leaks(raw) == [SENSITIVE_VALUES[0], "a Mahak token"]
    assert _leaks({"events": [{"failure": {"message": "self._secrets() of Negin"}}]}) == ["Negin"]


def _started(raw: dict[str, Any]) -> dict[str, Any]:
    return raw["events"][0]["workflowExecutionStartedEventAttributes"]


def _leaks(raw: dict[str, Any]) -> list[str]:
    """Which sensitive values appear in a history, payloads decoded, as whole words."""
    text = "\n".join(_strings(raw))
    found = [
        value
        for value in (*SENSITIVE_VALUES, *EARLIER_SENSITIVE_VALUES)
        if re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text, re.IGNORECASE)
    ]
    if _JWT.search(text):
        found.append("a Mahak token")
    return found


def _strings(node: Any, key: str = "") -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in _strings(v, k)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v, key)]
    if not isinstance(node, str):
        return []
    if key in ("data", "encoding", "type"):  # payload bytes
        try:
            return [node, base64.b64decode(node, validate=True).decode()]
        except (binascii.Error, UnicodeDecodeError):
            pass
    return [node]
