"""`mahak-sync demo order [--lines N] [--pay]` (issue 15): a demo order from the mirrored catalog,
paid through the real signed webhook, synced to Mahak by the real worker."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from activities.incoming import IncomingSync
from mahak_client.client import MahakClient
from mahak_sync.health import serving
from mahak_sync.temporal import free_port
from mahak_sync.webhook import create_app
from shopdb import orders
from tests.test_cli_errors import run_cli
from tests.test_order_e2e import Stack, order_sim, sim, stack  # noqa: F401 - fixtures
from workflows.incoming_types import SyncEntityInput
from workflows.order_types import OrderSyncResult, order_workflow_id

pytestmark = pytest.mark.slow


async def test_demo_order_is_paid_through_the_webhook_and_reaches_mahak(
    stack: Stack,
    db_dsn: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {
        "DATABASE_URL": db_dsn,
        "TEMPORAL_ADDRESS": stack.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": stack.client.namespace,
        "TEMPORAL_TASK_QUEUE": stack.queue,
        "MAHAK_SYNC_DATA_DIR": str(tmp_path),
        "WEBHOOK_SECRET": "demo-secret",
    }
    port = free_port()
    # Nothing mirrored yet: a clear refusal, no order created.
    assert await run_cli(monkeypatch, env, "demo", "order") == 1
    assert "no products in stock from Mahak yet" in capsys.readouterr().out

    await stack.seed(products=3)
    # Order ids far from other tests' (workflow ids share the session's Temporal server).
    await stack.pool.execute("SELECT setval('shop_orders_id_seq', 7_000_000_000 + $1)", port)
    async with MahakClient(stack.server.base_url, "shop", "secret") as mahak:
        incoming = IncomingSync(stack.pool, mahak, lookback=0)
        for entity in ("products", "product_details", "product_detail_store_assets"):
            await incoming.sync_entity(SyncEntityInput(entity=entity, run_id="demo"))

    webhook = create_app(
        stack.settings.model_copy(update={"webhook_secret": SecretStr(env["WEBHOOK_SECRET"])}),
        pool=stack.pool,
        client=stack.client,
    )
    async with serving(webhook, port, host="127.0.0.1"):
        env["WEBHOOK_URL"] = f"http://127.0.0.1:{port}/payments/callback"
        code = await run_cli(monkeypatch, env, "demo", "order", "--lines", "2", "--pay")
    out = capsys.readouterr().out
    assert code == 0, out
    order_id = int(next(ln.split()[1] for ln in out.splitlines() if ln.startswith("order")))
    assert f"order-sync-{order_id}" in out and "/workflows/order-sync-" in out
    assert "webhook answered 202" in out

    result = await stack.client.get_workflow_handle(
        order_workflow_id(order_id), result_type=OrderSyncResult
    ).result()
    assert result.outcome == "synced"
    order = await orders.get_order(stack.pool, order_id)
    assert order is not None and len(order.lines) == 2 and order.payment_status == "paid"
    # The Web UI's list names the order, its customer (by id) and its total.
    described = await stack.client.get_workflow_handle(order_workflow_id(order_id)).describe()
    assert await described.static_summary() == (
        f"web order {order_id}: customer {order.customer_id}, total {order.amount:f}"
    )
    [held] = [o for o in await stack.sim.orders() if o.order_client_id == order.order_client_id]
    assert len(held.details) == 2

    # The one screen sees it: the synced order, today's count, the worker polling.
    assert await run_cli(monkeypatch, env, "status") == 0
    screen = capsys.readouterr().out
    assert "synced 1" in screen and re.search(r"synced today\s+1\n", screen), screen
    assert re.search(r"workers\s+1 polling", screen), screen
    assert await run_cli(monkeypatch, env, "status", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["orders"] == {"synced": 1} and report["synced_today"] == 1
    assert len(report["workers"]) == 1 and report["dead_letters_open"] == 0
    assert {e["entity"] for e in report["entities"]} >= {"products", "product_details"}


async def test_order_resolve_through_the_cli_refuses_then_decides(
    stack: Stack,
    db_dsn: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {
        "DATABASE_URL": db_dsn,
        "TEMPORAL_ADDRESS": stack.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": stack.client.namespace,
        "MAHAK_SYNC_DATA_DIR": str(tmp_path),
    }
    (d1, _), store = await stack.seed()
    for group in await stack.sim.entities("person_groups"):
        await stack.sim.delete("person_groups", group["PersonGroupId"])
    order = await stack.paid_order([(d1, store, 1, 50000)])
    handle = await stack.start(order.id)
    await stack.until(handle, "dispute")

    assert (
        await run_cli(monkeypatch, env, "order", "resolve", str(order.id + 1), "--action", "cancel")
        == 1
    )
    assert "has no sync workflow" in capsys.readouterr().err
    assert (
        await run_cli(
            monkeypatch,
            env,
            "order",
            "resolve",
            str(order.id),
            "--action",
            "cancel",
            "--note",
            "customer asked",
        )
        == 0
    )
    assert capsys.readouterr().out == (
        f"order {order.id}: cancel accepted; follow it with `mahak-sync order show {order.id}`\n"
    )
    assert (await handle.result()).outcome == "cancelled"
    # Nothing pending any more: the update is refused, with the reason.
    assert (
        await run_cli(monkeypatch, env, "order", "resolve", str(order.id), "--action", "resend")
        == 1
    )
    err = capsys.readouterr().err
    assert err.startswith(f"error: order {order.id}: refused:"), err
