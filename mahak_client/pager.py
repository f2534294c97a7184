"""Draining an entity from a RowVersion cursor without skipping rows, or failing loudly.

The protocol leaves open (shared/mahak-api.md §3, §10 (a), §11 1-3) whether `from…Version = v`
returns `RowVersion >= v` or `> v`, which rows a `pageSize`-capped list holds and in which
order, whether the server caps lists silently below `pageSize`, and whether rows commit late.

`page_size=None` (as §10 (a) prefers and OS, MO, SD do; `MAHAK_PAGE_SIZE=0`) sends no
`pageSize`; the sync's default is 5000 (`mahak_sync.config.DEFAULT_MAHAK_PAGE_SIZE`: memory).
With a `pageSize` the pager **trusts** that a capped list holds the lowest
RowVersions above the bound: no answer can prove it (there is no upper bound to ask with), and
a server that caps in id order with an answer that happens to be ascending cannot be told from
one that does not. Where `mahak-sync mahak check --paging` finds capped lists are not the
lowest RowVersions, send none; the periodic reconciliation (which never sends `pageSize`)
reports and repairs what a wrong trust missed.
The pager assumes none of it and keeps one invariant: **every row with RowVersion <= `done`
has been handed on**, `done` starting at the caller's cursor; each request asks `from = done`.

Each answer is checked as it came on the wire (before any sorting): ascending by RowVersion,
no row below the bound sent, no more rows than `pageSize` asked. A capped answer failing a
check is read again without `pageSize` (the rest of the drain then sends none), or, with
`reread=False`, stops the drain with `MahakProtocolError` naming the entity and the check.

Whether an answer may have been cut (by `pageSize`, or by a silent server cap) is decided from
evidence, never guessed: a list as long as `pageSize` may be cut; so may a shorter one unless
the server has already sent a longer list (`PagingEvidence.most_rows`: any silent cap is at
least that). A list that may be cut holds the lowest RowVersions above the bound (checked
ascending), so its rows below its top RowVersion `X` are complete: they are handed on and
`done = X - 1`; the run at `X` comes again with the next request under either reading. When
nothing can be handed on that way (one run only), the page grows (to `max_page_size`), then is
read without `pageSize`. A list is final when it cannot have been cut, or when it brings
nothing above the bound, or only one run of equal versions (assumption: a silent cap exceeds
two neighbouring runs of equal RowVersions, since an inclusive server sends the run at the
bound again with the next one; below that, a run cut by the cap is handed on part-way and its
RowVersion taken as done: the look-back window and the reconciliation re-read it).

Nothing is inferred from one row: a row at or below the bound (an inclusive server's run at
the cursor, a stray, a late commit) is handed on with `include_held=True` (the incoming sync,
whose newer-only upsert decides) and, with the default, left out and counted as dropped (the
caller asked for rows newer than its cursor). A row is handed on at most once per drain.
Gaps between RowVersions are normal (one global counter) and mean nothing.

Residual assumptions: an answer to a request without `pageSize` that is not ascending is taken
whole, unless it is no longer than the short capped answer it replaces and as long as any
list the server sent before, even the whole entity read once from 0 (a cap may cut it: the
drain fails); a server that truncates answers without `pageSize` below two neighbouring runs
of equal versions cannot be told from one that has no more rows. The incoming sync's look-back window (§10 (f))
re-reads what any guard missed.

A batch's `max_row_version` is a safe cursor to persist. A quarantined row whose RowVersion
cannot be read is yielded once (deduplicated by content) with the page it arrived on.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from itertools import islice, repeat
from operator import attrgetter, itemgetter, le, lt
from typing import Any, Protocol

from mahak_sync.logging import get_logger

from .errors import MahakProtocolError
from .models import ENTITIES, EntityBatch, RejectedRow

DEFAULT_MAX_PAGE_SIZE = 10_000

log = get_logger(__name__)


class _Fetcher(Protocol):
    async def get_all_data(
        self, from_versions: Mapping[str, int], *, page_size: int | None = None
    ) -> dict[str, EntityBatch]: ...


@dataclass
class PagingEvidence:
    """What the server has shown about its paging; share one across drains of one server."""

    most_rows: int = 0  # the longest list it has sent: a silent cap, if any, is at least this


@dataclass
class PagerStats:
    """What one drain (or several, if passed again) did beyond handing rows on."""

    requests: int = 0
    reread: int = 0  # rows received in answers that were read again without `pageSize`
    dropped: int = 0  # rows received and not handed on (at/below the cursor, `include_held` off)
    below_bound: int = 0  # rows the server sent below the bound asked (handed on or dropped)
    checks_failed: list[str] = field(default_factory=list)


# A row's or quarantined row's RowVersion (None: a quarantined row's could not be read).
_version: Any = attrgetter("row_version")
_first = itemgetter(0)


def _ascending(versions: list[int], strictly: bool = False) -> bool:
    """Whether `versions` never go down (with `strictly`, always go up), in C calls."""
    return all(map(lt if strictly else le, versions, islice(versions, 1, None)))


def _fingerprint(row: RejectedRow) -> str:
    return json.dumps(row.raw, sort_keys=True, ensure_ascii=False, default=str)


def _key(entity: str, item: Any) -> tuple[Any, ...]:
    if isinstance(item, RejectedRow):
        if item.mahak_id is not None and item.row_version is not None:
            # Keyed as the row it is: an unparsed (lean) answer brings the same row as a
            # `LeanRow`, quarantined only when it is parsed.
            return ("row", item.mahak_id, item.row_version)
        return ("rejected", item.mahak_id, item.row_version, _fingerprint(item))
    spec = ENTITIES.get(entity)
    return ("row", getattr(item, spec.id_field, None) if spec else id(item), item.row_version)


def _check(page: EntityBatch, asked: int, size: int | None) -> str | None:
    """The first check the answer fails, as received (rows and quarantined rows each in wire order)."""
    received = len(page.rows) + len(page.rejected)
    if size is not None and received > size:
        return f"holds {received} rows, more than the {size} asked"
    for items in (page.rows, page.rejected):
        versions = [v for v in map(_version, items) if v is not None]
        if not _ascending(versions):
            return "is not in ascending RowVersion order"
        if asked > 0 and versions and min(versions) < asked:
            return f"holds rows below the requested RowVersion {asked}"
    return None


async def iter_pages(
    client: _Fetcher,
    entity: str,
    from_version: int,
    page_size: int | None = None,
    *,
    max_page_size: int = DEFAULT_MAX_PAGE_SIZE,
    include_held: bool = False,
    reread: bool = True,
    stats: PagerStats | None = None,
    evidence: PagingEvidence | None = None,
) -> AsyncIterator[EntityBatch]:
    """Yield non-empty batches of `entity`'s rows newer than `from_version` (with
    `include_held`, also the rows at or below it that the server sends), each batch ascending
    by RowVersion and its `max_row_version` safe to persist as the cursor."""
    if page_size is not None and page_size < 1:
        raise ValueError("page_size must be at least 1 (or None: no pageSize)")
    stats = stats if stats is not None else PagerStats()
    evidence = evidence if evidence is not None else PagingEvidence()
    # `from_version` 0 means "nothing held": rows lacking a RowVersion (read as 0) count too.
    done = from_version if from_version > 0 else -1
    size: int | None = page_size
    failed_capped: tuple[int, int] | None = None  # (rows, size) of a capped answer re-read

    def fail(message: str) -> MahakProtocolError:
        return MahakProtocolError(f"{entity}: {message}", endpoint="GetAllData")

    def read_again(reason: str, received: int, asked: int) -> None:
        nonlocal size
        if not reread:
            raise fail(f"GetAllData from {asked} with pageSize {size}: the answer {reason}")
        stats.reread += received
        stats.checks_failed.append(reason)
        log.warning(
            "mahak.page_reread",
            entity=entity,
            reason=reason,
            rows=received,
            from_version=asked,
            page_size=size,
        )
        size = None

    # Rows handed on: keys of those checked one by one (`handed`), and the runs handed on
    # whole (`runs`: ascending RowVersions and the rows' ids, not the rows, which would keep
    # a whole drain in memory), keyed only when a row of the same RowVersion comes again.
    # Every row handed on has RowVersion <= `done` (as `done` moves after each hand-over), so
    # a row above `done` was never handed on: on a clean drain no row needs a key at all.
    handed: set[tuple[Any, ...]] = set()
    runs: list[tuple[list[int], list[Any]]] = []
    spec = ENTITIES.get(entity)
    id_field = spec.id_field if spec is not None else None

    def seen(key: tuple[Any, ...], version: int | None) -> bool:
        if key in handed:
            return True
        if version is None:
            return False  # rows without a RowVersion are only ever checked one by one
        for versions, run_ids in runs:
            for row_id in islice(
                run_ids, bisect_left(versions, version), bisect_right(versions, version)
            ):
                handed.add(("row", row_id, version))
        return key in handed

    def checked(items: list[Any]) -> list[Any]:
        out = []
        for item in items:
            version = _version(item)
            key = _key(entity, item)
            if seen(key, version):
                continue  # this drain handed it on already (a run held back, a re-read)
            if (
                not include_held
                and from_version > 0
                and version is not None
                and version <= from_version
            ):
                stats.dropped += 1
                continue
            handed.add(key)
            out.append(item)
        return out

    def emit(
        old: list[Any],
        new: list[Any],
        new_versions: list[int],
        unversioned: list[Any],
        *,
        rows_only: bool,
    ) -> list[Any]:
        """The rows to hand on, in this order: `old` (at or below `done`) and `unversioned`
        checked one by one; `new` (above `done`, ascending by `new_versions`) never handed
        on before, so taken whole unless two share a RowVersion (the same row twice?) or
        some are quarantined rows (not `rows_only`: checked one by one, those without a
        RowVersion keyed by content). None of `new` is at or below the caller's cursor
        (`done` starts there)."""
        if id_field is None or not rows_only or not _ascending(new_versions, strictly=True):
            return checked([*old, *new, *unversioned])
        out = checked(old)
        if new:
            # What `_key` reads, in C calls.
            runs.append((new_versions, list(map(getattr, new, repeat(id_field), repeat(None)))))
            out += new
        out += checked(unversioned)
        return out

    while True:
        asked = max(done, 0)
        page = (await client.get_all_data({entity: asked}, page_size=size))[entity]
        stats.requests += 1
        received = len(page.rows) + len(page.rejected)
        problem = _check(page, asked, size)
        if problem is not None and size is not None:
            failed_capped = (received, size)
            read_again(problem, received, asked)
            continue
        unordered = problem is not None and "ascending" in problem
        if problem is not None:
            log.warning(
                "mahak.page_unchecked",
                entity=entity,
                reason=problem,
                rows=received,
                from_version=asked,
            )
        if (
            unordered
            and failed_capped is not None
            and received >= evidence.most_rows
            and received <= failed_capped[0] < failed_capped[1]
            and asked > 0
        ):
            # Short and out of order with pageSize, no longer without, and as long as any list
            # the server ever sent: a silent cap may have cut both. The whole entity (from 0,
            # once) tells: if it is longer, no cap cut this answer.
            whole = (await client.get_all_data({entity: 0}, page_size=None))[entity]
            stats.requests += 1
            probe = len(whole.rows) + len(whole.rejected)
            stats.reread += probe
            log.warning("mahak.cap_probe", entity=entity, rows=probe, answer=received)
            evidence.most_rows = max(evidence.most_rows, probe)
        most_before = evidence.most_rows
        if (
            unordered
            and failed_capped is not None
            and received >= most_before
            and received <= failed_capped[0] < failed_capped[1]
        ):
            # Short and out of order with pageSize, no longer without, and as long as any list
            # the server ever sent: a cap may cut both, and an unordered cut answer cannot be
            # paged.
            raise fail(
                f"GetAllData from {asked} answers {received} rows out of RowVersion order "
                f"with or without pageSize: a server cap cuts lists at an unknown place"
            )
        evidence.most_rows = max(most_before, received)

        clean = not page.rejected
        items = page.rows if clean else [*page.rows, *page.rejected]
        versions = list(map(_version, items))
        unversioned = [r for r in page.rejected if r.row_version is None]
        if unversioned:
            pairs = [(v, i) for v, i in zip(versions, items, strict=True) if v is not None]
            versions, items = [v for v, _ in pairs], [i for _, i in pairs]
        if not _ascending(versions):  # stable, as the lists were checked in wire order
            pairs = sorted(zip(versions, items, strict=True), key=_first)
            versions, items = [v for v, _ in pairs], [i for _, i in pairs]
        split = bisect_right(versions, done)
        old, new = items[:split], items[split:]
        new_versions = versions[split:]
        if asked > 0:
            stats.below_bound += bisect_left(versions, asked, hi=split)
        full = size is not None and received >= size
        top = new_versions[-1] if new_versions else None
        one_run = bool(new_versions) and new_versions[0] == top

        if unordered:
            cut = False  # taken whole (see the module's residual assumptions)
        elif full:
            cut = True
        else:
            cut = not (received < most_before or not new or (one_run and not old))

        if not cut:
            out = emit(old, new, new_versions, unversioned, rows_only=clean)
            if out:
                yield _to_batch(entity, out)
            return

        assert top is not None or full
        below = bisect_left(new_versions, top) if top is not None else 0
        if below:
            out = emit(old, new[:below], new_versions[:below], unversioned, rows_only=clean)
            if out:
                yield _to_batch(entity, out)
            assert top is not None
            done = top - 1  # all rows below `top` were on this page
            continue

        out = emit(old, [], [], unversioned, rows_only=clean)
        if out:
            yield _to_batch(entity, out)
        if top is not None and top - 1 > done:
            done = top - 1  # nothing lies between `done` and `top`: the run at `top` comes next
            continue
        if size is not None and full and size < max_page_size:
            size = min(size * 2, max_page_size)
            continue
        if size is not None:
            read_again(
                f"may have been cut inside RowVersion {top if top is not None else asked}",
                received,
                asked,
            )
            continue
        # Without pageSize: the rows at the bound and one run at `done + 1`. Hand the run on
        # and ask from it: an inclusive server sends it whole again.
        out = emit([], new, new_versions, [], rows_only=clean)
        if out:
            yield _to_batch(entity, out)
        if top is None:
            return
        done = top


def _to_batch(entity: str, items: list[Any]) -> EntityBatch:
    rows = [item for item in items if not isinstance(item, RejectedRow)]
    rejected = [item for item in items if isinstance(item, RejectedRow)]
    versions = [v for v in map(_version, items) if v is not None]
    return EntityBatch(
        entity=entity,
        rows=rows,
        rejected=rejected,
        max_row_version=max(versions) if versions else None,
    )


async def drain(
    client: _Fetcher,
    from_versions: Mapping[str, int],
    page_size: int | None = None,
    *,
    max_page_size: int = DEFAULT_MAX_PAGE_SIZE,
    include_held: bool = False,
    stats: PagerStats | None = None,
    evidence: PagingEvidence | None = None,
) -> AsyncIterator[EntityBatch]:
    """`iter_pages` for several entities, one after the other in the mapping's order."""
    evidence = evidence if evidence is not None else PagingEvidence()
    for name, from_version in from_versions.items():
        async for batch in iter_pages(
            client,
            name,
            from_version,
            page_size,
            max_page_size=max_page_size,
            include_held=include_held,
            stats=stats,
            evidence=evidence,
        ):
            yield batch


