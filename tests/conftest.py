"""Session-wide fixtures: each real server (PostgreSQL, the Mahak simulator, Temporal) starts
once per test run and is shared; each plugin module below owns one of them."""

pytest_plugins: list[str] = [
    "tests.fixtures_temporal",
    "tests.fixtures_db",
    "tests.fixtures_sim",
]
