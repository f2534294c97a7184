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

Finding: with page order by id the properties do not hold (xfail, strict): a capped id-ordered
answer that happens to be ascending is taken for the lowest RowVersions above the bound, and
the cursor silently passes rows never read; the minimal case is spelled out below.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from unittest import mock
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
import structlog
from structlog.testing import capture_logs

import activities.incoming as incoming_module
import mahak_client.pager as pager_module
from activities.incoming import IncomingSync
from mahak_client import MahakProtocolError, iter_pages
from mahak_client.models import EntityBatch, Store
from shopdb import catalog
from shopdb.models import ApplyCounts

ENTITY = "stores"
COMMON = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@dataclass
class Scenario:
    versions: list[tuple[int, int, bool]]  # (id, RowVersion, deleted) initial rows
    counter: int  # the shared counter after the initial rows
    page_size: int
    server_cap: int | None
    page_order: str  # "row_version" | "id"
    inclusive: bool
    stray: bool
    during: dict[int, list[tuple[str, int]]]  # request index -> ops, during the first sync
    after: list[tuple[str, int]]  # ops between the first sync and the final read
    lookback: int

    def describe(self) -> str:
        return (f"rows={self.versions} page_size={self.page_size} cap={self.server_cap} "
                f"order={self.page_order} inclusive={self.inclusive} stray={self.stray} "
                f"during={self.during} after={self.after} lookback={self.lookback}")


