"""Page-apply throughput vs a raw COPY into the same table.

    .venv/bin/python -m bench.apply_page [--rows 100000] [--page-size 2000] [--repeat 3] [--dsn URL] [--quick]

Starts a throw-away embedded PostgreSQL (unless --dsn names a server whose `postgres`
database may be used to create a scratch database), migrates a scratch database, then,
`--repeat` times, for `--rows` product details in pages of `--page-size`, one transaction
per page, each run starting from an empty table:
  raw text  COPY (text format) of bytes encoded before the timer, passed to asyncpg as one
            buffer: no Python work at all inside the timer, only the server storing the
            rows. The strongest baseline, and the one the ratios use.
  raw bin   asyncpg's `copy_records_to_table` of tuples prepared before the timer (numbers
            as Decimal, what a numeric column takes); binary numeric encoding is slow in
            asyncpg, so this is the weaker baseline, shown for reference.
  insert    apply_page on an empty table (all rows new);
  update    apply_page again with newer row versions (all rows updated);
  replay    apply_page with the same rows again (all unchanged).
apply_page figures include everything the real sync does per page: models to columns,
COPY text encoding, the version lookup, dead letters and the cursor advance. Each figure
is the median of the repeats (the box is shared, so single runs are noisy); raw and
apply_page runs alternate so both see the same load.

Where the time goes (2-core box shared with other work, 2000-row pages, per page):
  raw text  ~8-10 ms, all server: parsing, heap multi-insert, two index inserts, commit.
  insert    rows not stored yet go straight into the table by the same text COPY, plus
            ~6-8 ms of Python turning 2000 models into COPY text (float formatting is most
            of it; streamed in 500-row chunks, so the server stores one chunk while the
            next is encoded), ~3 ms looking up the page's stored versions (one index probe
            per id) and ~2 ms of bookkeeping round trips (dead letters, cursor, savepoint).
            Ratio 0.43-0.54 over runs, median ~0.5: the Python encoding and the version
            lookup are what stands between it and the raw rate.
  replay    the version lookup only: unchanged rows are neither written nor locked.
            About the raw rate.
  update    cannot reach half the raw rate, and not because of Python: PostgreSQL updates
            a row by writing a new version of the whole tuple plus a new entry in each of
            the two indexes (not a HOT update: pages are full at the default fillfactor),
            and the upsert locks the old version first. EXPLAIN (ANALYZE, WAL) shows ~10
            WAL records per 2 rows updated against ~4 per 2 rows COPYed, and the upsert
            statement alone takes 3-4x the whole raw COPY of the page. A plain UPDATE ...
            FROM (no lock) measured the same. A lower fillfactor would make updates HOT (no
            index entries) at the cost of disk and cache for every reader: not done for a
            benchmark that rewrites every row. Ratio ~0.2, as before this rewrite.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal

import asyncpg

from mahak_client.models import EntityBatch, ProductDetail
from shopdb.catalog import apply_page
from shopdb.migrate import migrate
from shopdb.mirror import MirrorTable, mirror, to_record
from shopdb.pool import create_pool

from .scratch import scratch_database

TABLE = mirror("product_details")


def make_details(n: int, version_base: int) -> list[ProductDetail]:
    rnd = random.Random(42)
    return [
        ProductDetail(
            product_detail_id=i,
            product_id=i // 3 + 1,
            row_version=version_base + i,
            product_detail_code=i,
            barcode=f"62{i:011d}",
            properties='[{"C":1,"V":"red"}]',
            **{f"price{n}": round(rnd.uniform(1_000, 9_000_000), 0) for n in range(1, 11)},
            discount=0.0,
            default_sell_price_level=1,
        )
        for i in range(1, n + 1)
    ]


def _copy_text(rows: list[tuple], numeric: list[bool]) -> bytes:
    """COPY text for the baseline (speed irrelevant: built before the timer). Numbers go in
    as apply_page stores them: floats in numeric columns with 15 significant digits."""

    def cell(value: object, is_numeric: bool) -> str:
        if value is None:
            return "\\N"
        if isinstance(value, bool):
            return "t" if value else "f"
        if isinstance(value, float):
            return f"{value:.15g}" if is_numeric else repr(value)
        return (
            str(value)
            .replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )

    return "".join("\t".join(map(cell, row, numeric)) + "\n" for row in rows).encode()


def pages(rows: list, size: int) -> list[list]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


async def raw_copy(
    pool: asyncpg.Pool, m: MirrorTable, rows: list[tuple], page_size: int
) -> Callable[[], Awaitable[None]]:
    """The raw text COPY limit: `rows` (records of `m`) as COPY text encoded now, before
    any timer; the work returned stores them page by page, one transaction each, with no
    Python work at all (only the server storing the rows)."""
    types = dict(
        await pool.fetch(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = $1::regclass",
            m.table,
        )
    )
    numeric = [types[c] == "numeric" for c in m.columns]
    texts = [memoryview(_copy_text(chunk, numeric)) for chunk in pages(rows, page_size)]

    async def work() -> None:
        async with pool.acquire() as conn:
            for data in texts:
                async with conn.transaction():
                    await conn.copy_to_table(m.table, source=data, columns=m.columns)

    return work


async def timed(n: int, work: Callable[[], Awaitable[None]]) -> float:
    start = time.perf_counter()
    await work()
    return n / (time.perf_counter() - start)


async def run(dsn: str, n: int, page_size: int, repeat: int) -> None:
    await migrate(dsn)
    pool = await create_pool(dsn, min_size=1, max_size=2)
    m = TABLE
    try:
        first, newer = make_details(n, 1_000_000), make_details(n, 2_000_000)
        # The baselines get the best case: everything prepared outside the timer.
        rows = [to_record(m, row, 1)[0] for row in first]
        raw_text = await raw_copy(pool, m, rows, page_size)
        records = [
            [
                tuple(Decimal(f"{v:.15g}") if isinstance(v, float) else v for v in row)
                for row in chunk
            ]
            for chunk in pages(rows, page_size)
        ]

        async def raw_binary() -> None:
            async with pool.acquire() as conn:
                for chunk in records:
                    async with conn.transaction():
                        await conn.copy_records_to_table(m.table, records=chunk, columns=m.columns)

        def applying(rows: list[ProductDetail]) -> Callable[[], Awaitable[None]]:
            batches = [
                EntityBatch(entity="product_details", rows=chunk)
                for chunk in pages(rows, page_size)
            ]

            async def work() -> None:
                for batch in batches:
                    await apply_page(
                        pool, batch, new_cursor=batch.rows[-1].row_version, price_level=1
                    )

            return work

        async def empty_table() -> None:
            await pool.execute(f"TRUNCATE {m.table}")
            await pool.execute(f"VACUUM ANALYZE {m.table}")

        scenarios: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("raw text", raw_text),
            ("raw bin", raw_binary),
            ("insert", applying(first)),
            ("update", applying(newer)),
            ("replay", applying(newer)),
        ]
        rates: dict[str, list[float]] = {label: [] for label, _work in scenarios}
        for _ in range(repeat):
            for label, work in scenarios:
                if label in ("raw text", "raw bin", "insert"):
                    await empty_table()
                rates[label].append(await timed(n, work))
            assert (
                await pool.fetchval(f"SELECT count(*) FROM {m.table} WHERE row_version > 2000000")
                == n
            )

        medians = {label: statistics.median(values) for label, values in rates.items()}
        baseline = max(medians["raw text"], medians["raw bin"])
        print(f"{n} product details, pages of {page_size}, median of {repeat} runs:")
        for label, rate in medians.items():
            runs = " ".join(f"{r:,.0f}" for r in rates[label])
            print(
                f"  {label:<9} {rate:>10,.0f} rows/s   {rate / baseline:5.2f} x raw   (runs: {runs})"
            )
    finally:
        await pool.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--dsn", help="server DSN (superuser); default: a temporary embedded server"
    )
    parser.add_argument(
        "--quick", action="store_true", help="2000 rows, pages of 500, 1 run: the smoke test"
    )
    args = parser.parse_args()
    if args.quick:
        args.rows, args.page_size, args.repeat = 2_000, 500, 1

    async with scratch_database(args.dsn) as (dsn, _folder):
        await run(dsn, args.rows, args.page_size, args.repeat)


if __name__ == "__main__":
    asyncio.run(main())
