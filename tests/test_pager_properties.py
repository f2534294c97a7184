"""Property tests of the pager (issue 12): random servers against the incoming sync's cursor rule.

An in-memory Mahak (`FakeMahak`, no HTTP) serves one entity (`stores`) from a row set whose
RowVersions come from one shared counter with ties (runs of equal versions, random lengths, at
random places), under a random requested `pageSize`, an optional silent server cap, page order
by RowVersion or by id, an inclusive or exclusive bound and an optional stray row (the newest
row the bound excludes, sent first, like the simulator's `stray_row`). Between requests it
commits rows late (a RowVersion at or below the highest one it already served) and deletes rows
(re-emitted with Deleted and a new RowVersion).

The shop is a dict id -> (RowVersion, deleted), applied newer-only, fed by the real
`IncomingSync._apply_pages` (store-then-advance cursor, `include_held=True`, evidence shared
across reads) with `catalog.apply_page` replaced by the dict. A first sync from 0 runs while
the server changes; then more late commits and deletes; then the look-back read
(from `cursor - N`) or, when a late commit is older than the window, a full read from 0.

Properties:
1. after the final read the shop holds exactly Mahak's rows (ids, versions, deleted flags),
   unless a read stopped with `MahakProtocolError`;
2. after every stored page the cursor does not pass any server row the shop does not hold at
   that version: a sync resuming from it would read the row (RowVersion >= cursor on an
   inclusive server, > cursor on an exclusive one; rows committed late are the look-back's job, not the
   cursor's, and are left out of this one);
3. every row the server sent that the pager did not hand on lies in an answer that was read
   again, and the re-read/dropped counts agree with the WARNING lines logged for them.

The silent cap is kept above the longest run of equal RowVersions plus the rows late commits
can add to a run plus a stray (the pager documents that it assumes a cap above the longest
run). Examples are derandomized (fixed seed, no example database): CI runs the same 200 each
time.

Page order by id: no answer shows whether a capped list was the lowest RowVersions (there is
no upper bound to ask with), and an id-ordered list that happens to be ascending cannot be told
from one that is. So the client sends no `pageSize` by default (shared/mahak-api.md §10 (a)),
and the id-ordered servers are checked (a) with that default, where the properties hold, and
(b) with a page size trusted wrongly, where the reconciliation read (from 0, never capped)
restores Mahak's rows exactly and counts every row it had to repair; `probe_paging` (`mahak
check --paging`) names such a server beforehand. A silent server cap in id order is out of
reach of any client (the answer ends where the data could) and is not generated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from unittest import mock
from unittest.mock import patch

import pytest
import structlog
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

import activities.incoming as incoming_module
import mahak_client.pager as pager_module
from activities.incoming import IncomingSync
from mahak_client import MahakProtocolError, iter_pages, probe_paging
from mahak_client.lean import parse_get_all_data_lean
from mahak_client.models import EntityBatch, Store
from shopdb import catalog
from shopdb.models import ApplyCounts

ENTITY = "stores"
COMMON = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class Scenario:
    versions: list[tuple[int, int, bool]]  # (id, RowVersion, deleted) initial rows
    counter: int  # the shared counter after the initial rows
    page_size: int | None  # None: no `pageSize` sent (the default)
    server_cap: int | None
    page_order: str  # "row_version" | "id"
    inclusive: bool
    stray: bool
    during: dict[int, list[tuple[str, int]]]  # request index -> ops, during the first sync
    after: list[tuple[str, int]]  # ops between the first sync and the final read
    lookback: int

    def describe(self) -> str:
        return (
            f"rows={self.versions} page_size={self.page_size} cap={self.server_cap} "
            f"order={self.page_order} inclusive={self.inclusive} stray={self.stray} "
            f"during={self.during} after={self.after} lookback={self.lookback}"
        )


@st.composite
def scenarios(
    draw: st.DrawFn, order: str = "row_version", page_sizes: bool = True, server_caps: bool = True
) -> Scenario:
    # Runs of equal RowVersions of random length, gaps of a shared counter between them.
    runs = draw(st.lists(st.integers(1, 6), min_size=0, max_size=12))
    counter = draw(st.integers(0, 5))
    flat: list[int] = []
    for length in runs:
        counter += draw(st.integers(1, 3))
        flat += [counter] * length
    n = len(flat)
    ids = draw(st.permutations(list(range(1, n + 1)))) if n else []
    deleted = draw(st.lists(st.booleans(), min_size=n, max_size=n)) if n else []
    versions = [(ids[i], flat[i], deleted[i]) for i in range(n)]
    op = st.tuples(st.sampled_from(["late", "delete"]), st.integers(0, 10**6))
    during = draw(
        st.dictionaries(st.integers(1, 8), st.lists(op, min_size=1, max_size=3), max_size=3)
    )
    after = draw(st.lists(op, max_size=4))
    late = sum(1 for ops in [*during.values(), after] for kind, _ in ops if kind == "late")
    longest = max(runs, default=0)
    page_size = draw(st.none() | st.integers(1, 12)) if page_sizes else None
    caps = st.integers(0, 10).map(lambda extra: longest + late + 2 + extra)
    cap = draw(st.none() | caps) if server_caps else None
    return Scenario(
        versions=versions,
        counter=counter,
        page_size=page_size,
        server_cap=cap,
        page_order=order,
        inclusive=draw(st.booleans()),
        stray=draw(st.booleans()),
        during=during,
        after=after,
        lookback=draw(st.integers(1, 15)),
    )


@dataclass
class FakeMahak:
    """One entity's GetAllData, bent by the scenario; records what it sent."""

    sc: Scenario
    logs: list[dict[str, Any]]
    rows: dict[int, tuple[int, bool]] = field(default_factory=dict)
    counter: int = 0
    served_max: int = 0
    late: set[tuple[int, int]] = field(default_factory=set)  # (id, RowVersion) committed late
    requests: int = 0
    scheduled: dict[int, list[tuple[str, int]]] = field(default_factory=dict)
    sent: list[tuple[int, list[tuple[int, int]]]] = field(default_factory=list)  # (logs at, pairs)
    sizes: list[int | None] = field(default_factory=list)  # the pageSize of each request

    def __post_init__(self) -> None:
        self.rows = {i: (v, d) for i, v, d in self.sc.versions}
        self.counter = self.sc.counter

    def mutate(self, ops: list[tuple[str, int]]) -> None:
        for kind, pick in ops:
            if kind == "late" and self.served_max > 0:
                new_id = max(self.rows, default=0) + 1
                version = 1 + pick % self.served_max  # at or below what was already served
                self.rows[new_id] = (version, False)
                self.late.add((new_id, version))
            elif kind == "late":  # nothing served yet: an ordinary commit
                self.counter += 1
                self.rows[max(self.rows, default=0) + 1] = (self.counter, False)
            elif self.rows:
                target = sorted(self.rows)[pick % len(self.rows)]
                self.counter += 1
                self.rows[target] = (self.counter, True)

    async def get_all_data(
        self, from_versions: Mapping[str, int], *, page_size: int | None = None
    ) -> dict[str, EntityBatch]:
        selected = self._select(from_versions, page_size)
        rows = [Store(store_id=i, row_version=v, deleted=d, name=f"s{i}") for i, v, d in selected]
        return {
            ENTITY: EntityBatch(
                entity=ENTITY,
                rows=rows,
                max_row_version=max((v for _, v, _ in selected), default=None),
            )
        }

    async def get_all_data_lean(
        self, from_versions: Mapping[str, int], *, page_size: int | None = None
    ) -> dict[str, EntityBatch]:
        """The same answer on the wire, read leanly (as the client reads uncapped answers)."""
        selected = self._select(from_versions, page_size)
        rows = [
            {"StoreId": i, "RowVersion": v, "Deleted": d, "Name": f"s{i}"} for i, v, d in selected
        ]
        body = json.dumps({"Result": True, "Data": {"Objects": {"Stores": rows}}}).encode()
        return parse_get_all_data_lean("GetAllDataV2", body, [ENTITY], status=200)

    def _select(
        self, from_versions: Mapping[str, int], page_size: int | None
    ) -> list[tuple[int, int, bool]]:
        self.requests += 1
        self.sizes.append(page_size)
        self.mutate(self.scheduled.get(self.requests, []))
        start = from_versions[ENTITY]
        ordered = sorted(self.rows.items(), key=lambda kv: (kv[1][0], kv[0]))
        selected, stray = [], None
        for row_id, (version, deleted) in ordered:
            if start > 0 and (version < start or (not self.sc.inclusive and version == start)):
                stray = (row_id, version, deleted)
                continue
            selected.append((row_id, version, deleted))
        if self.sc.stray and stray is not None:
            selected.insert(0, stray)
        if self.sc.page_order == "id":
            selected.sort(key=lambda r: r[0])
        caps = [c for c in (page_size, self.sc.server_cap) if c]
        if caps:
            selected = selected[: min(caps)]
        self.served_max = max([self.served_max, *(v for _, v, _ in selected)])
        self.sent.append((len(self.logs), [(i, v) for i, v, _ in selected]))
        return selected


