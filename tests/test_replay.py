"""Replays every recorded workflow history against the current workflow code.

A change that would break runs already in flight (a reordered activity, a new timer, a
removed signal handler...) fails here instead of in production. The histories are real runs
exported by `tests/histories/regenerate.py`; see its docstring before regenerating.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from worker import WORKFLOWS

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_histories_are_present() -> None:
    assert HISTORIES, "tests/histories/*.json missing: run tests/histories/regenerate.py"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays_deterministically(path: Path) -> None:
    raw = json.loads(path.read_text())
    started = raw["events"][0]["workflowExecutionStartedEventAttributes"]
    history = WorkflowHistory.from_json(f"replay-{path.stem}", raw)
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, (
        f"{path.name} ({started['workflowType']['name']}) no longer replays: "
        f"{result.replay_failure}"
    )
