"""The simulator's RowVersion index (issue 16): GetAllData answers are the same as a plain scan
of the table would give, whatever writes came before, in every paging mode.

`SimState.query` bisects an index kept in RowVersion order instead of scanning every row. An
update gives a row a new, higher version (it moves to the end), a logical delete is such an
update, an injected older or equal version goes in its place among equals, a late commit
hides a row, and a reload from the state file rebuilds the index. Random sequences of those
writes run against `SimState`, and after each one every paging mode's answer is compared with
a reference written here the simple way: every current row sorted by (RowVersion, write
order), filtered, cut. The answer's JSON encoder (msgspec) writes what `json.dumps` did.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mahak_simulator.api import encode_answer
from mahak_simulator.config import SimulatorConfig
from mahak_simulator.state import SimState

COLLECTIONS = ("Stores", "Orders")
ID_FIELD = {"Stores": "StoreId", "Orders": "OrderId"}


@dataclass
class Reference:
    """What the table holds, kept independently of `SimState`: each row's latest write."""

    rows: dict[str, dict[int, tuple[int, dict[str, Any]]]] = field(
        default_factory=lambda: {c: {} for c in COLLECTIONS}
    )  # collection -> id -> (write number, row as stored)
    held: dict[str, dict[int, int]] = field(default_factory=lambda: {c: {} for c in COLLECTIONS})
    writes: int = 0

    def wrote(self, collection: str, row: dict[str, Any], hold: int) -> None:
        self.writes += 1
        row_id = row[ID_FIELD[collection]]
        self.rows[collection][row_id] = (self.writes, row)
        if hold:
            self.held[collection][row_id] = hold
        else:
            self.held[collection].pop(row_id, None)

    def tick(self) -> None:
        for held in self.held.values():
            for key in list(held):
                held[key] -= 1
                if held[key] <= 0:
                    del held[key]

    def ordered(self, collection: str) -> list[dict[str, Any]]:
        entries = sorted(self.rows[collection].values(), key=lambda e: (e[1]["RowVersion"], e[0]))
        return [row for _, row in entries]

    def query(self, collection: str, q: Query) -> list[dict[str, Any]]:
        held = self.held[collection]
        visible = [
            r
            for r in self.ordered(collection)
            if r[ID_FIELD[collection]] not in held
            and not (q.order_types and r.get("OrderType") not in q.order_types)
        ]

        def passes(r: dict[str, Any]) -> bool:
            v = r["RowVersion"]
            return q.from_version <= 0 or (
                v > q.from_version if q.boundary == "exclusive" else v >= q.from_version
            )

        selected = [r for r in visible if passes(r)]
        excluded = [r for r in visible if not passes(r)]
        if q.stray_row and excluded:
            selected.insert(0, excluded[-1])
        if q.page_order == "id":
            selected.sort(key=lambda r: r[ID_FIELD[collection]])
        caps = [c for c in (q.page_size, q.server_cap) if c]
        return selected[: min(caps)] if caps else selected


@dataclass
class Query:
    from_version: int
    boundary: str
    page_size: int | None
    page_order: str
    server_cap: int | None
    stray_row: bool
    order_types: list[int] | None


# Operations: ("insert", collection, order type), ("update", collection, pick, order type),
# ("delete", collection, pick), ("inject", collection, pick, delta): a new row with the
# version of an existing one shifted by delta (0 = a tie, negative = older), ("lag", n),
# ("tick",), ("reload",).
_collection = st.sampled_from(COLLECTIONS)
_pick = st.integers(0, 10_000)
_type = st.sampled_from([1, 2, 3])
operations = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), _collection, _type),
        st.tuples(st.just("insert"), _collection, _type),
        st.tuples(st.just("update"), _collection, _pick, _type),
        st.tuples(st.just("delete"), _collection, _pick),
        st.tuples(st.just("inject"), _collection, _pick, st.integers(-3, 0)),
        st.tuples(st.just("lag"), st.integers(0, 2)),
        st.just(("tick",)),
        st.just(("reload",)),
    ),
    min_size=1,
    max_size=60,
)
queries = st.builds(
    Query,
    from_version=st.integers(-1, 80),
    boundary=st.sampled_from(["inclusive", "exclusive"]),
    page_size=st.none() | st.integers(1, 8),
    page_order=st.sampled_from(["row_version", "id"]),
    server_cap=st.none() | st.integers(1, 8),
    stray_row=st.booleans(),
    order_types=st.none() | st.lists(_type, min_size=1, max_size=2),
)


