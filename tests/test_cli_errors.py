"""`mahak-sync` answers bad configuration and unreachable parts with one line on stderr and an
exit code (`mahak_sync.cli_errors`), never a traceback unless `--debug`; and it exits cleanly."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from mahak_client.errors import MahakAuthError
from mahak_simulator.server import SimulatorServer
from mahak_sync import cli
from mahak_sync.cli_errors import EXIT_CONFIG, EXIT_SOFTWARE, EXIT_UNAVAILABLE, explain
from mahak_sync.config import Settings, get_settings

MAHAK_SYNC = str(Path(sys.executable).parent / "mahak-sync")
# Environment variables that would point a command elsewhere than the test says.
_CONFIG_VARS = (
    "DATABASE_URL",
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_TASK_QUEUE",
    "MAHAK_BASE_URL",
    "MAHAK_USERNAME",
    "MAHAK_PASSWORD",
    "MAHAK_PAGE_SIZE",
    "MAHAK_SYNC_DATA_DIR",
)


async def run_cli(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *argv: str) -> int:
    """`mahak-sync ARGV` in this process, on the test's loop, through `main`'s error table."""
    for name in _CONFIG_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in {"MIGRATE_ON_START": "false", **env}.items():
        monkeypatch.setenv(name, value)
    # Logging stays pytest's: the CLI's set-up would replace the root handlers.
    monkeypatch.setattr(cli, "configure_logging", lambda *a, **k: None)
    get_settings.cache_clear()
    try:
        return await cli.run_async(cli.build_parser().parse_args(list(argv)))
    finally:
        get_settings.cache_clear()


def clean_env(**env: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in _CONFIG_VARS}
    return {**base, "LOG_LEVEL": "WARNING", **env}


async def run_process(*argv: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        MAHAK_SYNC,
        *argv,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


# A port nothing listens on: connecting is refused at once.
CLOSED = "127.0.0.1:1"


@pytest.mark.parametrize(
    ("argv", "env", "code", "line"),
    [
        (
            ["orders", "list"],
            {"DATABASE_URL": "localhost/shop"},
            EXIT_CONFIG,
            "error: DATABASE_URL is not a valid PostgreSQL URL (invalid DSN: scheme is expected "
            'to be either "postgresql" or "postgres", got \'\'); set it as '
            "postgresql://USER:PASSWORD@HOST:5432/DATABASE",
        ),
        (
            ["dead-letters", "list"],
            {"DATABASE_URL": f"postgresql://shop:hunter22@{CLOSED}/shop"},
            EXIT_UNAVAILABLE,
            f"error: cannot reach PostgreSQL at {CLOSED}/shop (DATABASE_URL) "
            "(ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', 1)); "
            "start it or fix DATABASE_URL",
        ),
        (
            ["sync", "status"],
            {"TEMPORAL_ADDRESS": CLOSED},
            EXIT_UNAVAILABLE,
            f"error: cannot reach Temporal at {CLOSED} (TEMPORAL_ADDRESS); start it "
            "(`mahak-sync dev`, or `temporal server start-dev`) or set TEMPORAL_ADDRESS to "
            "where it runs",
        ),
        (
            ["order", "status", "42"],
            {"MAHAK_PAGE_SIZE": "many"},
            EXIT_CONFIG,
            "error: bad configuration: MAHAK_PAGE_SIZE: Input should be a valid integer, "
            "unable to parse string as an integer; fix the environment or .env",
        ),
    ],
    ids=["bad-database-url", "postgres-down", "temporal-down", "bad-setting"],
)
async def test_bad_configuration_is_one_line_and_an_exit_code(
    argv: list[str], env: dict[str, str], code: int, line: str, tmp_path: Path
) -> None:
    got, out, err = await run_process(*argv, env=clean_env(**env), cwd=tmp_path)
    assert (got, out, err) == (code, "", line + "\n")
    assert "hunter22" not in err


async def test_debug_shows_the_traceback_too(tmp_path: Path) -> None:
    env = clean_env(TEMPORAL_ADDRESS=CLOSED)
    code, _, err = await run_process("sync", "status", "--debug", env=env, cwd=tmp_path)
    assert code == EXIT_UNAVAILABLE
    assert err.startswith("Traceback (most recent call last):"), err
    assert "RuntimeError: Failed client connect" in err
    assert err.splitlines()[-1].startswith("error: cannot reach Temporal at 127.0.0.1:1")
    code, _, err = await run_process("--debug", "sync", "status", env=env, cwd=tmp_path)
    assert code == EXIT_UNAVAILABLE and "Traceback" in err


async def test_a_database_without_migrations_says_to_migrate(
    empty_db_dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await run_cli(monkeypatch, {"DATABASE_URL": empty_db_dsn}, "orders", "list")
    assert code == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.startswith("error: the shop database at "), err
    assert err.endswith('(relation "shop_orders" does not exist); run `mahak-sync db migrate`\n'), (
        err
    )
    assert err.count("\n") == 1 and "Traceback" not in err


async def test_wrong_mahak_credentials_name_the_settings_to_fix(
    simulator: SimulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {
        "MAHAK_BASE_URL": simulator.base_url,
        "MAHAK_USERNAME": "shop",
        "MAHAK_PASSWORD": "not-the-password",
    }
    # `mahak check`/`pull` keep their own codes (2: credentials refused, 3: unreachable).
    assert await run_cli(monkeypatch, env, "mahak", "pull", "stores") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Mahak refused the credentials of 'shop': "), err
    assert err.endswith(
        "; fix MAHAK_USERNAME, MAHAK_PASSWORD, MAHAK_DATABASE_ID and MAHAK_PACKAGE_NO\n"
    )
    assert err.count("\n") == 1 and "not-the-password" not in err


def test_every_other_command_reports_refused_mahak_credentials_as_configuration() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        MAHAK_BASE_URL="https://mahak.example/API/v3",
        MAHAK_USERNAME="shop",
    )
    error = MahakAuthError("login refused", endpoint="LoginV2", mahak_message="bad password")
    assert explain(error, settings) == (
        EXIT_CONFIG,
        "Mahak at https://mahak.example/API/v3 refused the credentials of 'shop' (Mahak "
        "LoginV2: login refused (Mahak says: bad password)); fix MAHAK_USERNAME, "
        "MAHAK_PASSWORD, MAHAK_DATABASE_ID and MAHAK_PACKAGE_NO",
    )
    code, line = explain(ZeroDivisionError("division by zero"), settings)
    assert (code, line) == (
        EXIT_SOFTWARE,
        "unexpected error: ZeroDivisionError: division by zero; rerun with --debug for the "
        "traceback",
    )


async def test_outside_the_project_folder_no_new_database_is_created(tmp_path: Path) -> None:
    # Issue 15: no DATABASE_URL and no dev stack here: say where it looked, create nothing.
    code, out, err = await run_process("orders", "list", env=clean_env(), cwd=tmp_path)
    assert code == EXIT_CONFIG and out == ""
    assert err == (
        f"error: no DATABASE_URL, and no dev stack database under {tmp_path / '.data'}: set "
        "DATABASE_URL, or run this from the project folder (MAHAK_SYNC_DATA_DIR) where "
        "`mahak-sync dev` keeps its database\n"
    )
    assert not (tmp_path / ".data").exists()