@dataclass
class PagingProbe:
    """What one entity's capped and uncapped reads from 0 showed (`probe_paging`)."""

    entity: str
    page_size: int
    capped: int  # rows in the answer with `pageSize`
    whole: int  # rows in the answer without
    verdict: str  # "lowest" | "not-lowest" | "unordered" | "server-cap" | "too-few-rows"

    @property
    def trusted(self) -> bool | None:
        """Whether a page size is safe on this evidence (None: the entity could not tell)."""
        return {"lowest": True, "too-few-rows": None}.get(self.verdict, False)


async def probe_paging(client: _Fetcher, entity: str, page_size: int) -> PagingProbe:
    """Read `entity` from 0 with and without `pageSize` and say whether the capped list was
    the lowest RowVersions, ascending (ties at its top cut anywhere): the evidence an operator
    needs before setting a page size. One entity's answer is evidence, not proof."""
    capped = (await client.get_all_data({entity: 0}, page_size=page_size))[entity]
    whole = (await client.get_all_data({entity: 0}, page_size=None))[entity]
    got = [(_key(entity, i), _version(i) or 0) for i in [*capped.rows, *capped.rejected]]
    every = [(_key(entity, i), _version(i) or 0) for i in [*whole.rows, *whole.rejected]]

    def probe(verdict: str) -> PagingProbe:
        return PagingProbe(entity, page_size, len(got), len(every), verdict)

    if len(every) <= page_size:
        return probe("too-few-rows")
    if len(got) < page_size:
        return probe("server-cap")
    versions = [v for _, v in got]
    if versions != sorted(versions):
        return probe("unordered")
    top = versions[-1]
    below = {key for key, v in every if v < top}
    at_or_below = {key for key, v in every if v <= top}
    keys = {key for key, _ in got}
    return probe("lowest" if below <= keys <= at_or_below else "not-lowest")