@contextlib.contextmanager
def _capturable_loggers() -> Iterator[None]:
    """The modules' loggers are bound at import, with whatever structlog configuration the
    run had then (other tests configure it): unbound proxies are resolved at each call, so
    `capture_logs` sees every line whatever ran before."""
    with (
        mock.patch.object(pager_module, "log", structlog.get_logger(pager_module.__name__)),
        mock.patch.object(incoming_module, "log", structlog.get_logger(incoming_module.__name__)),
    ):
        yield


async def _run(sc: Scenario, *, trusted_wrongly: bool = False) -> None:
    """With `trusted_wrongly` (a page size against an id-ordered server), the first read may
    miss rows; only the reconciliation read's outcome is checked."""
    # Parts of two rows: uncapped answers are stored a part at a time, runs of equal
    # RowVersions and all, under the same cursor checks.
    with (
        capture_logs() as logs,
        _capturable_loggers(),
        mock.patch.object(incoming_module, "PART_ROWS", 2),
    ):
        server = FakeMahak(sc, logs)
        server.scheduled = sc.during
        shop: dict[int, tuple[int, bool]] = {}
        yielded: set[tuple[int, int]] = set()
        cursors: list[int] = []

        async def apply_page(
            _pool: Any, batch: EntityBatch, *, new_cursor: int, run_id: str | None = None, **_: Any
        ) -> ApplyCounts:
            inserted = unchanged = 0
            for row in batch.rows:
                yielded.add((row.store_id, row.row_version))
                held = shop.get(row.store_id)
                if held is None or row.row_version > held[0]:
                    shop[row.store_id] = (row.row_version, row.deleted)
                    inserted += 1
                else:
                    unchanged += 1
            cursors.append(new_cursor)
            if trusted_wrongly:
                return ApplyCounts(inserted=inserted, unchanged=unchanged)
            # (2) the cursor stored with this page passes no unstored row.
            unstored = [
                v
                for i, (v, _) in server.rows.items()
                if (i, v) not in server.late and shop.get(i, (None,))[0] != v
            ]
            # A sync resuming from this cursor reads RowVersion >= cursor (inclusive server)
            # or > cursor (exclusive): every unstored row must lie in that range.
            assert not unstored or (
                new_cursor <= min(unstored) if sc.inclusive else new_cursor < min(unstored)
            ), (
                f"cursor {new_cursor} passes unstored RowVersion {min(unstored)}; "
                f"shop={shop} server={server.rows} late={server.late}"
            )
            return ApplyCounts(inserted=inserted, unchanged=unchanged)

        sync = IncomingSync(None, server, lookback=sc.lookback)  # type: ignore[arg-type]

        async def read(
            cursor: int, lookback: int, *, reconcile: bool = False
        ) -> tuple[int, bool, int]:
            """One `_apply_pages` read; (cursor, stopped by a protocol error, rows it changed).
            `reconcile`: from 0 without `pageSize`, as `reconcile_entity` reads."""
            first_request, first_log = len(server.sent), len(logs)
            yielded.clear()
            page_reread = changed = 0
            failed = False
            pages = (
                sync._apply_pages(ENTITY, cursor, None, "run", start=0)
                if reconcile
                else sync._apply_pages(ENTITY, cursor, sc.page_size, "run", lookback=lookback)
            )
            try:
                with patch.object(catalog, "apply_page", apply_page):
                    async for cursor, counts in pages:  # noqa: B007 - the last one is returned
                        page_reread += counts.reread
                        changed += counts.inserted
                        assert counts.dropped == 0  # include_held: nothing is dropped
            except MahakProtocolError:
                failed = True
            if not trusted_wrongly:
                _check_accounting(
                    server,
                    logs[first_log:],
                    server.sent[first_request:],
                    yielded,
                    failed,
                    page_reread,
                    first_log,
                )
            return cursor, failed, changed

        if trusted_wrongly:
            cursor, _, _ = await read(0, 0)
            server.scheduled = {}
            server.mutate(sc.after)
            lacking = sum(1 for i, (v, _) in server.rows.items() if shop.get(i, (None,))[0] != v)
            event(f"rows lacking before the reconciliation: {lacking > 0}")
            _, failed, changed = await read(cursor, 0, reconcile=True)
            assert not failed
            assert shop == server.rows, f"shop={shop} server={server.rows}"
            assert changed == lacking, "the reconciliation did not count what it repaired"
            return

        cursor, failed1, _ = await read(0, 0)
        server.scheduled = {}
        server.mutate(sc.after)
        window_start = max(0, cursor - sc.lookback)
        missing_late = [
            v
            for i, v in server.late
            if server.rows.get(i, (None,))[0] == v and shop.get(i, (None,))[0] != v
        ]
        if any(v <= window_start for v in missing_late):
            event("final read: reconciliation from 0")
            cursor, failed2, _ = await read(cursor, cursor)  # reconciliation: from 0
        else:
            event("final read: look-back window")
            cursor, failed2, _ = await read(cursor, sc.lookback)  # the look-back window
        event(f"stopped by MahakProtocolError: {failed1 or failed2}")
        event(
            f"rows re-read without pageSize: {any(e['event'] == 'mahak.page_reread' for e in logs)}"
        )
        event(f"late commits: {bool(server.late)}")
        assert cursors == sorted(cursors), "the cursor went backwards"
        if not (failed1 or failed2):
            # (1) the shop holds exactly Mahak's rows.
            assert shop == server.rows, f"shop={shop} server={server.rows}"


