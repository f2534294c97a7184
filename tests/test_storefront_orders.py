"""Issue 18: the order send uses the storefront's model. A line's tax and charge percent follow
the catalog's rule with Mahak's mirrored Settings (14001 tax, 14000 charge, 14008 tax on) as
the defaults, and a new customer goes into the mirrored default person group; what reaches the
simulator is asserted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import pytest
from pydantic import SecretStr
from temporalio.testing import ActivityEnvironment

from activities.incoming import IncomingSync
from activities.order_request import person_client_id
from activities.orders import OrderActivities
from mahak_client.client import MahakClient
from mahak_simulator import SimControl, SimulatorServer
from mahak_sync.config import Settings
from shopdb import orders
from tests.order_helpers import make_order
from workflows.order_types import SendRequest


@pytest.fixture
async def client(simulator: SimulatorServer, sim: SimControl) -> AsyncIterator[MahakClient]:
    async with MahakClient(simulator.base_url, "shop", SecretStr("secret")) as mahak:
        yield mahak


async def set_setting(sim: SimControl, code: int, value: str) -> None:
    [row] = [s for s in await sim.entities("Settings") if s["SettingCode"] == code]
    await sim.inject_row("Settings", {**row, "Value": value})


@pytest.mark.parametrize(
    ("tax_on", "want"),
    [("1", (9, 2)), ("0", (0, 0))],
    ids=["mahak-defaults", "tax-off-in-mahak"],
)
async def test_a_sent_line_takes_tax_and_charge_from_the_mirrored_settings(
    client: MahakClient,
    sim: SimControl,
    db_pool: asyncpg.Pool,
    tax_on: str,
    want: tuple[int, int],
) -> None:
    seeded = await sim.seed(1, stock=10, people=0, wholesale_group=True)
    # Mahak desktop: default tax 9 %, charge 2 %; the first (retail) customer group removed,
    # so the wholesale group is the default one.
    await set_setting(sim, 14001, "9")
    await set_setting(sim, 14000, "2")
    await set_setting(sim, 14008, tax_on)
    retail = min(g["PersonGroupId"] for g in await sim.entities("PersonGroups"))
    await sim.delete("PersonGroups", retail)
    cycle = await IncomingSync(db_pool, client).run_cycle(page_size=None, run_id="run-1")
    assert cycle.ok, cycle

    detail, store = seeded.product_details[0], seeded.stores[0]
    order = await make_order(db_pool, [(detail, store, 1, 1000)])
    await orders.mark_paid(db_pool, order.id, order.amount, f"PAY-{order.id}")
    await orders.begin_send(db_pool, order.id)  # claimed, as the order workflow does first
    activities = OrderActivities(db_pool, client, settings=Settings(_env_file=None))  # type: ignore[call-arg]
    outcome = await ActivityEnvironment().run(activities.send, SendRequest(order_id=order.id))
    assert outcome.kind == "accepted", outcome

    sent = await sim.order(order.order_client_id)
    assert sent is not None
    [line] = sent.details
    assert (line["TaxPercent"], line["ChargePercent"]) == want
    [person] = [
        p
        for p in await sim.entities("People")
        if p["PersonClientId"] == person_client_id(order.customer_id)
    ]
    assert person["PersonGroupId"] == seeded.person_groups[0], "the mirrored default group"
    # The catalog shows the same percents the order carried.
    shown = await db_pool.fetchrow(
        "SELECT tax_percent, charge_percent FROM shop_catalog WHERE product_detail_id = $1", detail
    )
    assert (shown["tax_percent"], shown["charge_percent"]) == tuple(map(Decimal, want))


async def test_configured_percents_override_mahaks_defaults(
    client: MahakClient, sim: SimControl, db_pool: asyncpg.Pool
) -> None:
    seeded = await sim.seed(1, stock=10, people=0)
    await set_setting(sim, 14001, "9")
    assert (await IncomingSync(db_pool, client).run_cycle(page_size=None, run_id="run-1")).ok
    order = await make_order(db_pool, [(seeded.product_details[0], seeded.stores[0], 1, 1000)])
    await orders.mark_paid(db_pool, order.id, order.amount, f"PAY-{order.id}")
    await orders.begin_send(db_pool, order.id)  # claimed, as the order workflow does first
    settings = Settings(_env_file=None, MAHAK_TAX_PERCENT=4)  # type: ignore[call-arg]
    activities = OrderActivities(db_pool, client, settings=settings)
    outcome = await ActivityEnvironment().run(activities.send, SendRequest(order_id=order.id))
    assert outcome.kind == "accepted", outcome
    sent = await sim.order(order.order_client_id)
    assert sent is not None
    assert [d["TaxPercent"] for d in sent.details] == [4]
