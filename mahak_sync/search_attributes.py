"""Custom search attributes: a contract with operators, who filter on them in the Web UI and
with `temporal workflow list --query`. Kept free of heavy imports so workflow code can use it.

Every key in `SEARCH_ATTRIBUTES` is registered by `mahak_sync.temporal.ensure_search_attributes`
and by the bundled dev server.
"""

from temporalio.common import SearchAttributeKey

# Incoming sync: `MahakSyncKind = "incoming"`, `MahakSyncPaused = true`.
SYNC_KIND = SearchAttributeKey.for_keyword("MahakSyncKind")
SYNC_PAUSED = SearchAttributeKey.for_bool("MahakSyncPaused")
# Per-order workflows: `OrderId = 42`, `MahakSyncStatus = "dispute"`.
ORDER_ID = SearchAttributeKey.for_int("OrderId")
ORDER_SYNC_STATUS = SearchAttributeKey.for_keyword("MahakSyncStatus")

SEARCH_ATTRIBUTES: tuple[SearchAttributeKey, ...] = (
    SYNC_KIND,
    SYNC_PAUSED,
    ORDER_ID,
    ORDER_SYNC_STATUS,
)
