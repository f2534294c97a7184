"""Session-wide fixtures: each real server (PostgreSQL, the Mahak simulator, Temporal) starts
once per test run and is shared; each plugin module below owns one of them."""

import pytest

pytest_plugins: list[str] = [
    "tests.fixtures_temporal",
    "tests.fixtures_db",
    "tests.fixtures_sim",
]


# Fixtures that start (or need) a real server: a test using none of them is in the fast tier.
SERVER_FIXTURES = frozenset(
    {
        "temporal_env",
        "temporal_client",
        "time_skipping_env",
        "skipping_env",
        "pg_server",
        "db_dsn",
        "db_pool",
        "empty_db_dsn",
        "simulator",
        "sim",
        "env",  # tests/test_order_workflow.py's time-skipping environment
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`-m fast`: the tests that need no server (pure logic, parsing, the pager against fakes,
    wire shapes, structure), for a quick loop while editing; `slow` modules are never fast."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if not fixtures & SERVER_FIXTURES and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.fast)