def _reloaded(state: SimState) -> SimState:
    """A new state read back from what `save()` writes (through JSON, as the file holds it)."""
    fresh = SimState(SimulatorConfig())
    fresh.restore(json.loads(json.dumps(state.snapshot())))
    fresh.hold_writes_for = state.hold_writes_for
    return fresh


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(operations, st.lists(queries, min_size=1, max_size=4))
def test_every_page_is_what_a_scan_of_the_table_gives(ops: list[Any], probes: list[Query]) -> None:
    state = SimState(SimulatorConfig())
    base = state.row_version
    ref = Reference()

    def existing(collection: str, pick: int) -> dict[str, Any] | None:
        ids = sorted(ref.rows[collection])
        return ref.rows[collection][ids[pick % len(ids)]][1] if ids else None

    def check() -> None:
        for collection in COLLECTIONS:
            assert state.rows(collection) == ref.ordered(collection)
            for probe in probes:
                q = dataclasses.replace(
                    probe,
                    # Small offsets from the first version: bounds land among the rows.
                    from_version=probe.from_version + base
                    if probe.from_version > 0
                    else probe.from_version,
                    order_types=probe.order_types if collection == "Orders" else None,
                )
                got = state.query(
                    collection,
                    q.from_version,
                    boundary=q.boundary,  # type: ignore[arg-type]
                    page_size=q.page_size,
                    order_types=q.order_types,
                    page_order=q.page_order,  # type: ignore[arg-type]
                    server_cap=q.server_cap,
                    stray_row=q.stray_row,
                )
                assert got == ref.query(collection, q), (collection, q)

    for op in ops:
        kind = op[0]
        if kind == "insert":
            _, collection, order_type = op
            hold = state.hold_writes_for
            row = state.create(collection, {"OrderType": order_type, "Name": "n"})
            ref.wrote(collection, row, hold)
        elif kind in ("update", "delete"):
            collection, pick = op[1], op[2]
            target = existing(collection, pick)
            if target is None:
                continue
            changes = {"OrderType": op[3]} if kind == "update" else {"Deleted": True}
            hold = state.hold_writes_for
            row = state.update(collection, target[ID_FIELD[collection]], **changes)
            assert row["RowVersion"] > target["RowVersion"]
            ref.wrote(collection, row, hold)
        elif kind == "inject":
            _, collection, pick, delta = op
            target = existing(collection, pick)
            if target is None:
                continue
            new_id = state.new_id(collection)
            row = state.put(
                collection,
                {ID_FIELD[collection]: new_id, "OrderType": 1, "Deleted": False},
                row_version=target["RowVersion"] + delta,
            )
            ref.wrote(collection, row, 0)  # an explicit version is a row already committed
        elif kind == "lag":
            state.hold_writes_for = op[1]
        elif kind == "tick":
            state.commit_tick()
            ref.tick()
        elif kind == "reload":
            state = _reloaded(state)
            ref.held = {c: {} for c in COLLECTIONS}  # held writes are not saved
        check()


def test_updates_move_rows_to_the_end_and_survive_a_reload(tmp_path: Any) -> None:
    """Many updates (enough to compact the index) and logical deletes, then a state file:
    the pages after every cursor hold exactly the rows changed since, in version order."""
    state = SimState(SimulatorConfig())
    ids = [state.create("Stores", {"Name": f"s{i}"})["StoreId"] for i in range(3000)]
    cursor = state.row_version
    changed = ids[::3]
    for round_ in range(3):  # 3000 updates: past the compaction threshold
        for store_id in changed:
            state.update("Stores", store_id, Name=f"r{round_}")
    for store_id in ids[1::7]:
        state.update("Stores", store_id, Deleted=True)
        assert len(state.rows("Stores")) == len(ids)
    assert sorted(r["StoreId"] for r in state.rows("Stores")) == ids  # each row once
    expected = [r["StoreId"] for r in state.rows("Stores")][-(len(set(changed) | set(ids[1::7]))) :]

    def page_ids(s: SimState, size: int) -> list[int]:
        seen: list[int] = []
        at = cursor
        while page := s.query("Stores", at, boundary="exclusive", page_size=size):
            seen += [r["StoreId"] for r in page]
            versions = [r["RowVersion"] for r in page]
            assert versions == sorted(versions) and versions[0] > at
            at = versions[-1]
        return seen

    first = page_ids(state, 100)
    assert first == expected
    assert sorted(first) == sorted(set(changed) | set(ids[1::7]))
    assert page_ids(state, 100_000) == first
    assert state.query("Stores", state.row_version, boundary="exclusive") == []

    path = tmp_path / "state.json"
    state.save(path)
    reloaded = SimState(SimulatorConfig())
    reloaded.load(path)
    assert page_ids(reloaded, 100) == first
    assert reloaded.rows("Stores") == state.rows("Stores")
    # A write after the reload still lands after every row read back.
    newest = reloaded.update("Stores", ids[0], Name="after reload")
    assert reloaded.query("Stores", newest["RowVersion"] - 1, boundary="exclusive") == [newest]


def test_answers_are_the_json_the_stdlib_writes_even_for_values_json_lacks() -> None:
    """GetAllData answers are encoded by msgspec; a NaN or an infinity (which it would write
    as null) or an integer past 64 bits in the table sends the answer through `json.dumps`,
    so an injected oddity reaches the client exactly as before."""
    state = SimState(SimulatorConfig())
    plain = state.create("Stores", {"Name": "انبار ي", "Stock": 1})

    def stdlib(answer: Any) -> bytes:
        return json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    answer = {"Result": True, "Data": {"Objects": {"Stores": [plain], "Orders": None}}}
    assert json.loads(encode_answer(answer, state)) == answer

    for odd in (float("nan"), float("-inf"), 2**70):
        row = state.update("Stores", plain["StoreId"], Stock=odd)
        answer = {"Result": True, "Data": {"Objects": {"Stores": [row]}}}
        assert encode_answer(answer, state) == stdlib(answer)
    # The oddity overwritten: the table is plain again, and so is the answer.
    row = state.update("Stores", plain["StoreId"], Stock=2)
    answer = {"Result": True, "Data": {"Objects": {"Stores": [row]}}}
    assert not state.holds_non_finite
    assert json.loads(encode_answer(answer, state)) == answer
    # A reload finds a NaN read back from the state file too.
    state.update("Stores", plain["StoreId"], Stock=float("nan"))
    reloaded = _reloaded(state)
    assert reloaded.holds_non_finite
