"""One cluster of OS processes (PostgreSQL, Temporal, simulator, webhook, worker) shared by the
resilience cases; its seed is printed in the report header and replayed with
`MAHAK_RESILIENCE_SEED`; `MAHAK_RESILIENCE_SIZE` scales the run (see README.md here)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from .cluster import Cluster, Plan, run_seed, run_size

SEED = run_seed()
PLAN = Plan(size=run_size(), seed=SEED)


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"resilience: seed {SEED} (replay: MAHAK_RESILIENCE_SEED={SEED}), size {PLAN.size}"]


@pytest.fixture(scope="session")
def plan() -> Plan:
    return PLAN


@pytest_asyncio.fixture(scope="session")
async def cluster(plan: Plan) -> AsyncIterator[Cluster]:
    print(f"\nresilience seed {plan.seed} size {plan.size}: MAHAK_RESILIENCE_SEED={plan.seed}")
    c = Cluster(plan.seed)
    try:
        await c.start()
        yield c
    finally:
        with contextlib.suppress(Exception):
            await c.sim_figures()
        await c.close()
        report = os.environ.get("MAHAK_RESILIENCE_REPORT")
        if report:
            Path(report).write_text(
                json.dumps(
                    {"seed": plan.seed, "size": plan.size, **c.figures.as_dict(), **c.last_verdict},
                    indent=2,
                )
            )
        if os.environ.get("MAHAK_RESILIENCE_KEEP"):
            print(f"cluster state kept in {c.root}")
        else:
            c.remove()
