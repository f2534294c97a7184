"""`mahak-sync order start|status|show` and `orders list`: checked in the shop database first,
readable by default, JSON with `--json`."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from mahak_sync import cli_orders
from shopdb import orders
from shopdb.models import ShopOrder
from tests.order_helpers import make_order
from tests.test_cli_errors import run_cli
from workflows.order_types import order_workflow_id


def _env(db_dsn: str, client: Client, tmp_path: Path, queue: str | None = None) -> dict[str, str]:
    return {
        "DATABASE_URL": db_dsn,
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": client.namespace,
        # No worker polls this queue: a started workflow waits, and is terminated below.
        "TEMPORAL_TASK_QUEUE": queue or f"test-{uuid.uuid4().hex[:12]}",
        "MAHAK_SYNC_DATA_DIR": str(tmp_path),
    }


async def _exists(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        assert err.status == RPCStatusCode.NOT_FOUND
        return False
    return True


async def _paid_order(pool: asyncpg.Pool) -> ShopOrder:
    order = await make_order(pool, [(101, 1, 2, 1000)])
    return await orders.mark_paid(pool, order.id, order.amount, f"ref-{order.id}")


async def test_order_start_refuses_missing_and_unpaid_orders_and_starts_nothing(
    db_pool: asyncpg.Pool,
    db_dsn: str,
    temporal_client: Client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = _env(db_dsn, temporal_client, tmp_path)
    unpaid = await make_order(db_pool, [(101, 1, 1, 500)])
    missing = unpaid.id + 1_000_000

    assert await run_cli(monkeypatch, env, "order", "start", str(missing)) == 1
    assert capsys.readouterr() == ("", f"error: no such order {missing}\n")
    assert not await _exists(temporal_client, order_workflow_id(missing))

    assert await run_cli(monkeypatch, env, "order", "start", str(unpaid.id)) == 1
    assert capsys.readouterr() == ("", f"error: order {unpaid.id} is not paid\n")
    assert not await _exists(temporal_client, order_workflow_id(unpaid.id))

    paid = await _paid_order(db_pool)
    assert await run_cli(monkeypatch, env, "order", "start", str(paid.id)) == 0
    workflow_id = order_workflow_id(paid.id)
    assert json.loads(capsys.readouterr().out) == {"order_id": paid.id, "workflow_id": workflow_id}
    try:
        assert await _exists(temporal_client, workflow_id)
    finally:
        await temporal_client.get_workflow_handle(workflow_id).terminate("test done")


async def test_order_status_without_a_workflow_says_how_to_start_it(
    db_dsn: str,
    temporal_client: Client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = _env(db_dsn, temporal_client, tmp_path)
    order_id = 9_000_000_000 + uuid.uuid4().int % 1_000_000
    assert await run_cli(monkeypatch, env, "order", "status", str(order_id)) == 1
    assert capsys.readouterr() == (
        "",
        f"error: order {order_id} has no sync workflow (order-sync-{order_id}); start it "
        f"with `mahak-sync order start {order_id}`\n",
    )
    assert await run_cli(monkeypatch, env, "order", "status", str(order_id), "--json") == 1
    out = json.loads(capsys.readouterr().out)
    assert out["order_id"] == order_id and "not found" in out["error"]


async def test_orders_list_shows_sync_state_and_filters_by_status(
    db_pool: asyncpg.Pool,
    db_dsn: str,
    temporal_client: Client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = _env(db_dsn, temporal_client, tmp_path)
    unpaid = await make_order(db_pool, [(101, 1, 1, 500)])
    disputed = await _paid_order(db_pool)
    await orders.transition_status(
        db_pool,
        disputed.id,
        "pending",
        "dispute",
        last_mahak_error="Mahak refused ProductDetailId",
        sync_attempts=3,
    )

    assert await run_cli(monkeypatch, env, "orders", "list", "--status", "dispute", "--json") == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["id"] == disputed.id and row["paid_at"] is not None
    assert {k: row[k] for k in row if k not in ("id", "paid_at")} == {
        "payment_status": "paid",
        "sync_status": "dispute",
        "attempts": 3,
        "last_error": "Mahak refused ProductDetailId",
        "mahak_order_id": None,
    }

    assert await run_cli(monkeypatch, env, "orders", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "id", "payment", "paid", "at", "sync", "status", "attempts", "Mahak", "order", "last", "error"
    ]  # fmt: skip
    assert [line.split()[:2] for line in lines[1:]] == [
        [str(disputed.id), "paid"],
        [str(unpaid.id), "unpaid"],
    ]
    assert lines[1].split()[4:] == ["dispute", "3", "-", "Mahak", "refused", "ProductDetailId"]
    assert lines[2].split()[2:] == ["-", "pending", "0", "-", "-"]

    assert await run_cli(monkeypatch, env, "orders", "list", "--status", "synced") == 0
    assert capsys.readouterr().out == "no orders with sync status synced\n"


async def test_order_show_gives_the_row_the_workflow_and_its_web_ui_link(
    db_pool: asyncpg.Pool,
    db_dsn: str,
    temporal_client: Client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = _env(db_dsn, temporal_client, tmp_path)
    monkeypatch.setattr(cli_orders, "QUERY_TIMEOUT", timedelta(seconds=1))
    order = await _paid_order(db_pool)
    workflow_id = order_workflow_id(order.id)
    host = temporal_client.service_client.config.target_host.split(":")[0]

    assert await run_cli(monkeypatch, env, "order", "show", str(order.id)) == 0
    out = capsys.readouterr().out
    shown_fields = [line.split(None, 1) for line in out.split("\n\n")[0].splitlines()]
    assert [label for label, _ in shown_fields] == [
        "order",
        "customer",
        "amount",
        "payment",
        "paid",
        "sync",
        "attempts",
    ]  # fmt: skip: no label left dangling for what is not there (last error, Mahak ids, ...)
    assert shown_fields[:4] == [
        ["order", str(order.id)], ["customer", "Sara Ahmadi"], ["amount", "2000 IRR"],
        ["payment", "paid"],
    ]  # fmt: skip
    assert out.split("\n\n")[0].splitlines()[5:] == ["sync status  pending", "attempts     0"]
    assert f"workflow  {workflow_id} (none)\n" in out
    assert f"web UI    http://{host}:8233/namespaces/default/workflows/{workflow_id}\n" in out
    assert out.endswith("  no sync workflow has run for this order\n")

    # The dev stack's ready file names its Web UI: the link follows it.
    (tmp_path / "dev-ready.json").write_text(
        json.dumps(
            {"temporal_ui": "http://127.0.0.1:18233", "temporal_address": env["TEMPORAL_ADDRESS"]}
        )
    )
    await run_cli(monkeypatch, env, "order", "start", str(order.id))
    capsys.readouterr()
    try:
        assert await run_cli(monkeypatch, env, "order", "show", str(order.id), "--json") == 0
        shown = json.loads(capsys.readouterr().out)
    finally:
        await temporal_client.get_workflow_handle(workflow_id).terminate("test done")
    assert shown["order"]["id"] == order.id and shown["order"]["sync_status"] == "pending"
    assert shown["workflow"]["id"] == workflow_id
    assert shown["workflow"]["url"] == (
        f"http://127.0.0.1:18233/namespaces/default/workflows/{workflow_id}"
    )
    # Running, but no worker answers its query on this queue: said, not hung.
    assert shown["workflow"]["state"] == "running"
    assert "is the worker running?" in shown["workflow"]["note"]

    assert await run_cli(monkeypatch, env, "order", "show", str(order.id + 10**6)) == 1
    assert capsys.readouterr().err == f"error: no such order {order.id + 10**6}\n"
