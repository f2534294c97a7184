"""Temporal for tests: one dev server for the whole run, and time-skipping servers on demand.

Both come from the venv's bundled binaries; nothing is downloaded.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from mahak_sync.temporal import SEARCH_ATTRIBUTES, temporal_cli_path, test_server_path

STARTUP_TIMEOUT = timedelta(seconds=60)


@pytest_asyncio.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """A real (dev) Temporal server, headless, with the project's search attributes."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
        # The SDK's default (5 s) is too tight for a loaded 2-core CI machine.
        dev_server_startup_timeout=STARTUP_TIMEOUT,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
def temporal_client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture
def task_queue() -> str:
    """A task queue of the test's own, so workers of different tests never share tasks."""
    return f"test-{uuid.uuid4().hex[:12]}"


@asynccontextmanager
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A fresh time-skipping test server: timers pass instantly while workflows wait.

    It cannot register custom search attributes: workflows that upsert them need that
    switched off here (the incoming sync: `SyncConfig.publish_search_attributes`).
    """
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server_path(),
        data_converter=pydantic_data_converter,
        test_server_startup_timeout=STARTUP_TIMEOUT,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest_asyncio.fixture
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping_env() as env:
        yield env
