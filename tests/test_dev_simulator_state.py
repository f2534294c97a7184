"""The dev stack's simulator remembers its data across restarts (issue 15, "First run"): rows,
the RowVersion and id counters and the order book come back from the state file; without one
the simulator keeps everything in memory, as tests and `mahak-sync simulator` expect."""

from __future__ import annotations

from pathlib import Path

from mahak_simulator import SimulatorConfig, SimulatorServer
from mahak_simulator.control import SimControl


async def test_a_restarted_simulator_has_what_the_last_one_had(tmp_path: Path) -> None:
    state_file = tmp_path / "simulator-state.json"
    first = SimulatorServer(SimulatorConfig(seed_products=3), state_file=state_file).start()
    try:
        async with SimControl(first.root_url) as sim:
            seeded = await sim.entities("products")
            person = await sim.inject_row(
                "People", {"PersonId": 4242, "FirstName": "Kept", "Deleted": False}
            )
            await sim.seed(products=1)
            version = (await sim.stats()).row_version
    finally:
        first.stop()
    assert state_file.exists()

    second = SimulatorServer(SimulatorConfig(seed_products=3), state_file=state_file).start()
    try:
        async with SimControl(second.root_url) as sim:
            products = await sim.entities("products")
            people = {p["PersonId"]: p for p in await sim.entities("people")}
            assert len(products) == len(seeded) + 1, "reseeded instead of loaded"
            assert people[4242]["FirstName"] == "Kept"
            assert people[4242]["RowVersion"] == person["RowVersion"]
            # Counters go on where they stopped: new rows get higher RowVersions and new ids.
            assert (await sim.stats()).row_version == version
            await sim.seed(products=1)
            again = await sim.entities("products")
            assert min(r["RowVersion"] for r in again if r not in products) > version
            assert len({r["ProductId"] for r in again}) == len(again)
    finally:
        second.stop()


async def test_without_a_state_file_nothing_is_written(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with SimulatorServer(SimulatorConfig(seed_products=1)) as server:
        async with SimControl(server.root_url) as sim:
            await sim.seed(products=1)
    assert list(tmp_path.iterdir()) == []