def _check_accounting(
    server: FakeMahak,
    logs: list[dict[str, Any]],
    sent: list[tuple[int, list[tuple[int, int]]]],
    yielded: set[tuple[int, int]],
    failed: bool,
    page_reread: int,
    log_base: int,
) -> None:
    """(3) rows not handed on were in answers read again, counted and logged at WARNING."""
    reread_logs = [e for e in logs if e["event"] in ("mahak.page_reread", "mahak.cap_probe")]
    assert all(e["log_level"] == "warning" for e in reread_logs)
    logged_reread = sum(e["rows"] for e in reread_logs)
    guard = [e for e in logs if e["event"] == "incoming.paging_guard"]
    if not failed:
        if logged_reread:
            assert len(guard) == 1 and guard[0]["log_level"] == "warning"
            assert guard[0]["reread"] == logged_reread, (guard, reread_logs)
        if guard:
            assert guard[0]["dropped"] == 0
        assert page_reread <= logged_reread
    # Which answers were read again: a reread/probe line logged after that request.
    reread_answers: set[int] = set()
    for n, (at, _pairs) in enumerate(sent):
        until = sent[n + 1][0] if n + 1 < len(sent) else log_base + len(logs)
        if any(
            e["event"] in ("mahak.page_reread", "mahak.cap_probe")
            for e in logs[at - log_base : until - log_base]
        ):
            reread_answers.add(n)
        if any(e["event"] == "mahak.cap_probe" for e in logs[at - log_base : until - log_base]):
            reread_answers.add(n + 1)  # the probe's own answer (from 0) is counted as reread
    if failed:
        return
    current = {(i, v) for i, (v, _) in server.rows.items()}
    for n, (_at, pairs) in enumerate(sent):
        for pair in pairs:
            if pair in yielded or pair not in current:
                continue  # handed on, or superseded on the server since (deleted anew)
            assert any(pair in sent[m][1] for m in reread_answers), (
                f"row {pair} sent in answer {n} was neither handed on nor counted as re-read"
            )


