"""A row is handed on at most once per drain (issue 16: the pager keys only the rows that can
come again, those at or below `done`, and the runs handed on whole are keyed only when a row of
their RowVersion is sent again).

A scripted inclusive server (every answer starts at the bound, so the run at the bound comes
again with each page), with runs of equal RowVersions, a row sent twice in one answer, and a
row sent again below the bound later: every row is handed on exactly once, whatever the page
size, with or without `include_held`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from mahak_client import iter_pages
from mahak_client.envelope import parse_get_all_data
from mahak_client.lean import LeanWhenUncapped, parse_get_all_data_lean
from mahak_client.models import EntityBatch, Store


class InclusiveServer:
    """`rows` (id, RowVersion), answered ascending from the bound inclusive, capped at the
    page size; with `twice`, the answer's last row is sent a second time right after itself;
    with `stray`, every later answer repeats the first row of the table (below the bound)."""

    def __init__(self, rows: list[tuple[int, int]], *, twice: bool, stray: bool) -> None:
        self.rows = sorted(rows, key=lambda r: r[1])
        self.twice, self.stray = twice, stray
        self.requests = 0

    async def get_all_data(
        self, from_versions: Mapping[str, int], *, page_size: int | None = None
    ) -> dict[str, EntityBatch]:
        start = from_versions["stores"]
        picked = [r for r in self.rows if r[1] >= start][: page_size or None]
        if self.twice and picked and (page_size is None or len(picked) < page_size):
            picked.append(picked[-1])
        if self.stray and self.requests and self.rows[0][1] < start:
            picked.insert(0, self.rows[0])
        self.requests += 1
        rows = [Store(store_id=i, row_version=v, name=f"s{i}") for i, v in picked]
        top = max((v for _, v in picked), default=None)
        return {"stores": EntityBatch(entity="stores", rows=rows, max_row_version=top)}


def _table(runs: list[int]) -> list[tuple[int, int]]:
    rows, version, ident = [], 100, 1
    for length in runs:
        for _ in range(length):
            rows.append((ident, version))
            ident += 1
        version += 1 + ident % 3
    return rows


@pytest.mark.parametrize("twice", [False, True])
@pytest.mark.parametrize("stray", [False, True])
@pytest.mark.parametrize("include_held", [False, True])
async def test_each_row_is_handed_on_once(twice: bool, stray: bool, include_held: bool) -> None:
    table = _table([1, 1, 3, 1, 2, 1, 1, 4, 1, 1, 1, 2, 1])
    for page_size in [None, 1, 2, 3, 4, 5, 8, 100]:
        server = InclusiveServer(table, twice=twice, stray=stray)
        handed = [
            (row.store_id, row.row_version)
            async for batch in iter_pages(
                server, "stores", 0, page_size, include_held=include_held, reread=True
            )
            for row in batch.rows
        ]
        assert len(handed) == len(set(handed)), (page_size, handed)
        assert set(handed) == set(table), page_size


class MisorderingServer:
    """Stores on the wire, answered from the bound inclusive. A capped answer after the first
    is sent out of RowVersion order (so the pager reads it again without `pageSize`);
    uncapped answers are read leanly, as the incoming sync reads them
    (`lean.LeanWhenUncapped`). One row never validates (`Deleted: "maybe"`)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.capped = 0

    def _body(self, start: int, page_size: int | None) -> bytes:
        picked = [r for r in self.rows if r["RowVersion"] >= start][: page_size or None]
        if page_size is not None:
            self.capped += 1
            if self.capped > 1:
                picked.reverse()
        return json.dumps({"Result": True, "Data": {"Objects": {"Stores": picked}}}).encode()

    async def get_all_data(
        self, from_versions: Mapping[str, int], *, page_size: int | None = None
    ) -> dict[str, EntityBatch]:
        body = self._body(from_versions["stores"], page_size)
        return parse_get_all_data("GetAllDataV2", json.loads(body), ["stores"], status=200)

    async def get_all_data_lean(
        self, from_versions: Mapping[str, int], *, page_size: int | None = None
    ) -> dict[str, EntityBatch]:
        body = self._body(from_versions["stores"], page_size)
        return parse_get_all_data_lean("GetAllDataV2", body, ["stores"], status=200)


async def test_a_quarantined_row_is_handed_on_once_across_parsed_and_lean_answers() -> None:
    rows = [
        {"StoreId": i, "RowVersion": 100 + i, "Name": f"s{i}", "Deleted": False}
        for i in range(1, 7)
    ]
    rows[1]["Deleted"] = "maybe"  # store 2, RowVersion 102: quarantined wherever it comes
    server = MisorderingServer(rows)
    handed = [
        (getattr(item, "store_id", None) or item.mahak_id, item.row_version)
        async for batch in iter_pages(
            LeanWhenUncapped(server),  # type: ignore[arg-type]
            "stores",
            0,
            3,
            include_held=True,
        )
        for item in [*batch.rows, *batch.rejected]
    ]
    assert server.capped == 2, "the second capped answer was read again without pageSize"
    assert sorted(handed) == [(i, 100 + i) for i in range(1, 7)], handed
