"""The simulated Mahak database: every entity's rows plus the server's own bookkeeping.

Rows are stored exactly as GetAllData sends them (PascalCase dicts in wire order). One
database-wide RowVersion counter stamps every write, across all entities, and never goes
back (not even on reset), so a client's stored cursors stay meaningful across test resets.
Server ids likewise keep counting. A write always replaces a row with a new dict, so a row
handed out for serialisation is never mutated behind the reader's back.

Each collection also keeps an index in RowVersion order (`_Index`), so a GetAllData page is
a bisection plus the page itself, not a scan of the table: the cost of a page no longer grows
with the table, and a request with nothing new is cheap at any size.

Thread safety: the server thread owns the state; callers hold `lock` around every read
that must be consistent and every mutation.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import threading
from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Boundary, PageOrder, SimulatorConfig
from .log import get_logger
from .schema import BY_NAME, COLLECTIONS, blank_row

_log = get_logger("mahak_simulator")

# Server-id sequences start at magnitudes like the LIVE ones (ProductId ~7 digits,
# OrderId ~9); all stay within int32 as Mahak's ids are.
_ID_START = {
    "Stores": 101,
    "ProductCategories": 501,
    "Products": 1_210_001,
    "ProductDetails": 2_310_001,
    "ProductDetailStoreAssets": 5_100_001,
    "VisitorProducts": 6_100_001,
    "Pictures": 700_001,
    "PhotoGalleries": 800_001,
    "People": 3_100_001,
    "VisitorPeople": 7_100_001,
    "Orders": 401_000_001,
    "OrderDetails": 502_000_001,
    "Receipts": 903_000_001,
}


class UnknownRow(LookupError):
    pass


@dataclass
class OrderBook:
    """What the server knows about orders beyond their rows."""

    imported: set[int] = field(default_factory=set)  # OrderIds taken into Mahak desktop
    desktop: set[int] = field(default_factory=set)  # orders created in desktop (in-store sales)
    submissions: Counter[int] = field(default_factory=Counter)  # per OrderClientId
    deletions: Counter[int] = field(default_factory=Counter)  # those sent with Deleted: true
    duplicate_submissions: int = 0
    # OrderDetailId -> (ProductDetailId, StoreId, Count1, Count2) taken from stock, so an
    # edited or deleted line gives back exactly what it took.
    stock_moves: dict[int, tuple[int, int, float, float]] = field(default_factory=dict)


class _Index:
    """One collection's rows in ascending (RowVersion, write order): parallel lists of the
    version, the row's key and the row dict as written.

    A write appends (or, for an explicit older version, inserts at `bisect_right`, after its
    equals: every write is the newest so far, so ties keep write order). The entry of the
    row it replaced is left behind, stale, and recognised by identity (`rows[key] is not
    row`: every write stores a new dict); stale entries are dropped in one pass once they
    outnumber the live ones, so a write costs O(1) amortised and the index stays within
    twice the table.
    """

    __slots__ = ("versions", "keys", "rows", "stale")

    def __init__(self) -> None:
        self.versions: list[int] = []
        self.keys: list[Any] = []
        self.rows: list[dict[str, Any]] = []
        self.stale = 0

    def add(self, key: Any, row: dict[str, Any], replaced: bool, table: dict[Any, Any]) -> None:
        version = _version_key(row)
        if not self.versions or version >= self.versions[-1]:
            self.versions.append(version)
            self.keys.append(key)
            self.rows.append(row)
        else:
            at = bisect_right(self.versions, version)
            self.versions.insert(at, version)
            self.keys.insert(at, key)
            self.rows.insert(at, row)
        if replaced:
            self.stale += 1
            if self.stale > max(1024, len(table)):
                self.compact(table)

    def compact(self, table: dict[Any, Any]) -> None:
        live = [i for i, (k, r) in enumerate(zip(self.keys, self.rows)) if table.get(k) is r]
        self.versions = [self.versions[i] for i in live]
        self.keys = [self.keys[i] for i in live]
        self.rows = [self.rows[i] for i in live]
        self.stale = 0

    def start(self, from_version: int, boundary: Boundary) -> int:
        """The first position the bound lets through (every row when `from_version <= 0`)."""
        if from_version <= 0:
            return 0
        if boundary == "exclusive":
            return bisect_right(self.versions, from_version)
        return bisect_left(self.versions, from_version)


class SimState:
    def __init__(self, config: SimulatorConfig) -> None:
        self.lock = threading.RLock()
        self._row_version = config.row_version_start
        # Next server id per collection (never reset, like the RowVersion counter).
        self._next_ids: dict[str, int] = {}
        self._raw_keys = itertools.count(1)
        self._write_seq = itertools.count(1)
        # Bumped by every write and reset: what the persistence compares to save on change.
        self.changes = 0
        # §11.3 late commits: writes made while this is > 0 stay invisible to that many
        # GetAllData requests (`SimulatorConfig.late_commit_lag`, kept in step by the app).
        self.hold_writes_for = 0
        self.clear()

    def clear(self) -> None:
        with self.lock:
            # Each collection's dict is kept in write order, which is ascending RowVersion
            # unless a test injected an explicit, older version (then `_unordered`).
            self._rows: dict[str, dict[Any, dict[str, Any]]] = {c.name: {} for c in COLLECTIONS}
            self._seq: dict[str, dict[Any, int]] = {c.name: {} for c in COLLECTIONS}
            self._index: dict[str, _Index] = {c.name: _Index() for c in COLLECTIONS}
            # Collections holding an injected older version: kept for the snapshot format
            # (a state file written here stays readable by a simulator without the index).
            self._unordered: set[str] = set()
            # Rows holding a NaN or an infinity (injected on purpose): JSON has no such
            # numbers; json.dumps writes `NaN`, msgspec `null`, so while any row holds one
            # the answers go through json.dumps as before (`api.encode_answer`).
            self._non_finite: set[tuple[str, Any]] = set()
            # Rows not yet "committed": key -> GetAllData requests they stay invisible to.
            self._held: dict[str, dict[Any, int]] = {c.name: {} for c in COLLECTIONS}
            self._client_index: dict[str, dict[int, Any]] = {c.name: {} for c in COLLECTIONS}
            self._next_codes: dict[str, int] = {}
            self.orders = OrderBook()
            self.requests: Counter[str] = Counter()
            self.faults_injected = 0
            self.issued_tokens: set[str] = set()
            self.revoked_tokens: set[str] = set()
            # Request members the schema does not know: (entity, key as sent) -> count.
            self.unknown_fields: Counter[tuple[str, str]] = Counter()
            self.changes += 1

    # --- counters ------------------------------------------------------------------------

    def next_row_version(self) -> int:
        with self.lock:
            self._row_version += 1
            return self._row_version

    @property
    def row_version(self) -> int:
        return self._row_version

    def new_id(self, collection: str) -> int:
        with self.lock:
            value = self._next_ids.get(collection, _ID_START.get(collection, 1001))
            self._next_ids[collection] = value + 1
            return value

    def new_code(self, collection: str) -> int:
        """Mahak desktop codes: small per-entity numbers, restarting with each reset."""
        with self.lock:
            value = self._next_codes.get(collection, 1)
            self._next_codes[collection] = value + 1
            return value

    # --- rows ----------------------------------------------------------------------------

    def put(
        self, collection: str, row: dict[str, Any], row_version: int | None = None
    ) -> dict[str, Any]:
        """Write (insert or replace) a row with a fresh RowVersion, or the given one.

        A row whose id is not an integer (an injected malformed row) is kept under a key of
        its own, so it never overwrites a real row.
        """
        spec = BY_NAME[collection]
        with self.lock:
            hold = 0
            if row_version is None:
                row_version = self.next_row_version()
                hold = self.hold_writes_for  # an explicit version is a row already committed
            else:
                if row_version < self._row_version:
                    self._unordered.add(collection)
                self._row_version = max(self._row_version, row_version)
            stored = {**row, "RowVersion": row_version}
            row_id = stored.get(spec.id_field)
            key: Any = (
                row_id
                if isinstance(row_id, int) and not isinstance(row_id, bool)
                else ("raw", next(self._raw_keys))
            )
            table = self._rows[collection]
            replaced = table.pop(key, None) is not None
            table[key] = stored
            self._seq[collection][key] = next(self._write_seq)
            self._index[collection].add(key, stored, replaced, table)
            self._note_non_finite(collection, key, stored)
            if hold:
                self._held[collection][key] = hold
            else:
                self._held[collection].pop(key, None)
            client_id = stored.get(spec.client_id_field)
            if isinstance(client_id, int) and not isinstance(key, tuple):
                self._client_index[collection][client_id] = key
            self.changes += 1
            return stored

    def _note_non_finite(self, collection: str, key: Any, row: dict[str, Any]) -> None:
        if _has_non_finite(row):
            self._non_finite.add((collection, key))
        elif self._non_finite:
            self._non_finite.discard((collection, key))

    @property
    def holds_non_finite(self) -> bool:
        """Whether any row holds a NaN or an infinity (see `api.encode_answer`)."""
        return bool(self._non_finite)

    def create(self, collection: str, values: dict[str, Any]) -> dict[str, Any]:
        """Insert a new row with a fresh server id, every column present."""
        spec = BY_NAME[collection]
        row = blank_row(collection)
        row.update(values)
        row[spec.id_field] = self.new_id(collection)
        return self.put(collection, row)

    def update(self, collection: str, row_id: int, **changes: Any) -> dict[str, Any]:
        with self.lock:
            return self.put(collection, {**self.require(collection, row_id), **changes})

    def get(self, collection: str, row_id: Any) -> dict[str, Any] | None:
        return self._rows[collection].get(row_id)

    def require(self, collection: str, row_id: Any) -> dict[str, Any]:
        row = self.get(collection, row_id)
        if row is None:
            raise UnknownRow(f"no {collection} row with id {row_id}")
        return row

    def live(self, collection: str, row_id: Any) -> dict[str, Any] | None:
        """The row if it exists and is not logically deleted."""
        row = self.get(collection, row_id)
        return None if row is None or row.get("Deleted") else row

    def by_client_id(self, collection: str, client_id: int | None) -> dict[str, Any] | None:
        if client_id is None:
            return None
        key = self._client_index[collection].get(client_id)
        return None if key is None else self._rows[collection].get(key)

    def rows(self, collection: str) -> list[dict[str, Any]]:
        """Every row, ascending RowVersion (write order among equals)."""
        with self.lock:
            index, table = self._index[collection], self._rows[collection]
            if not index.stale:
                return list(index.rows)
            return [r for k, r in zip(index.keys, index.rows) if table.get(k) is r]

    def note_unknown(self, entity: str, keys: list[str]) -> None:
        """Count request members the schema does not know; they fail nothing (the real
        server's binder ignores unknown JSON members), but a client sending them is
        probably misspelling a field, so tests read them (`/_sim/unknown-fields`)."""
        if not keys:
            return
        with self.lock:
            for key in keys:
                self.unknown_fields[(entity, str(key))] += 1
        _log.warning(
            "simulated request carried unknown fields",
            entity=entity,
            fields=[str(k) for k in keys][:20],
        )

    # --- late commits (§11.3) --------------------------------------------------------------

    def commit_tick(self) -> None:
        """One GetAllData request went by: held rows are one request closer to visible."""
        with self.lock:
            for held in self._held.values():
                for key in list(held):
                    held[key] -= 1
                    if held[key] <= 0:
                        del held[key]

    @property
    def held_rows(self) -> int:
        return sum(len(h) for h in self._held.values())

    def find(self, collection: str, **match: Any) -> list[dict[str, Any]]:
        with self.lock:
            return [
                r
                for r in self._rows[collection].values()
                if all(r.get(k) == v for k, v in match.items())
            ]

    def query(
        self,
        collection: str,
        from_version: int,
        *,
        boundary: Boundary,
        page_size: int | None = None,
        order_types: list[int] | None = None,
        page_order: PageOrder = "row_version",
        server_cap: int | None = None,
        stray_row: bool = False,
    ) -> list[dict[str, Any]]:
        """GetAllData's slice of one entity: rows at/after `from_version`, capped.

        The paging modes (`SimulatorConfig.page_order`, `server_cap`, `stray_row`) bend this
        the way a server other than §9's default could; rows still held by a late commit
        (`late_commit_lag`) are left out. The index is bisected at the bound and read up to
        the cap, except in "id" order, which must see every row past the bound to sort them."""
        index, table, held = self._index[collection], self._rows[collection], self._held[collection]
        versions, keys, rows = index.versions, index.keys, index.rows
        current = table.get

        def shown(first: int, end: int) -> list[dict[str, Any]]:
            """The rows of positions first..end-1 the answer may hold: current (not a stale
            entry), committed, and of a wanted order type."""
            return [
                row
                for key, row in zip(keys[first:end], rows[first:end])
                if current(key) is row
                and key not in held
                and not (order_types and row.get("OrderType") not in order_types)
            ]

        start = index.start(from_version, boundary)
        selected: list[dict[str, Any]] = []
        if stray_row and from_version > 0:
            # The newest row the bound excludes, in its place in the order (just before).
            selected += next((s for i in range(start - 1, -1, -1) if (s := shown(i, i + 1))), [])
        caps = [c for c in (page_size, server_cap) if c]
        cap = min(caps) if caps else None
        # In RowVersion order the page is complete once it holds `cap` rows (a stray row
        # taking one of them); in id order every row past the bound is a candidate.
        stop = cap if cap is not None and page_order != "id" else len(versions)
        first = start
        while len(selected) < stop and first < len(versions):
            end = min(len(versions), first + stop - len(selected))
            selected += shown(first, end)
            first = end
        if page_order == "id":
            id_field = BY_NAME[collection].id_field
            selected.sort(
                key=lambda r: (
                    not isinstance(r.get(id_field), int),
                    r.get(id_field) if isinstance(r.get(id_field), int) else 0,
                )
            )
        return selected[:cap] if cap else selected

    # --- persistence (the dev stack's simulator remembers its data across restarts) --------

    SNAPSHOT_FORMAT = 1

    def snapshot(self) -> dict[str, Any]:
        """The data a restarted simulator needs to go on where this one stopped: every row
        (in write order), the RowVersion and id counters, desktop codes and the order book.
        Tokens, request counters and held (uncommitted) writes are left out."""
        with self.lock:
            book = self.orders
            return {
                "format": self.SNAPSHOT_FORMAT,
                "row_version": self._row_version,
                "next_ids": dict(self._next_ids),
                "next_codes": dict(self._next_codes),
                "unordered": sorted(self._unordered),
                "rows": {
                    name: [
                        [list(key) if isinstance(key, tuple) else key, self._seq[name][key], row]
                        for key, row in rows.items()
                    ]
                    for name, rows in self._rows.items()
                    if rows
                },
                "orders": {
                    "imported": sorted(book.imported),
                    "desktop": sorted(book.desktop),
                    "submissions": [[k, v] for k, v in book.submissions.items()],
                    "deletions": [[k, v] for k, v in book.deletions.items()],
                    "duplicate_submissions": book.duplicate_submissions,
                    "stock_moves": [[k, list(v)] for k, v in book.stock_moves.items()],
                },
            }

    def restore(self, data: dict[str, Any]) -> None:
        """Replace everything with a `snapshot()`; raises ValueError for another format."""
        if data.get("format") != self.SNAPSHOT_FORMAT:
            raise ValueError(f"unknown simulator state format {data.get('format')!r}")
        with self.lock:
            self.clear()
            self._row_version = int(data["row_version"])
            self._next_ids = {k: int(v) for k, v in data["next_ids"].items()}
            self._next_codes = {k: int(v) for k, v in data["next_codes"].items()}
            self._unordered = set(data["unordered"]) & set(self._rows)
            top_seq = top_raw = 0
            for name, entries in data["rows"].items():
                if name not in self._rows:
                    continue  # a collection this version no longer has
                spec = BY_NAME[name]
                for raw_key, seq, row in entries:
                    key: Any = tuple(raw_key) if isinstance(raw_key, list) else raw_key
                    if isinstance(key, tuple):
                        top_raw = max(top_raw, int(key[1]))
                    self._rows[name][key] = row
                    self._seq[name][key] = int(seq)
                    top_seq = max(top_seq, int(seq))
                    client_id = row.get(spec.client_id_field)
                    if isinstance(client_id, int) and not isinstance(key, tuple):
                        self._client_index[name][client_id] = key
                    self._note_non_finite(name, key, row)
                self._reindex(name)
            self._write_seq = itertools.count(top_seq + 1)
            self._raw_keys = itertools.count(top_raw + 1)
            book = data["orders"]
            self.orders = OrderBook(
                imported=set(book["imported"]),
                desktop=set(book["desktop"]),
                submissions=Counter({int(k): int(v) for k, v in book["submissions"]}),
                deletions=Counter({int(k): int(v) for k, v in book["deletions"]}),
                duplicate_submissions=int(book["duplicate_submissions"]),
                stock_moves={int(k): tuple(v) for k, v in book["stock_moves"]},  # type: ignore[misc]
            )

    def _reindex(self, collection: str) -> None:
        """Rebuild a collection's index from its rows (after a restore)."""
        seq = self._seq[collection]
        index = self._index[collection] = _Index()
        ordered = sorted(
            self._rows[collection].items(), key=lambda kv: (_version_key(kv[1]), seq[kv[0]])
        )
        index.versions = [_version_key(row) for _, row in ordered]
        index.keys = [key for key, _ in ordered]
        index.rows = [row for _, row in ordered]

    def save(self, path: Path) -> None:
        """Write `snapshot()` to `path` atomically (a crash mid-write keeps the old file)."""
        with self.lock:
            text = json.dumps(self.snapshot(), ensure_ascii=False, separators=(",", ":"))
        tmp = path.with_name(path.name + ".tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)

    def load(self, path: Path) -> None:
        self.restore(json.loads(path.read_text(encoding="utf-8")))


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(v) for v in value)
    return False


def _version_key(row: dict[str, Any]) -> int:
    version = row.get("RowVersion")
    return version if isinstance(version, int) else 0
