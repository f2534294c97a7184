"""Messages of the incoming sync: what crosses the workflow/activity boundary and what
operators see (query, updates, CLI).

Only counts, cursors and short error texts travel here; catalog rows never enter workflow
history. This module imports nothing that does I/O, so the workflow sandbox, the CLI and the
tests share it freely.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field

from mahak_client.models import INCOMING_ORDER, entity_name
from mahak_sync.errors import ErrorType  # type names only; nothing here does I/O

ALL_ENTITIES = "*"
STOCK_ENTITY = "product_detail_store_assets"
# Inventory conflicts are checked only on a complete picture: after a cycle in which all
# three synced to the end without error (stock, and the Mahak orders it already counts).
CONFLICT_PICTURE: tuple[str, ...] = (STOCK_ENTITY, "orders", "order_details")

Trigger = Literal["timer", "sync_now", "manual", "cli"]

# Failures that concern one entity's own request or data: when retrying cannot help, or has
# not helped within the entity's budget, the cycle goes on with the other entities. Anything
# else that outlasts its retries (Mahak or the database unavailable, bad credentials) would
# meet every later entity too, so it ends the cycle; the next one resumes from the cursors.
ENTITY_ERROR_TYPES: frozenset[str] = frozenset(
    {
        ErrorType.MAHAK_REFUSED,
        ErrorType.MAHAK_BAD_RESPONSE,
        ErrorType.INVALID_DATA,
    }
)


def ends_cycle(error_type: str | None, *, non_retryable: bool) -> bool:
    """Whether an entity that failed for good (retries spent, or not retryable) ends the
    cycle, rather than being recorded and skipped. Decided by the error table's type; a
    non-retryable error of any other type is the entity's own too (retrying cannot help)."""
    return not (non_retryable or error_type in ENTITY_ERROR_TYPES)


# Sync-log rows of a reconciliation carry a run id with this prefix (the entity as usual).
RECONCILE_RUN_PREFIX = "reconcile-"


class EntityCounts(BaseModel):
    fetched: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    dead_lettered: int = 0
    # Paging guards (mahak_client.pager): rows received again because a page was re-read
    # without pageSize, and rows received but not stored (0 unless a guard had to drop).
    reread: int = 0
    dropped: int = 0

    def __add__(self, other: EntityCounts) -> EntityCounts:
        return EntityCounts(
            **{
                name: getattr(self, name) + getattr(other, name)
                for name in EntityCounts.model_fields
            }
        )


class SyncEntityInput(BaseModel):
    entity: str
    page_size: int | None = Field(None, ge=1)  # None: no `pageSize` (see mahak_client.pager)
    run_id: str  # one id per cycle, shared by that cycle's sync-log rows


class EntityProgress(BaseModel):
    """Heartbeat details of `sync_entity`: how far it got, carried across retries."""

    entity: str
    started_at: datetime
    pages: int = 0
    cursor: int = 0
    counts: EntityCounts = Field(default_factory=EntityCounts)

    def page_stored(self, cursor: int, counts: EntityCounts) -> None:
        """One more page stored, with the cursor it advanced to."""
        self.pages += 1
        self.cursor = cursor
        self.counts = self.counts + counts

    @classmethod
    def from_details(cls, details: Sequence[Any]) -> EntityProgress | None:
        """The progress in heartbeat (or failure) details, if they carry a readable one."""
        if not details:
            return None
        try:
            return cls.model_validate(details[0])
        except ValueError:
            return None


class EntitySyncResult(BaseModel):
    entity: str
    counts: EntityCounts = Field(default_factory=EntityCounts)
    cursor: int | None = None  # the entity's cursor afterwards (None: unknown, e.g. DB down)
    pages: int = 0
    error: str | None = None
    error_type: str | None = None
    # Reconciliations only: live rows the shop holds that the full read from 0 no longer
    # listed (reported, never deleted).
    absent_in_mahak: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return self.error is None


class RecordFailureInput(BaseModel):
    """A sync-log row for an entity whose activity gave up (permanent error or retries out)."""

    run_id: str
    entity: str
    started_at: datetime
    error: str
    counts: EntityCounts = Field(default_factory=EntityCounts)


