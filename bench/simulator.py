"""GetAllDataV2 through the simulator: time per page and per no-change request, by table size.

    .venv/bin/python -m bench.simulator [--sizes 100000,700000] [--page-size 5000] [--pages 5]
                                        [--quick]

For each size, a simulator holding that many ProductDetails rows (plus its base rows) answers
GetAllDataV2 through its ASGI app in-process (httpx's ASGI transport: no socket, but the
token check, body binding, query and JSON answer a client's request goes through):
  page        one request for `--page-size` rows, from cursors spread over the table
              (median of `--pages`), up to its body received (not parsed);
  no-change   one request from the newest RowVersion: nothing to send (median of 20);
  query       `SimState.query` alone for the same pages;
  scan        the peer: the same pages by the scan the simulator did before issue 16 (every
              row of the table read and filtered for each page), alone;
  body        the JSON answer of one page, alone: the simulator's encoder beside stdlib
              `json.dumps` (what it used before issue 16).
Ratios: scan / query (how much the index saves per page) and json / encoder.

The figures are medians of a few runs on whatever else the machine is doing: rerun on a
quiet machine before quoting them. `--quick` (2k and 10k rows, small pages) is the smoke test.

Measured on a loaded 2-core box (load ~8), 5000-row pages: before issue 16 (the scan and
`json.dumps`) a page took 135 ms at 100k rows and 772 ms at 700k, a no-change request 57 ms
and 732 ms; with the index and msgspec 12-19 ms and 0.4-0.6 ms at either size. What is
left of a page is the JSON body (~3-7 ms) and the ASGI/httpx round trip of 3.5 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx

from mahak_simulator.api import encode_answer
from mahak_simulator.app import Simulation, create_app
from mahak_simulator.config import SimulatorConfig
from mahak_simulator.state import SimState

ENTITY = "ProductDetails"


def fill(state: SimState, n: int) -> None:
    """`n` product details shaped like the seeded ones (see `mahak_simulator.seed`)."""
    with state.lock:
        for i in range(n):
            state.create(
                ENTITY,
                {
                    "ProductDetailCode": i + 1,
                    "ProductId": 1_210_001 + i // 2,
                    "Properties": "[]",
                    "Barcode": f"626{i:010d}",
                    **{f"Price{level}": 150_000 - 5_000 * level + i % 97 for level in range(1, 11)},
                    "DefaultSellPriceLevel": 1,
                    "DataHash": f"{i * 2654435761 % 2**64:040x}",
                    "CreateDate": "2026-12-03T09:57:54.6168990",
                },
            )


def scan(state: SimState, from_version: int, page_size: int) -> list[dict[str, Any]]:
    """The page as the simulator found it before issue 16: every row read and filtered."""
    selected = []
    for row in state.rows(ENTITY):
        version = row["RowVersion"]
        if from_version > 0 and version < from_version:
            continue
        selected.append(row)
    return selected[:page_size]


def median_seconds(work: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def median_request(client: httpx.AsyncClient, bodies: list[dict[str, Any]]) -> float:
    times = []
    for body in bodies:
        start = time.perf_counter()
        response = await client.post("/API/v3/Sync/GetAllDataV2", json=body)
        times.append(time.perf_counter() - start)
        response.raise_for_status()
        assert response.content.startswith(b'{"Result":true')
    return statistics.median(times)


async def measure(n: int, page_size: int, pages: int) -> dict[str, float]:
    sim = Simulation(SimulatorConfig())
    fill(sim.state, n)
    state = sim.state
    versions = [r["RowVersion"] for r in state.rows(ENTITY)]
    # Cursors spread over the table, each a full page away from its end.
    cursors = [versions[(len(versions) - page_size) * k // max(1, pages - 1)] for k in range(pages)]
    newest = state.row_version
    transport = httpx.ASGITransport(app=create_app(sim=sim))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        login = await client.post(
            "/API/v3/Sync/LoginV2", json={"userName": "shop", "password": "secret"}
        )
        token = login.json()["Data"]["UserToken"]
        client.headers["Authorization"] = f"Bearer {token}"
        page = await median_request(
            client,
            [{"fromProductDetailVersion": c, "pageSize": page_size} for c in cursors],
        )
        nothing = await median_request(
            client, [{"fromProductDetailVersion": newest + 1, "pageSize": page_size}] * 20
        )
    with state.lock:
        rows = state.query(ENTITY, cursors[0], boundary="inclusive", page_size=page_size)
        assert rows == scan(state, cursors[0], page_size) and len(rows) == page_size
        query = statistics.median(
            median_seconds(
                partial(state.query, ENTITY, c, boundary="inclusive", page_size=page_size), 3
            )
            for c in cursors
        )
        scanned = statistics.median(
            median_seconds(partial(scan, state, c, page_size), 1) for c in cursors
        )
    answer = {"Result": True, "Data": {"Objects": {ENTITY: rows}}}
    stdlib = median_seconds(
        lambda: json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode(), 5
    )
    encoder = median_seconds(lambda: encode_answer(answer, state), 5)
    assert json.loads(encode_answer(answer, state)) == answer
    return {
        "page": page,
        "no-change": nothing,
        "query": query,
        "scan": scanned,
        "json": stdlib,
        "encoder": encoder,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,700000", help="table sizes, comma-separated")
    parser.add_argument("--page-size", type=int, default=5_000)
    parser.add_argument("--pages", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small tables: a smoke test")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    page_size, pages = args.page_size, args.pages
    if args.quick:
        sizes, page_size, pages = [2_000, 10_000], 500, 3

    print(f"GetAllDataV2 for {page_size}-row pages of {ENTITY}, by table size (ms, medians):")
    for n in sizes:
        f = await measure(n, page_size, pages)
        ms = {k: v * 1000 for k, v in f.items()}
        print(
            f"  {n:>9,} rows  page {ms['page']:8.2f}   no-change {ms['no-change']:6.3f}"
            f"   query {ms['query']:7.3f}   scan {ms['scan']:8.2f}"
            f"   ({f['scan'] / f['query']:7.1f} x faster than the scan)"
            f"   body: encoder {ms['encoder']:6.2f}, json {ms['json']:6.2f}"
            f" ({f['json'] / f['encoder']:4.1f} x)"
        )


if __name__ == "__main__":
    asyncio.run(main())