@st.composite
def scenarios(draw: st.DrawFn, orders: tuple[str, ...] = ("row_version", "id")) -> Scenario:
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
    during = draw(st.dictionaries(st.integers(1, 8), st.lists(op, min_size=1, max_size=3),
                                  max_size=3))
    after = draw(st.lists(op, max_size=4))
    late = sum(1 for ops in [*during.values(), after] for kind, _ in ops if kind == "late")
    longest = max(runs, default=0)
    page_size = draw(st.integers(1, 12))
    cap = draw(st.none() | st.integers(0, 10).map(lambda extra: longest + late + 2 + extra))
    return Scenario(
        versions=versions, counter=counter, page_size=page_size, server_cap=cap,
        page_order=draw(st.sampled_from(orders)),
        inclusive=draw(st.booleans()), stray=draw(st.booleans()),
        during=during, after=after, lookback=draw(st.integers(1, 15)),
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

    async def get_all_data(self, from_versions: Mapping[str, int], *,
                           page_size: int | None = None) -> dict[str, EntityBatch]:
        self.requests += 1
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
            selected = selected[:min(caps)]
        self.served_max = max([self.served_max, *(v for _, v, _ in selected)])
        self.sent.append((len(self.logs), [(i, v) for i, v, _ in selected]))
        rows = [Store(store_id=i, row_version=v, deleted=d, name=f"s{i}") for i, v, d in selected]
        return {ENTITY: EntityBatch(entity=ENTITY, rows=rows,
                                    max_row_version=max((v for _, v, _ in selected), default=None))}


@contextlib.contextmanager
def _capturable_loggers() -> Iterator[None]:
    """The modules' loggers are bound at import, with whatever structlog configuration the
    run had then (other tests configure it): unbound proxies are resolved at each call, so
    `capture_logs` sees every line whatever ran before."""
    with mock.patch.object(pager_module, "log", structlog.get_logger(pager_module.__name__)), \
            mock.patch.object(incoming_module, "log",
                              structlog.get_logger(incoming_module.__name__)):
        yield


async def _run(sc: Scenario) -> None:
    with capture_logs() as logs, _capturable_loggers():
        server = FakeMahak(sc, logs)
        server.scheduled = sc.during
        shop: dict[int, tuple[int, bool]] = {}
        yielded: set[tuple[int, int]] = set()
        cursors: list[int] = []

        async def apply_page(_pool: Any, batch: EntityBatch, *, new_cursor: int,
                             run_id: str | None = None, **_: Any) -> ApplyCounts:
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
            # (2) the cursor stored with this page passes no unstored row.
            unstored = [v for i, (v, _) in server.rows.items()
                        if (i, v) not in server.late and shop.get(i, (None,))[0] != v]
            # A sync resuming from this cursor reads RowVersion >= cursor (inclusive server)
            # or > cursor (exclusive): every unstored row must lie in that range.
            assert not unstored or (new_cursor <= min(unstored) if sc.inclusive
                                    else new_cursor < min(unstored)), (
                f"cursor {new_cursor} passes unstored RowVersion {min(unstored)}; "
                f"shop={shop} server={server.rows} late={server.late}")
            return ApplyCounts(inserted=inserted, unchanged=unchanged)

        sync = IncomingSync(None, server, lookback=sc.lookback)  # type: ignore[arg-type]

        async def read(cursor: int, lookback: int) -> tuple[int, bool, int]:
            """One `_apply_pages` read; (cursor, stopped by a protocol error, page reread sum)."""
            first_request, first_log = len(server.sent), len(logs)
            yielded.clear()
            page_reread = 0
            failed = False
            pages = sync._apply_pages(ENTITY, cursor, sc.page_size, "run", lookback=lookback)
            try:
                with patch.object(catalog, "apply_page", apply_page):
                    async for cursor, counts in pages:
                        page_reread += counts.reread
                        assert counts.dropped == 0  # include_held: nothing is dropped
            except MahakProtocolError:
                failed = True
            _check_accounting(server, logs[first_log:], server.sent[first_request:],
                              yielded, failed, page_reread, first_log)
            return cursor, failed, page_reread

        cursor, failed1, _ = await read(0, 0)
        server.scheduled = {}
        server.mutate(sc.after)
        window_start = max(0, cursor - sc.lookback)
        missing_late = [v for i, v in server.late
                        if server.rows.get(i, (None,))[0] == v and shop.get(i, (None,))[0] != v]
        if any(v <= window_start for v in missing_late):
            event("final read: reconciliation from 0")
            cursor, failed2, _ = await read(cursor, cursor)  # reconciliation: from 0
        else:
            event("final read: look-back window")
            cursor, failed2, _ = await read(cursor, sc.lookback)  # the look-back window
        event(f"stopped by MahakProtocolError: {failed1 or failed2}")
        event(f"rows re-read without pageSize: {any(e['event'] == 'mahak.page_reread' for e in logs)}")
        event(f"late commits: {bool(server.late)}")
        assert cursors == sorted(cursors), "the cursor went backwards"
        if not (failed1 or failed2):
            # (1) the shop holds exactly Mahak's rows.
            assert shop == server.rows, f"shop={shop} server={server.rows}"


def _check_accounting(server: FakeMahak, logs: list[dict[str, Any]],
                      sent: list[tuple[int, list[tuple[int, int]]]], yielded: set[tuple[int, int]],
                      failed: bool, page_reread: int, log_base: int) -> None:
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
        if any(e["event"] in ("mahak.page_reread", "mahak.cap_probe")
               for e in logs[at - log_base:until - log_base]):
            reread_answers.add(n)
        if any(e["event"] == "mahak.cap_probe" for e in logs[at - log_base:until - log_base]):
            reread_answers.add(n + 1)  # the probe's own answer (from 0) is counted as reread
    if failed:
        return
    current = {(i, v) for i, (v, _) in server.rows.items()}
    for n, (_at, pairs) in enumerate(sent):
        for pair in pairs:
            if pair in yielded or pair not in current:
                continue  # handed on, or superseded on the server since (deleted anew)
            assert any(pair in sent[m][1] for m in reread_answers), (
                f"row {pair} sent in answer {n} was neither handed on nor counted as re-read")


def _check(sc: Scenario) -> None:
    try:
        asyncio.run(_run(sc))
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nscenario: {sc.describe()}") from None


@COMMON
@given(scenarios(orders=("row_version",)))
def test_pager_against_random_servers_ordered_by_row_version(sc: Scenario) -> None:
    _check(sc)


ID_ORDER_FINDING = (
    "finding (issue 12): a pageSize-capped answer in id order that happens to be ascending "
    "(always so for one row) is taken for the lowest RowVersions above the bound; the pager "
    "advances past the rows it did not hold, silently (minimal: the test below)")


@pytest.mark.xfail(strict=True, raises=(AssertionError, ExceptionGroup), reason=ID_ORDER_FINDING)
@COMMON
@given(scenarios(orders=("id",)))
def test_pager_against_random_servers_ordered_by_id(sc: Scenario) -> None:
    _check(sc)


@pytest.mark.xfail(strict=True, raises=(AssertionError, ExceptionGroup), reason=ID_ORDER_FINDING)
async def test_an_ascending_id_ordered_page_does_not_skip_a_lower_row_version() -> None:
    """Store 2 at RowVersion 1, store 1 at RowVersion 2; exclusive bound, page order by id,
    pageSize 1. The first answer [store 1 @ 2] is ascending and full, one run: the pager hands
    nothing on and asks from 1 (pageSize 1, then 2), gets [store 1 @ 2] alone, takes it as
    final and yields it with max_row_version 2: store 2 is never read, nothing is counted as
    re-read or dropped, and no WARNING is logged."""
    sc = Scenario(versions=[(2, 1, False), (1, 2, False)], counter=2, page_size=1,
                  server_cap=None, page_order="id", inclusive=False, stray=False,
                  during={}, after=[], lookback=1)
    with capture_logs(), _capturable_loggers():
        server = FakeMahak(sc, [])
        got = [(row.store_id, row.row_version)
               async for batch in iter_pages(server, ENTITY, 0, sc.page_size, include_held=True)
               for row in batch.rows]
    assert sorted(got) == [(1, 2), (2, 1)]
