"""What crosses the boundary of `OrderSyncWorkflow`: its input, messages, query and the values
its activities exchange with it.

Everything here lands in workflow history, so it carries ids, statuses, amounts and Mahak's
error texts only: never customer names, addresses, phone numbers, tokens or passwords. The
activities read those from PostgreSQL themselves when they build the request.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

from mahak_sync.search_attributes import ORDER_ID, ORDER_SYNC_STATUS

INCOMING_SYNC_WORKFLOW_ID = "mahak-incoming-sync"
ORDER_SWEEP_WORKFLOW_ID = "mahak-order-sweep"


def order_workflow_id(order_id: int) -> str:
    return f"order-sync-{order_id}"


# Search attributes (registered by `mahak_sync.temporal.ensure_search_attributes`).
ORDER_ID_ATTR = ORDER_ID
SYNC_STATUS_ATTR = ORDER_SYNC_STATUS

SyncStatus = Literal["pending", "sending", "synced", "retrying", "dispute", "cancelled"]
DISPUTE_ACTIONS: tuple[str, ...] = ("resend", "cancel", "mark_synced")
# `cancelled_with_staff_task`: the shop side is undone, but something (a Mahak record that
# could not be deleted, a refund the gateway refused) waits for a person: a staff notice
# names exactly what.
SyncOutcome = Literal["synced", "already_synced", "cancelled", "cancelled_with_staff_task"]


class OrderSyncPolicy(BaseModel):
    """Timings and bounds of one order's sync; defaults are production values, tests shrink them."""

    # How long transient failures (Mahak down, 5xx, timeouts, 401) are retried before an
    # operator is asked to decide. The order is never dropped either way.
    send_retry_for: timedelta = timedelta(days=7)
    first_retry_delay: timedelta = timedelta(seconds=5)
    max_retry_delay: timedelta = timedelta(minutes=10)
    # A dispute with no operator decision within this time is escalated to staff.
    decision_timeout: timedelta = timedelta(hours=24)
    # A body that is not Mahak's envelope (HTML, truncated JSON) is retried this many times in
    # a row, then an operator decides (the dispute quotes a redacted excerpt).
    max_bad_responses: int = Field(5, ge=1)
    # Stale references (unknown product detail, store, person): refresh and resend this often.
    max_stale_refreshes: int = Field(3, ge=0)
    stale_refresh_wait: timedelta = timedelta(seconds=30)
    # A worker killed mid-send is noticed after this long and the send is retried (with a
    # lookup first, so Mahak never gets the order twice).
    send_heartbeat_timeout: timedelta = timedelta(seconds=30)
    send_timeout: timedelta = timedelta(minutes=5)
    # One attempt costs ~25 history events, and a week of retries at the 10-minute cap is
    # ~1000 attempts: the run continues as new after this many, so no history nears
    # Temporal's limits (warning at 10k events, termination at 51k) however long Mahak is down.
    attempts_per_run: int = Field(100, ge=1)


class OrderSyncCarry(BaseModel):
    """A retrying order's state, carried into the next run by continue-as-new."""

    attempts: int
    retry_deadline: datetime  # the retry window of the current round keeps its end
    next_delay: timedelta
    last_error: str | None = None
    mahak_order_id: int | None = None
    saved_line_client_ids: list[int] = Field(default_factory=list)
    stale_refreshes: int = 0
    runs: int = 1  # runs so far, this one included
    bad_responses: int = 0
    credentials_notified: bool = False


class OrderSyncInput(BaseModel):
    order_id: int
    policy: OrderSyncPolicy = Field(default_factory=OrderSyncPolicy)
    # Set only by the workflow itself when it continues as new in the middle of retrying.
    carry: OrderSyncCarry | None = None


# --- Activity values -------------------------------------------------------------------------


class OrderSummary(BaseModel):
    """The PII-free facts the workflow decides on."""

    order_id: int
    paid: bool
    payable_status: str  # the order's payment status as stored
    sync_status: str
    synced_to_mahak: bool
    mahak_order_id: int | None = None
    order_client_id: int
    line_count: int
    compensation_started: bool = False
    # What a compensation left in Mahak for staff (Mahak ids only), if it did.
    mahak_leftovers: str | None = None


class MahakFailure(BaseModel):
    """One record Mahak refused, as it said it."""

    collection: str
    client_id: int | None = None
    property: str | None = None
    message: str = ""


SendKind = Literal[
    "accepted",  # the order and every line are in Mahak
    "already_registered",  # Mahak says our orderClientId exists and cannot be edited
    "stale_reference",  # a product detail / store / person we referenced is unknown to Mahak
    "inventory",  # Mahak refused at least one line for stock
    "rejected",  # anything else: an operator decides
]


