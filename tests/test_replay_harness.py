"""The replay harness catches a change on every path of `OrderSyncWorkflow` it claims to cover.

`tests/test_replay.py` only protects the paths some recorded history walks. For each path in
`PATHS`, a mutant of the workflow runs one extra activity (`order.canary`) exactly when the
run takes that path, the kind of change that breaks runs in flight. Replaying the path's
history (`tests/histories/order_<path>.json`, recorded by the `ORDER_SCENARIOS` entry of the
same name in `tests/histories/regenerate.py`) with the mutant must fail with a
nondeterminism error, while the unmodified workflow replays it. The mutant must still replay
the path's control histories, which pass close by without taking the path: so the canary is
confined to that path, and it is this history that catches it.

A mutant wraps the workflow method that handles the path: `before` runs the canary first
when `takes_path(workflow, args, None)`; `after` runs it after the method returned `result`
when `takes_path(workflow, args, result)`; `raises` runs it when the method raised `error`
and `takes_path(workflow, args, error)`, then re-raises.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer

from activities.orders import OrderActivities
from mahak_sync.runtime import WORKFLOWS
from tests.histories.regenerate import ORDER_SCENARIOS
from workflows.order_sync import PATCH_FAST_SEND, PATCH_SAGA, OrderSyncWorkflow
from workflows.order_types import OrderSyncInput, OrderSyncResult, ReverseOutcome

HISTORIES = Path(__file__).parent / "histories"
CANARY = "order.canary"

Predicate = Callable[[OrderSyncWorkflow, tuple[Any, ...], Any], bool]


@dataclass(frozen=True)
class CoveredPath:
    method: str  # the `OrderSyncWorkflow` method the mutant wraps
    when: Literal["before", "after", "raises"]
    takes_path: Predicate
    controls: tuple[str, ...]  # histories (file stems) near the path that do not take it
    what: str


def _always(*_: Any) -> bool:
    return True


def _resend_decided(_: OrderSyncWorkflow, __: tuple[Any, ...], decision: Any) -> bool:
    return decision is not None and decision.action == "resend"


def _conflict_in_dispute(_: OrderSyncWorkflow, __: tuple[Any, ...], decision: Any) -> bool:
    return decision is None  # `_dispute_wait` returns None when a conflict ends the wait


def _conflict_before_any_send(wf: OrderSyncWorkflow, _: tuple[Any, ...], outcome: Any) -> bool:
    return outcome is None and wf._attempts == 0


def _reversal_found_unknown_order(
    wf: OrderSyncWorkflow, args: tuple[Any, ...], outcome: Any
) -> bool:
    # The saga's Mahak step found an order the workflow never heard of (its answer was lost).
    return (
        args[1] == OrderActivities.reverse_in_mahak
        and isinstance(outcome, ReverseOutcome)
        and outcome.found
        and wf._mahak_order_id is None
        and not wf._saved_lines
    )


def _reversal_refused(_: OrderSyncWorkflow, args: tuple[Any, ...], __: Any) -> bool:
    return args[0] == "mahak_reversal_needed"


def _cancelled_by_shop_before_start(_: OrderSyncWorkflow, args: tuple[Any, ...], __: Any) -> bool:
    return args[0] == "the shop cancelled the order before its sync began"


def _outcome(expected: str, *, compensated: bool | None = None) -> Predicate:
    def takes(wf: OrderSyncWorkflow, _: tuple[Any, ...], result: Any) -> bool:
        return (
            isinstance(result, OrderSyncResult)
            and result.outcome == expected
            and (compensated is None or bool(wf._compensations) == compensated)
        )

    return takes


def _failed_with(error_type: str) -> Predicate:
    def takes(_: OrderSyncWorkflow, __: tuple[Any, ...], error: Any) -> bool:
        return isinstance(error, ApplicationError) and error.type == error_type

    return takes


# path (an `ORDER_SCENARIOS` name, history `order_<path>.json`) -> how a change on it is made
PATHS: dict[str, CoveredPath] = {
    "resend_after_dispute": CoveredPath(
        "_dispute_wait",
        "after",
        _resend_decided,
        ("order_dispute_cancel_update", "order_dispute_escalated_signal"),
        "what runs after an operator's `resend` decision",
    ),
    "conflict_before_first_send": CoveredPath(
        "_send_until_answered",
        "after",
        _conflict_before_any_send,
        ("order_conflict_during_outage", "order_happy"),
        "an inventory conflict before the first send",
    ),
    "conflict_during_dispute": CoveredPath(
        "_dispute_wait",
        "after",
        _conflict_in_dispute,
        ("order_dispute_cancel_update", "order_resend_after_dispute"),
        "an inventory conflict while the order waits in dispute",
    ),
    "conflict_after_lost_answer": CoveredPath(
        "_saga_step",
        "after",
        _reversal_found_unknown_order,
        ("order_conflict_during_outage", "order_inventory_saga"),
        "the saga finding in Mahak the order whose answer was lost",
    ),
    "reversal_refused": CoveredPath(
        "_staff_task",
        "before",
        _reversal_refused,
        ("order_conflict_after_lost_answer", "order_inventory_saga"),
        "Mahak refusing the saga's delete (a staff task)",
    ),
    "shop_cancelled_in_dispute": CoveredPath(
        "_follow_the_shop",
        "before",
        _always,
        ("order_resend_after_dispute", "order_conflict_during_dispute"),
        "a database refusal (`begin_send`) followed into the saga",
    ),
    "already_synced": CoveredPath(
        "_run",
        "after",
        _outcome("already_synced"),
        ("order_happy", "order_already_cancelled"),
        "the early return of an order already synced",
    ),
    "already_cancelled": CoveredPath(
        "_run",
        "after",
        _outcome("cancelled", compensated=False),
        ("order_conflict_before_first_send", "order_already_synced"),
        "the early return of an order already cancelled",
    ),
    "cancelled_by_shop_before_start": CoveredPath(
        "_compensate",
        "before",
        _cancelled_by_shop_before_start,
        ("order_already_cancelled", "order_shop_cancelled_in_dispute"),
        "the saga of an order the shop cancelled before its sync started",
    ),
    "not_paid": CoveredPath(
        "_run",
        "raises",
        _failed_with("OrderNotPaid"),
        ("order_already_cancelled", "order_happy"),
        "the failure of an order not paid",
    ),
}


def history_path(stem: str) -> Path:
    return HISTORIES / f"{stem}.json"


def load(stem: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(f"harness-{stem}", json.loads(history_path(stem).read_text()))


async def _canary() -> None:
    await workflow.execute_activity(CANARY, start_to_close_timeout=timedelta(seconds=10))


def mutant(name: str) -> type[OrderSyncWorkflow]:
    """`OrderSyncWorkflow` with one extra activity exactly where a run takes path `name`."""
    path = PATHS[name]
    original = getattr(OrderSyncWorkflow, path.method)

    async def mutated(self: OrderSyncWorkflow, *args: Any, **kwargs: Any) -> Any:
        if path.when == "before":
            if path.takes_path(self, args, None):
                await _canary()
            return await original(self, *args, **kwargs)
        if path.when == "raises":
            try:
                return await original(self, *args, **kwargs)
            except Exception as err:
                if path.takes_path(self, args, err):
                    await _canary()
                raise
        result = await original(self, *args, **kwargs)
        if path.takes_path(self, args, result):
            await _canary()
        return result

    # The SDK wants the run method defined on the class itself, and no local class: this
    # is what `class Mutant_<name>(OrderSyncWorkflow)` at module level would build.
    class_name = f"Mutant_{name}"

    # `self` stays unannotated: the SDK takes the input's type from the hints and skips
    # only a bare `self`.
    async def run(self, inp: OrderSyncInput) -> OrderSyncResult:  # noqa: ANN001
        return await OrderSyncWorkflow.run(self, inp)

    run.__qualname__ = f"{class_name}.run"
    cls = type(
        class_name,
        (OrderSyncWorkflow,),
        {
            "__module__": __name__,
            "__qualname__": class_name,
            "run": workflow.run(run),
            path.method: mutated,
        },
    )
    return workflow.defn(name="OrderSyncWorkflow", sandboxed=False)(cls)


async def replay(workflows: list[type], stem: str) -> Exception | None:
    replayer = Replayer(workflows=workflows, data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(load(stem), raise_on_replay_failure=False)
    return result.replay_failure


def _patches(stem: str) -> set[str]:
    """The `workflow.patched` ids a history's markers record."""
    found = set()
    for event in json.loads(history_path(stem).read_text())["events"]:
        details = event.get("markerRecordedEventAttributes", {}).get("details", {})
        for payload in details.get("patch-data", {}).get("payloads", []):
            found.add(json.loads(base64.b64decode(payload["data"]))["id"])
    return found


