"""Async client for Mahak's Sync API v3 (`/API/v3/Sync/*`); see `shared/mahak-api.md`."""

from .client import MahakClient, parse_retry_after
from .disputes import DisputeItem, OrderDisputeItem, OrderDisputeOutcome, SolveOrderDisputeResult
from .errors import (
    MahakAuthError,
    MahakError,
    MahakPermanentError,
    MahakProtocolError,
    MahakTransientError,
)
from .models import (
    ENTITIES,
    INCOMING_ORDER,
    EntityBatch,
    EntitySpec,
    LoginData,
    RejectedRow,
    RowStamp,
)
from .pager import PagingProbe, drain, iter_pages, probe_paging
from .save import (
    EntityError,
    EntityUpdateResult,
    RecordFailure,
    SaveAllDataRequest,
    SaveAllDataResult,
    is_already_registered,
)

__all__ = [
    "ENTITIES",
    "INCOMING_ORDER",
    "DisputeItem",
    "EntityBatch",
    "EntityError",
    "EntitySpec",
    "EntityUpdateResult",
    "LoginData",
    "MahakAuthError",
    "MahakClient",
    "MahakError",
    "MahakPermanentError",
    "MahakProtocolError",
    "MahakTransientError",
    "OrderDisputeItem",
    "OrderDisputeOutcome",
    "PagingProbe",
    "RecordFailure",
    "RejectedRow",
    "RowStamp",
    "SaveAllDataRequest",
    "SaveAllDataResult",
    "SolveOrderDisputeResult",
    "drain",
    "is_already_registered",
    "iter_pages",
    "parse_retry_after",
    "probe_paging",
]