def _check(sc: Scenario, *, trusted_wrongly: bool = False) -> None:
    try:
        asyncio.run(_run(sc, trusted_wrongly=trusted_wrongly))
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nscenario: {sc.describe()}") from None


@COMMON
@given(scenarios(order="row_version"))
def test_pager_against_random_servers_ordered_by_row_version(sc: Scenario) -> None:
    _check(sc)


@COMMON
@given(scenarios(order="id", page_sizes=False, server_caps=False))
def test_without_page_size_servers_ordered_by_id_lose_nothing(sc: Scenario) -> None:
    _check(sc)


@COMMON
@given(scenarios(order="id", server_caps=False))
def test_a_page_size_trusted_wrongly_is_repaired_by_the_reconciliation(sc: Scenario) -> None:
    _check(sc, trusted_wrongly=True)


# Store 2 at RowVersion 1, store 1 at RowVersion 2; exclusive bound, page order by id.
MINIMAL_ID_ORDER = Scenario(
    versions=[(2, 1, False), (1, 2, False)],
    counter=2,
    page_size=1,
    server_cap=None,
    page_order="id",
    inclusive=False,
    stray=False,
    during={},
    after=[],
    lookback=1,
)


async def test_an_id_ordered_server_loses_nothing_without_page_size() -> None:
    server = FakeMahak(MINIMAL_ID_ORDER, [])
    got = [
        (row.store_id, row.row_version)
        async for batch in iter_pages(server, ENTITY, 0, None, include_held=True)
        for row in batch.rows
    ]
    assert sorted(got) == [(1, 2), (2, 1)]
    assert all(size is None for size in server.sizes)


