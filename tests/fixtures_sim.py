"""The Mahak simulator, started once per test run; `sim` gives each test a fresh account."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from mahak_simulator import SimControl, SimulatorConfig, SimulatorServer


@pytest.fixture(scope="session")
def simulator() -> Iterator[SimulatorServer]:
    server = SimulatorServer(SimulatorConfig())
    server.start()
    yield server
    server.stop()


@pytest_asyncio.fixture
async def sim(simulator: SimulatorServer) -> AsyncIterator[SimControl]:
    """Control of the session simulator, reset to a fresh account (no catalog, no faults)."""
    async with SimControl(simulator.root_url) as control:
        await control.reset()
        yield control
