"""Draining an entity from a RowVersion cursor, whatever Mahak's boundary reading.

The protocol leaves two things open: whether `from…Version = v` returns rows with
`RowVersion >= v` (inclusive) or `> v` (exclusive), and where `pageSize` cuts a run of rows that
share one RowVersion. Rows arrive in ascending RowVersion (sorted again here, as Bazara does).

The pager keeps one invariant: **every row with RowVersion <= `done` has been yielded** (or was
held by the caller, whose cursor the pager only ever advances to such a complete value), and it
never yields part of a run of equal versions.

- It requests `from = done`. An exclusive server returns the rows above `done`; an inclusive
  one also returns the rows at `done`, which are dropped as already held. A row at exactly the
  requested version proves the server inclusive: from then on it asks for `done + 1`, so held
  rows stop taking page space, and the page on which that was learned decides nothing beyond
  the rows it completes (it is asked again).
- The run at a page's highest new RowVersion `X` may have been cut by the page size (ours, or a
  smaller cap the server applies silently), so it is held back: the rows below `X` are yielded
  and `done` becomes `X - 1` (all rows below `X` were on this page). The next request
  (`from = X - 1`) brings the whole run at `X` again first, under either reading.
- A page whose new rows are one run and that is *short* (fewer rows than asked for) is the end
  of the data: the run is yielded and the drain stops; so does a short page with nothing new.
- A *full* page that holds only one run (or only already-held rows) cannot move `done`: the
  page size doubles, up to `max_page_size`, after which `MahakProtocolError` says so instead
  of looping forever.

Every request either yields rows and raises `done` strictly, learns the reading (once), grows
the page size (bounded), or ends the drain: no infinite loop, and no row is skipped under
either reading. A yielded batch's `max_row_version` is therefore a safe cursor to persist.
The cost: one extra request when a drain ends on a page with several versions, and one when
the reading is learned. (Residual assumption: a server that caps the page size silently caps
it above the longest run of equal versions.)

A quarantined row whose RowVersion cannot be read is yielded once (deduplicated by content)
with the page it arrived on, as it cannot take part in the ordering.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from .errors import MahakProtocolError
from .models import EntityBatch, RejectedRow

DEFAULT_MAX_PAGE_SIZE = 10_000


class _Fetcher(Protocol):
    async def get_all_data(
        self, from_versions: Mapping[str, int], *, page_size: int | None = None
    ) -> dict[str, EntityBatch]: ...


def _version(item: Any) -> int | None:
    return item.row_version


def _fingerprint(row: RejectedRow) -> str:
    return json.dumps(row.raw, sort_keys=True, ensure_ascii=False, default=str)


async def iter_pages(
    client: _Fetcher,
    entity: str,
    from_version: int,
    page_size: int,
    *,
    max_page_size: int = DEFAULT_MAX_PAGE_SIZE,
) -> AsyncIterator[EntityBatch]:
    """Yield non-empty batches of rows newer than `from_version`, in RowVersion order."""
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    # `from_version` 0 means "nothing held": rows lacking a RowVersion (read as 0) count too.
    done = from_version if from_version > 0 else -1
    size = page_size
    seen_unversioned: set[str] = set()
    inclusive = False  # proven only by a row at exactly the requested version

    while True:
        asked = max(done + 1 if inclusive else done, 0)
        page = (await client.get_all_data({entity: asked}, page_size=size))[entity]
        received = len(page.rows) + len(page.rejected)
        full = received >= size

        ordered = sorted(
            [item for item in [*page.rows, *page.rejected] if _version(item) is not None],
            key=lambda item: _version(item),
        )
        learned = not inclusive and asked > 0 and any(_version(i) == asked for i in ordered)
        inclusive = inclusive or learned
        new = [item for item in ordered if _version(item) > done]
        unversioned = []
        for row in page.rejected:
            if row.row_version is None and (key := _fingerprint(row)) not in seen_unversioned:
                seen_unversioned.add(key)
                unversioned.append(row)

        top = _version(new[-1]) if new else done
        complete = [item for item in new if _version(item) < top]
        # The run at `top` is known whole only on a short page that spent no room on rows we
        # already hold: otherwise a silent server cap may have cut it.
        final = bool(new) and not complete and not full and not learned
        out = new if final else complete
        if out or unversioned:
            yield _to_batch(entity, out, unversioned)

        if complete:
            done = top - 1  # everything below `top` has now been yielded
            continue
        if final or (not new and not full):  # held rows are one run: a cap cannot explain it
            return
        if learned:
            continue  # rows we hold took room on this page; ask again past them
        # A full page without a single complete RowVersion: only a bigger page can get past it.
        if size >= max_page_size:
            raise MahakProtocolError(
                f"{entity}: a full page of {size} rows holds nothing but RowVersion {top}; "
                f"cannot page past it",
                endpoint="GetAllData",
            )
        size = min(size * 2, max_page_size)


def _to_batch(entity: str, items: list[Any], unversioned: list[RejectedRow]) -> EntityBatch:
    rows = [item for item in items if not isinstance(item, RejectedRow)]
    rejected = [item for item in items if isinstance(item, RejectedRow)] + unversioned
    versions = [_version(item) for item in items]
    return EntityBatch(
        entity=entity,
        rows=rows,
        rejected=rejected,
        max_row_version=max(versions) if versions else None,
    )


async def drain(
    client: _Fetcher,
    from_versions: Mapping[str, int],
    page_size: int,
    *,
    max_page_size: int = DEFAULT_MAX_PAGE_SIZE,
) -> AsyncIterator[EntityBatch]:
    """`iter_pages` for several entities, one after the other in the mapping's order."""
    for name, from_version in from_versions.items():
        async for batch in iter_pages(
            client, name, from_version, page_size, max_page_size=max_page_size
        ):
            yield batch
