"""`mahak-sync dead-letters list|show|retry|drop`: what the incoming sync could not store,
readable and fixable without SQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shopdb.catalog import set_cursor
from tests.test_cli_errors import run_cli


async def _letter(
    pool: asyncpg.Pool, entity: str, mahak_id: int | None, version: int, payload: dict[str, Any]
) -> int:
    return int(
        await pool.fetchval(
            """
            INSERT INTO mahak_dead_letters (entity, mahak_id, row_version, payload, reason)
            VALUES ($1, $2, $3, $4::text::jsonb, 'refused when first seen') RETURNING id
            """,
            entity,
            mahak_id,
            version,
            json.dumps(payload),
        )
    )


async def _state(pool: asyncpg.Pool, letter_id: int) -> dict[str, Any]:
    row = await pool.fetchrow(
        "SELECT resolved, resolution, seen_count FROM mahak_dead_letters WHERE id = $1", letter_id
    )
    return dict(row)


@pytest.fixture
def env(db_dsn: str, tmp_path: Path) -> dict[str, str]:
    return {"DATABASE_URL": db_dsn, "MAHAK_SYNC_DATA_DIR": str(tmp_path)}


async def test_list_and_show(
    db_pool: asyncpg.Pool,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = await _letter(db_pool, "stores", 501, 10, {"StoreId": 501, "RowVersion": 10})
    product = await _letter(db_pool, "products", 77, 20, {"ProductId": 77, "RowVersion": 20})

    assert await run_cli(monkeypatch, env, "dead-letters", "list", "--entity", "Stores") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "entity", "Mahak", "id", "RowVersion", "seen", "last", "seen", "reason"]  # fmt: skip
    assert len(lines) == 2 and lines[1].split()[:5] == [str(store), "stores", "501", "10", "1"]
    assert lines[1].endswith("refused when first seen")

    assert await run_cli(monkeypatch, env, "dead-letters", "list", "--json") == 0
    assert [d["id"] for d in json.loads(capsys.readouterr().out)] == [product, store]

    assert await run_cli(monkeypatch, env, "dead-letters", "show", str(product)) == 0
    out = capsys.readouterr().out
    assert f"dead letter  {product}\n" in out and "entity       products\n" in out
    assert "state        open\n" in out
    assert out.endswith('payload:\n  {\n    "ProductId": 77,\n    "RowVersion": 20\n  }\n')

    assert await run_cli(monkeypatch, env, "dead-letters", "show", "999999") == 1
    assert capsys.readouterr() == ("", "error: no such dead letter 999999\n")


async def test_retry_stores_the_row_and_resolves_the_letter(
    db_pool: asyncpg.Pool,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await set_cursor(db_pool, "stores", 900)
    good = await _letter(
        db_pool, "stores", 501, 10, {"StoreId": 501, "Name": "Central", "RowVersion": 10}
    )
    assert await run_cli(monkeypatch, env, "dead-letters", "retry", str(good)) == 0
    assert capsys.readouterr().out == (
        f"dead letter {good} (stores, id 501, RowVersion 10): stored (the shop now holds "
        "RowVersion 10); resolved\n"
    )
    row = await db_pool.fetchrow("SELECT name, row_version FROM mahak_stores WHERE id = 501")
    assert dict(row) == {"name": "Central", "row_version": 10}
    assert await _state(db_pool, good) == {
        "resolved": True,
        "resolution": "retried by operator: stored",
        "seen_count": 1,
    }
    # The cursor never moves back for a retry.
    assert (
        await db_pool.fetchval(
            "SELECT last_row_version FROM mahak_sync_state WHERE entity = 'stores'"
        )
        == 900
    )

    assert await run_cli(monkeypatch, env, "dead-letters", "retry", str(good)) == 1
    assert capsys.readouterr().err == (
        f"error: dead letter {good} (stores, id 501, RowVersion 10) is already resolved "
        "(retried by operator: stored)\n"
    )


async def test_retry_of_a_row_that_is_still_bad_keeps_it_open(
    db_pool: asyncpg.Pool,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = await _letter(db_pool, "stores", 502, 11, {"StoreId": 502, "RowVersion": "eleven"})
    assert await run_cli(monkeypatch, env, "dead-letters", "retry", str(bad)) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"dead letter {bad} (stores, id 502, RowVersion 11): refused again (")
    assert out.endswith("); still open\n") and "row_version" in out.lower()
    assert await _state(db_pool, bad) == {"resolved": False, "resolution": None, "seen_count": 2}
    assert await db_pool.fetchval("SELECT count(*) FROM mahak_stores WHERE id = 502") == 0


async def test_retry_all_and_drop(
    db_pool: asyncpg.Pool,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stores = [
        await _letter(db_pool, "stores", 600 + i, 5, {"StoreId": 600 + i, "RowVersion": 5})
        for i in range(2)
    ]
    bad = await _letter(db_pool, "stores", 700, 6, {"StoreId": 700, "RowVersion": "six"})
    other = await _letter(db_pool, "products", 78, 7, {"ProductId": 78, "RowVersion": 7})

    assert await run_cli(monkeypatch, env, "dead-letters", "retry", "--all", "--entity", "stores") == 1  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[-1] == "retried 3: 2 stored, 1 refused again"
    assert [await _state(db_pool, i) for i in stores] == [
        {"resolved": True, "resolution": "retried by operator: stored", "seen_count": 1}
    ] * 2
    assert (await _state(db_pool, other))["resolved"] is False  # another entity: untouched

    assert await run_cli(monkeypatch, env, "dead-letters", "drop", str(bad)) == 0
    assert capsys.readouterr().out == (
        f"dead letter {bad} (stores, id 700, RowVersion 6): dropped; resolved without "
        "storing its row\n"
    )
    assert await _state(db_pool, bad) == {
        "resolved": True,
        "resolution": "dropped by operator",
        "seen_count": 2,  # the first try, and the retry above
    }
    assert await run_cli(monkeypatch, env, "dead-letters", "drop", str(bad)) == 1
    assert capsys.readouterr().err.endswith("is already resolved (dropped by operator)\n")
    assert await db_pool.fetchval("SELECT count(*) FROM mahak_stores WHERE id = 700") == 0
