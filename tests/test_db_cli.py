"""`mahak-sync db migrate|status` and `open_database` against a configured DATABASE_URL."""

from __future__ import annotations

import pytest

from mahak_sync import cli_db
from mahak_sync.cli import build_parser
from mahak_sync.config import Settings
from shopdb.catalog import set_cursor
from shopdb.migrate import available_migrations
from shopdb.pool import open_database


def settings_for(dsn: str, **extra: object) -> Settings:
    return Settings(_env_file=None, DATABASE_URL=dsn, **extra)  # type: ignore[call-arg]


async def run_cli(argv: list[str], dsn: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(cli_db, "get_settings", lambda: settings_for(dsn))
    args = build_parser().parse_args(argv)
    return await args.func(args)


async def test_db_migrate_then_status(
    empty_db_dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    versions = [m.version for m in available_migrations()]
    assert await run_cli(["db", "status"], empty_db_dsn, monkeypatch) == 1  # pending migrations
    assert "PENDING" in capsys.readouterr().out

    assert await run_cli(["db", "migrate"], empty_db_dsn, monkeypatch) == 0
    assert (
        capsys.readouterr().out.strip()
        == f"applied {len(versions)} migration(s): {', '.join(versions)}"
    )
    assert await run_cli(["db", "migrate"], empty_db_dsn, monkeypatch) == 0
    assert capsys.readouterr().out.strip() == "applied 0 migration(s)"

    async with open_database(settings_for(empty_db_dsn), migrate=False) as pool:
        await set_cursor(pool, "product_details", 4_028_298_556)
    assert await run_cli(["db", "status"], empty_db_dsn, monkeypatch) == 0
    out = capsys.readouterr().out
    assert "PENDING" not in out and all(v in out for v in versions)
    assert "product_details" in out and "4028298556" in out


async def test_open_database_migrates_when_configured(empty_db_dsn: str) -> None:
    async with open_database(settings_for(empty_db_dsn, MIGRATE_ON_START=True)) as pool:
        assert await pool.fetchval("SELECT count(*) FROM schema_migrations") == len(
            available_migrations()
        )
