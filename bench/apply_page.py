"""Page-apply throughput vs a raw COPY into the same table.

    .venv/bin/python -m bench.apply_page [--rows 100000] [--page-size 2000] [--dsn URL]

Starts a throw-away embedded PostgreSQL (unless --dsn names a server whose `postgres`
database may be used to create a scratch database), migrates a scratch database, then
times, for `--rows` product details in pages of `--page-size`:
  raw bin  COPY (binary, what asyncpg's copy_records_to_table sends) of rows prepared in
           advance straight into mahak_product_details, one transaction per page;
  raw text COPY of text prepared in advance: the server's bare ingest rate;
  insert   apply_page on an empty table (all rows new);
  update   apply_page again with newer row versions (all rows updated);
  replay   apply_page with the same rows again (all unchanged).
apply_page figures include turning the pydantic models into rows, as in the real sync.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import random
import shutil
import tempfile
import time
import uuid
from decimal import Decimal
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from mahak_client.models import EntityBatch, ProductDetail
from shopdb.catalog import apply_page
from shopdb.embedded import EmbeddedPostgres, quote_ident, with_database
from shopdb.migrate import migrate
from shopdb.mirror import mirror, to_record
from shopdb.pool import create_pool


def make_details(n: int, version_base: int) -> list[ProductDetail]:
    rnd = random.Random(42)
    return [
        ProductDetail(
            product_detail_id=i, product_id=i // 3 + 1, row_version=version_base + i,
            product_detail_code=i, barcode=f"62{i:011d}", properties='[{"C":1,"V":"red"}]',
            **{f"price{n}": round(rnd.uniform(1_000, 9_000_000), 0) for n in range(1, 11)},
            discount=0.0, default_sell_price_level=1,
        )
        for i in range(1, n + 1)
    ]


def _copy_text(rows: list[tuple]) -> bytes:
    def cell(v: object) -> str:
        if v is None:
            return "\\N"
        if isinstance(v, bool):
            return "t" if v else "f"
        return str(v).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")

    return "".join("\t".join(cell(v) for v in row) + "\n" for row in rows).encode()


def pages(rows: list, size: int) -> list[list]:
    return [rows[i:i + size] for i in range(0, len(rows), size)]


async def timed(label: str, n: int, work: Callable[[], Awaitable[None]]) -> float:
    start = time.perf_counter()
    await work()
    elapsed = time.perf_counter() - start
    rate = n / elapsed
    print(f"  {label:<8} {n:>8} rows in {elapsed:6.2f} s  = {rate:>10,.0f} rows/s")
    return rate


async def run(dsn: str, n: int, page_size: int) -> None:
    await migrate(dsn)
    pool = await create_pool(dsn, min_size=1, max_size=2)
    m = mirror("product_details")
    try:
        first = make_details(n, 1_000_000)
        newer = make_details(n, 2_000_000)
        # The baseline gets the best case: rows prepared outside the timer, numbers already
        # Decimal (what a numeric column takes without conversion).
        records = [
            tuple(Decimal(repr(v)) if isinstance(v, float) else v for v in to_record(m, row, 1)[0])
            for row in first
        ]

        async def raw_binary() -> None:
            async with pool.acquire() as conn:
                for chunk in pages(records, page_size):
                    async with conn.transaction():
                        await conn.copy_records_to_table(m.table, records=chunk, columns=m.columns)

        texts = [_copy_text(chunk) for chunk in pages(records, page_size)]

        async def raw_text() -> None:
            async with pool.acquire() as conn:
                for data in texts:
                    async with conn.transaction():
                        await conn.copy_to_table(m.table, source=io.BytesIO(data), columns=m.columns)

        def applying(rows: list[ProductDetail]) -> Callable[[], Awaitable[None]]:
            async def work() -> None:
                for chunk in pages(rows, page_size):
                    batch = EntityBatch(entity="product_details", rows=chunk)
                    await apply_page(pool, batch, new_cursor=chunk[-1].row_version, price_level=1)
            return work

        print(f"{n} product details, pages of {page_size}:")
        binary_rate = await timed("raw bin", n, raw_binary)
        await pool.execute(f"TRUNCATE {m.table}")
        text_rate = await timed("raw text", n, raw_text)
        await pool.execute(f"TRUNCATE {m.table}")
        await pool.execute(f"VACUUM ANALYZE {m.table}")
        rates = {
            "insert": await timed("insert", n, applying(first)),
            "update": await timed("update", n, applying(newer)),
            "replay": await timed("replay", n, applying(newer)),
        }
        assert await pool.fetchval(f"SELECT count(*) FROM {m.table}") == n
        print("apply_page / raw COPY:   vs raw bin   vs raw text")
        for label, rate in rates.items():
            print(f"  {label:<8}               {rate / binary_rate:8.2f}   {rate / text_rate:10.2f}")
    finally:
        await pool.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=2_000)
    parser.add_argument("--dsn", help="server DSN (superuser); default: a temporary embedded server")
    args = parser.parse_args()

    root = None
    server = None
    server_dsn = args.dsn
    if server_dsn is None:
        root = Path(tempfile.mkdtemp(prefix="mahak-bench-"))
        server = EmbeddedPostgres(root / "pgdata", delete_on_stop=True)
        server_dsn = await asyncio.to_thread(server.start)
    scratch = f"bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f"CREATE DATABASE {quote_ident(scratch)}")
        await run(with_database(server_dsn, scratch), args.rows, args.page_size)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {quote_ident(scratch)} WITH (FORCE)")
        await admin.close()
        if server is not None:
            await asyncio.to_thread(server.stop)
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