def test_every_path_has_its_scenario_and_histories() -> None:
    for name, path in PATHS.items():
        assert name in ORDER_SCENARIOS, f"{name}: no such scenario in regenerate.py"
        assert history_path(f"order_{name}").is_file(), (
            f"{history_path(f'order_{name}').name} missing: run "
            f"tests/histories/regenerate.py order_{name}"
        )
        for patch in (PATCH_SAGA, PATCH_FAST_SEND):
            assert patch in _patches(f"order_{name}"), f"{name}: recorded before {patch}"
        assert callable(getattr(OrderSyncWorkflow, path.method, None)), path.method
        for control in path.controls:
            assert history_path(control).is_file(), f"{name}: control {control}.json missing"


@pytest.mark.parametrize("name", PATHS)
async def test_a_change_on_the_path_fails_its_replay(name: str) -> None:
    path, stem = PATHS[name], f"order_{name}"
    assert await replay(WORKFLOWS, stem) is None, f"{stem} does not replay unmodified"

    failure = await replay([mutant(name)], stem)

    assert isinstance(failure, workflow.NondeterminismError), (
        f"{stem} replays although {path.what} ran an extra activity "
        f"({path.method} {path.when}): {failure!r}"
    )


@pytest.mark.parametrize("name", PATHS)
async def test_the_change_is_confined_to_the_path(name: str) -> None:
    path = PATHS[name]
    for control in path.controls:
        failure = await replay([mutant(name)], control)
        assert failure is None, (
            f"the canary of {name} ({path.what}) also fires in {control}: {failure!r}"
        )