class StockShortage(BaseModel):
    """Mahak's stock of one product detail in one store is below what paid, unsent web
    orders hold."""

    product_detail_id: int
    store_id: int
    held: float  # by all paid, unsent web orders together
    available: float  # Mahak's Count1

    def describe(self) -> str:
        return (
            f"detail {self.product_detail_id} in store {self.store_id}: Mahak has "
            f"{self.available:g}, paid unsent orders hold {self.held:g}"
        )


class OrderStockConflict(BaseModel):
    """One web order touched by shortages: its order workflow gets `inventory_conflict`."""

    order_id: int
    shortages: list[StockShortage] = Field(min_length=1)

    def worst(self) -> StockShortage:
        return max(self.shortages, key=lambda s: (s.held - s.available, -s.product_detail_id))

    def fingerprint(self) -> str:
        """Equal while the shortage is unchanged, so one conflict is signalled once."""
        return ";".join(
            f"{s.product_detail_id}@{s.store_id}:{s.held:g}/{s.available:g}"
            for s in sorted(self.shortages, key=lambda s: (s.product_detail_id, s.store_id))
        )

    def describe(self) -> str:
        return "; ".join(s.describe() for s in self.shortages)


class DetectConflictsInput(BaseModel):
    run_id: str
    page_size: int | None = Field(None, ge=1)  # for the re-read from Mahak


class CheckConflictsInput(BaseModel):
    run_id: str
    page_size: int | None = Field(None, ge=1)  # for the re-read from Mahak


class ConflictCheckResult(BaseModel):
    """What the conflict check found, after re-reading Mahak when the mirror showed any."""

    conflicts: list[OrderStockConflict] = Field(default_factory=list)  # to signal
    reread: bool = False  # the mirror showed conflicts, so stock and orders were read again
    cleared: int = 0  # orders in conflict on the mirror that the re-read cleared
    cursors: dict[str, int] = Field(default_factory=dict)  # of the re-read entities, after it


class SyncEntitiesInput(BaseModel):
    """`incoming.sync_entities`: the entities of a cycle in one activity while they are quick
    (a quiet cycle costs one activity, not one per entity)."""

    entities: list[str]
    page_size: int | None = Field(None, ge=1)
    run_id: str
    # No further entity is started once the activity has run this long: the rest go through
    # one activity each, so a pause still takes effect between entities of a long sync.
    budget_seconds: float = Field(1.0, gt=0)
    # Check inventory conflicts too when every entity was synced (the cycle's last step).
    check_conflicts: bool = True


class SyncEntitiesResult(BaseModel):
    """The entities synced, in order, up to the first that failed (not recorded: its own
    activity runs it again, with retries) or the budget; the conflict check when it ran."""

    results: list[EntitySyncResult] = Field(default_factory=list)
    conflicts: ConflictCheckResult | None = None


class ResetCursorRequest(BaseModel):
    entity: str  # a name from INCOMING_ORDER, or "*" for all of them
    row_version: int = 0

    def _name(self) -> str:
        """The logical name, given as Mahak spells it (`ProductDetails`) or in snake case."""
        try:
            return entity_name(self.entity, INCOMING_ORDER)
        except ValueError as exc:
            raise ValueError(f"{exc} or '*'") from None

    def validate_request(self) -> None:
        """Raises ValueError with an operator-readable message."""
        if self.entity != ALL_ENTITIES:
            self._name()
        if self.row_version < 0:
            raise ValueError(f"row_version must be >= 0, got {self.row_version}")

    def entities(self) -> list[str]:
        return list(INCOMING_ORDER) if self.entity == ALL_ENTITIES else [self._name()]


class ResetCursorResult(BaseModel):
    cursors: dict[str, int]  # entity -> cursor now stored