async def test_with_page_size_1_the_same_server_skips_a_row_and_the_probe_says_so() -> None:
    """Why a page size must be earned: the first capped answer [store 1 @ 2] is ascending
    and full, nothing tells that store 2 @ 1 was left out, and the pager (trusting the page
    size) passes it. `probe_paging` compares the capped answer with the whole list."""
    server = FakeMahak(MINIMAL_ID_ORDER, [])
    got = [
        (row.store_id, row.row_version)
        async for batch in iter_pages(server, ENTITY, 0, 1, include_held=True)
        for row in batch.rows
    ]
    assert got == [(1, 2)]
    probe = await probe_paging(FakeMahak(MINIMAL_ID_ORDER, []), ENTITY, 1)
    assert (probe.verdict, probe.trusted, probe.capped, probe.whole) == ("not-lowest", False, 1, 2)


@pytest.mark.parametrize(
    ("order", "ids", "cap", "verdict"),
    [
        ("row_version", "reversed", None, "lowest"),
        # Ids 1-5 hold RowVersions 6-10: in id order the first five are ascending, not the lowest.
        ("id", "rotated", None, "not-lowest"),
        ("id", "reversed", None, "unordered"),
        # A cap on every answer, with pageSize or not, looks like three rows: nothing to tell.
        ("row_version", "reversed", 3, "too-few-rows"),
    ],
)
async def test_probe_paging_names_each_server(
    order: str, ids: str, cap: int | None, verdict: str
) -> None:
    ident = (lambda v: 11 - v) if ids == "reversed" else (lambda v: (v + 4) % 10 + 1)
    sc = Scenario(
        versions=[(ident(v), v, False) for v in range(1, 11)],
        counter=10,
        page_size=5,
        server_cap=cap,
        page_order=order,
        inclusive=True,
        stray=False,
        during={},
        after=[],
        lookback=1,
    )
    probe = await probe_paging(FakeMahak(sc, []), ENTITY, 5)
    assert probe.verdict == verdict