class SendRequest(BaseModel):
    order_id: int
    # A previous attempt may have reached Mahak (timeout, crash): look before sending again.
    probe_first: bool = False
    # The one-activity send (`PATCH_FAST_SEND`): claim the order (`begin_send`) in the
    # transaction that loads it, and after Mahak's answer record the attempt (numbered
    # `attempt`, the workflow's count) and, when accepted, mark it synced, in one transaction.
    claim: bool = False
    attempt: int | None = None


class SendOutcome(BaseModel):
    kind: SendKind
    mahak_order_id: int | None = None
    # Lines Mahak holds (by orderDetailClientId); needed to reverse a partial save.
    saved_line_client_ids: list[int] = Field(default_factory=list)
    failures: list[MahakFailure] = Field(default_factory=list)
    # Logical entity names (`mahak_client.models.ENTITIES`) the incoming sync should refresh.
    stale_entities: list[str] = Field(default_factory=list)
    # True when the probe found the order already in Mahak and nothing was sent.
    found_by_probe: bool = False
    # Of a send with `claim` (else the defaults): False when the database refused the claim
    # (nothing was sent; the shop decided otherwise); whether the attempt was recorded; for an
    # accepted order, whether it was marked synced (False: the shop refused, e.g. cancelled).
    claimed: bool = True
    attempt_recorded: bool = False
    marked_synced: bool | None = None

    def summary(self) -> str:
        if not self.failures:
            return self.kind
        first = self.failures[0]
        more = f" (+{len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
        return f"{self.kind}: {first.collection}.{first.property or '?'}: {first.message}{more}"[
            :500
        ]


class MahakOrderCheck(BaseModel):
    """Whether Mahak holds exactly this order (the crash-after-send / already-registered case)."""

    found: bool
    matches: bool = False  # found, nothing differs, nothing missing (the receipt aside)
    mahak_order_id: int | None = None
    mahak_receipt_id: int | None = None
    differs: bool = False  # a value differs: an operator decides
    missing_line_client_ids: list[int] = Field(default_factory=list)  # a resend completes them
    receipt_missing: bool = False  # everything else is there: the receipt is sent alone
    detail: str = ""


class AttemptNote(BaseModel):
    order_id: int
    error: str | None = None
    # The workflow's own count, so a retried activity does not count the attempt twice.
    attempt: int | None = None


class SyncedNote(BaseModel):
    order_id: int
    mahak_order_id: int | None = None
    note: str | None = None


class DisputeNote(BaseModel):
    order_id: int
    reason: str


class StaffNotice(BaseModel):
    order_id: int
    kind: str
    message: str


class CancelRequest(BaseModel):
    order_id: int
    reason: str


class ReverseRequest(BaseModel):
    order_id: int
    mahak_order_id: int | None = None
    line_client_ids: list[int] = Field(default_factory=list)


class ReverseOutcome(BaseModel):
    reversed: bool
    # False when a lookup found nothing of the order in Mahak, so nothing needed reversing.
    found: bool = True
    detail: str = ""
    # What Mahak still holds after the reversal, read back (e.g. "Mahak order 81234").
    leftovers: list[str] = Field(default_factory=list)


class RefundOutcome(BaseModel):
    refunded: bool
    # False when nothing was paid, so there is nothing to give back.
    required: bool = True
    refund_id: str | None = None
    amount: Decimal | None = None
    detail: str = ""


class CustomerNotice(BaseModel):
    order_id: int
    kind: Literal["order_cancelled"]
    refunded: bool


# --- Messages, query, result ------------------------------------------------------------------


class ResolveDispute(BaseModel):
    # A plain string so the update validator, not deserialisation, explains a bad action.
    action: str
    note: str | None = None


class ResolveAck(BaseModel):
    accepted: bool
    action: str


class InventoryConflictNotice(BaseModel):
    """Sent by the incoming sync when Mahak's stock no longer covers this unsent order."""

    product_detail_id: int | None = None
    store_id: int | None = None
    needed: float | None = None
    available: float | None = None
    reason: str | None = None


class DisputeInfo(BaseModel):
    reason: str
    failures: list[MahakFailure] = Field(default_factory=list)
    since: datetime
    escalated: bool = False


class OrderSyncStatus(BaseModel):
    order_id: int
    stage: str
    sync_status: SyncStatus
    attempts: int = 0
    last_error: str | None = None
    mahak_order_id: int | None = None
    saved_line_client_ids: list[int] = Field(default_factory=list)
    stale_refreshes: int = 0
    dispute: DisputeInfo | None = None
    inventory_conflict: InventoryConflictNotice | None = None
    compensations: list[str] = Field(default_factory=list)
    runs: int = 1  # > 1 once a long retry has continued as new
    next_attempt_at: datetime | None = None  # while waiting to retry
    # The last operator message that did not apply (a signal with a bad action, none pending,
    # or a signal this workflow has no handler for).
    last_refused: str | None = None


class OrderSyncResult(BaseModel):
    order_id: int
    outcome: SyncOutcome
    mahak_order_id: int | None = None
    attempts: int = 0
    note: str | None = None
