"""Starting the long-running workflows: the incoming sync and the order sweep.

Both starts are idempotent (a running workflow is attached to), so the dev stack, the
deployment's one-shot starter and an operator may all call them. Orders start through
`mahak_sync.orders_api.start_order_sync`.
"""

from __future__ import annotations

from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from mahak_sync.config import Settings
from mahak_sync.temporal import SYNC_KIND, SYNC_PAUSED, ensure_search_attributes
from workflows.incoming_sync import SYNC_KIND_VALUE, WORKFLOW_ID, IncomingSyncWorkflow
from workflows.incoming_types import IncomingSyncState, SyncConfig
from workflows.order_sweep import OrderSweepWorkflow
from workflows.order_types import ORDER_SWEEP_WORKFLOW_ID
from workflows.sweep_types import OrderSweepInput


def incoming_config(settings: Settings, **overrides: Any) -> SyncConfig:
    values: dict[str, Any] = {
        "interval_seconds": settings.incoming_sync_interval_seconds,
        "page_size": settings.mahak_page_size,
        "reconcile_every_seconds": settings.incoming_reconcile_every_seconds,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values["page_size"] == 0:  # `--page-size 0`: no pageSize
        values["page_size"] = None
    return SyncConfig(**values)


async def running_handle(client: Client, workflow_id: str) -> WorkflowHandle[Any, Any] | None:
    """The handle of a running workflow with this id, or None."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return handle if description.status == WorkflowExecutionStatus.RUNNING else None


async def start_incoming(
    client: Client,
    settings: Settings,
    *,
    config: SyncConfig | None = None,
    paused: bool = False,
    workflow_id: str = WORKFLOW_ID,
) -> tuple[WorkflowHandle[Any, Any], bool]:
    """Start the incoming sync unless it runs; returns its handle and whether it was started."""
    existing = await running_handle(client, workflow_id)
    if existing is not None:
        return existing, False
    await ensure_search_attributes(client, client.namespace)
    state = IncomingSyncState(config=config or incoming_config(settings), paused=paused)
    handle = await client.start_workflow(
        IncomingSyncWorkflow.run,
        state,
        id=workflow_id,
        task_queue=settings.temporal_task_queue,
        # Two starters racing still end up with one workflow.
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(SYNC_KIND, SYNC_KIND_VALUE),
                SearchAttributePair(SYNC_PAUSED, paused),
            ]
        ),
        static_summary="Mahak -> shop incoming sync",
    )
    return handle, True


async def start_sweep(client: Client, settings: Settings) -> WorkflowHandle[Any, Any]:
    """Start the order sweep unless it runs (a second start attaches)."""
    return await client.start_workflow(
        OrderSweepWorkflow.run,
        OrderSweepInput(interval=settings.outgoing_sweep_interval),
        id=ORDER_SWEEP_WORKFLOW_ID,
        task_queue=settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary="Safety net: syncs paid orders whose callback was lost",
    )