class CycleSummary(BaseModel):
    run_id: str
    trigger: Trigger
    started_at: datetime
    finished_at: datetime | None = None
    entities: dict[str, EntitySyncResult] = Field(default_factory=dict)
    skipped: list[str] = Field(default_factory=list)  # not attempted (outage, pause)
    # Checked only on a complete picture (`conflict_picture_complete`); the number of orders
    # signalled as short after the re-read.
    conflicts_checked: bool = False
    inventory_conflicts: int = 0
    # A reconciliation: every entity read from RowVersion 0 (`IncomingActivities.reconcile_entity`).
    reconcile: bool = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return not self.skipped and all(r.ok for r in self.entities.values())

    def conflict_picture_complete(self) -> bool:
        """Stock, orders and order details all synced to the end, without error, in this
        cycle: the only picture inventory conflicts may be judged on."""
        return all(
            entity in self.entities and self.entities[entity].ok for entity in CONFLICT_PICTURE
        )

    def totals(self) -> EntityCounts:
        return sum((result.counts for result in self.entities.values()), EntityCounts())


class SyncConfig(BaseModel):
    """Tunables; start-time values, carried across continue-as-new."""

    interval_seconds: float = Field(300.0, gt=0)
    page_size: int | None = Field(None, ge=1)
    # Budget for one entity including retries: past it a Mahak outage ends the cycle and
    # the next cycle resumes from the stored cursor.
    entity_timeout_seconds: float = Field(600.0, gt=0)
    attempt_timeout_seconds: float = Field(300.0, gt=0)
    heartbeat_timeout_seconds: float = Field(60.0, gt=0)
    retry_initial_seconds: float = Field(2.0, gt=0)
    retry_max_seconds: float = Field(60.0, gt=0)
    # Continue-as-new after this many cycles (None: by history size only, below), so the Web
    # UI's list is not one run per cycle; runs recorded with a number keep it.
    cycles_per_run: int | None = Field(None, ge=1)
    # ... or once a run's history holds this many events, or when Temporal suggests it.
    history_events_per_run: int = Field(5_000, ge=100)
    # Upserting an unregistered search attribute fails every workflow task, so a namespace
    # without them (a locked-down Temporal Cloud one, the time-skipping test server) turns
    # this off rather than wedging the sync.
    publish_search_attributes: bool = True
    # INCOMING_RECONCILE_EVERY_SECONDS: a cycle at least this long after the last
    # reconciliation reads every entity from RowVersion 0 instead (0: only on request).
    reconcile_every_seconds: float = Field(86400.0, ge=0)


class IncomingSyncState(BaseModel):
    """The workflow's whole state: its input, and what continue-as-new carries forward."""

    config: SyncConfig = Field(default_factory=SyncConfig)
    paused: bool = False
    cycles_done: int = 0
    next_run_at: datetime | None = None  # None: run a cycle as soon as the run starts
    sync_now_pending: bool = False
    cursors: dict[str, int] = Field(default_factory=dict)
    last_summary: CycleSummary | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    # order id -> fingerprint of the shortage last signalled to its order workflow
    signalled_conflicts: dict[str, str] = Field(default_factory=dict)
    # Reconciliations: when the last one finished (None: set when a run starts, so the first
    # one comes `reconcile_every_seconds` later), and whether an operator asked for one.
    last_reconciled_at: datetime | None = None
    reconcile_pending: bool = False


class RetryState(BaseModel):
    """The running entity's activity while Temporal retries it (filled by the CLI from the
    workflow's pending activities, not by the workflow)."""

    entity_activity: str
    attempt: int
    last_error: str | None = None
    next_attempt_at: datetime | None = None


class SyncStatus(BaseModel):
    """Answer of the `status` query.

    Page-level progress of the running entity is in the activity's heartbeat (the Web UI's
    pending activities; `mahak-sync sync status` merges it in as `current_progress`), so it
    costs no history events.
    """

    paused: bool
    running: bool
    current_entity: str | None = None
    current_progress: EntityProgress | None = None
    cycles_done: int
    next_run_at: datetime | None = None
    cursors: dict[str, int]
    last_cycle: CycleSummary | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    config: SyncConfig
    # The last signal that did not apply (no such handler), kept so it is not silently lost.
    last_refused: str | None = None
    # While Mahak (or the database) fails: the attempt being retried (CLI-filled).
    current_retry: RetryState | None = None
