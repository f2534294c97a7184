"""Start (or attach to) an order's sync workflow: the one idempotent entry point.

The payment callback, shops that call us in-process, `starter.py order` and the safety-net sweep
all come through `start_order_sync`, so a duplicate callback, an operator's retry and the sweep
can never start a second sync of the same order:
- a running workflow for the order is attached to (id conflict policy USE_EXISTING);
- a completed one (synced or cancelled) is not run again (id reuse policy
  ALLOW_DUPLICATE_FAILED_ONLY); only a failed, terminated or timed-out run may be replaced.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from mahak_sync.config import Settings
from mahak_sync.logging import get_logger
from shopdb.models import ShopOrder
from workflows.order_sync import OrderSyncWorkflow
from workflows.order_types import (
    OrderSyncInput,
    OrderSyncPolicy,
    OrderSyncStatus,
    ResolveAck,
    ResolveDispute,
    order_workflow_id,
)

log = get_logger(__name__)


def policy_from_settings(settings: Settings) -> OrderSyncPolicy:
    """The order policy with the operator's settings applied."""
    return OrderSyncPolicy(
        send_retry_for=timedelta(seconds=settings.order_send_retry_seconds),
        decision_timeout=timedelta(seconds=settings.order_dispute_escalation_seconds),
        max_stale_refreshes=settings.order_max_stale_refreshes,
    )


async def start_order_sync(
    client: Client,
    order_id: int,
    settings: Settings,
    *,
    policy: OrderSyncPolicy | None = None,
    order: ShopOrder | None = None,
) -> str:
    """Start the order's workflow, or attach to the one already syncing it; returns its id.
    Given the order's row, the Web UI's summary names its customer (by id) and total too."""
    workflow_id = order_workflow_id(order_id)
    try:
        handle: WorkflowHandle = await client.start_workflow(
            OrderSyncWorkflow.run,
            OrderSyncInput(order_id=order_id, policy=policy or policy_from_settings(settings)),
            id=workflow_id,
            task_queue=settings.temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            # The Web UI's list shows it; ids and amounts only (no customer data in Temporal).
            static_summary=order_summary(order_id, order),
        )
        log.info(
            "order sync started or attached",
            order_id=order_id,
            workflow_id=workflow_id,
            run_id=handle.result_run_id,
        )
    except WorkflowAlreadyStartedError:
        # Completed before (synced or cancelled): never a second run.
        log.info("order sync already completed", order_id=order_id, workflow_id=workflow_id)
    return workflow_id


def order_summary(order_id: int, order: ShopOrder | None) -> str:
    """`web order 42: customer 17, total 300000` (what the Web UI lists for the workflow)."""
    if order is None:
        return f"web order {order_id}"
    return f"web order {order_id}: customer {order.customer_id}, total {order.amount:f}"


async def order_sync_status(client: Client, order_id: int) -> OrderSyncStatus:
    handle = client.get_workflow_handle(order_workflow_id(order_id))
    return await handle.query(OrderSyncWorkflow.status)


async def resolve_order_dispute(
    client: Client, order_id: int, action: str, note: str | None = None
) -> ResolveAck:
    """The operator's decision on a disputed order, as an update (so a wrong one is refused)."""
    handle = client.get_workflow_handle(order_workflow_id(order_id))
    return await handle.execute_update(
        OrderSyncWorkflow.resolve_dispute_update, ResolveDispute(action=action, note=note)
    )
