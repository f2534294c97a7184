"""The payment callback against the real shop database (and a real Temporal server for the
accepted calls): who is let in, what is refused, and that a refusal changes nothing."""

from __future__ import annotations

import json
import time
import uuid
from decimal import Decimal

import httpx
import pytest
from pydantic import SecretStr

from mahak_sync.config import Settings
from mahak_sync.webhook import create_app, sign, signature_problem
from shopdb import orders
from tests.order_helpers import db_snapshot, make_order
from workflows.order_types import OrderSyncInput, order_workflow_id

SECRET = "whsec-test-0123456789"


class _NoTemporal:
    """A refused call must never reach Temporal."""

    def __getattr__(self, name: str):
        raise AssertionError(f"Temporal used on a refused call ({name})")


def _settings(task_queue: str = "unused") -> Settings:
    return Settings(
        WEBHOOK_SECRET=SecretStr(SECRET),
        WEBHOOK_MAX_SKEW_SECONDS=300,
        TEMPORAL_TASK_QUEUE=task_queue,
    )


def _signed(body: bytes, *, ts: int | None = None, secret: str = SECRET) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    return {
        "X-Timestamp": str(ts),
        "X-Signature": sign(secret, ts, body),
        "Content-Type": "application/json",
    }


def _body(order_id: int, amount: str = "300000", ref: str = "PAY-1") -> bytes:
    return json.dumps(
        {
            "order_id": order_id,
            "amount": amount,
            "payment_ref": ref,
            "paid_at": "2025-10-04T15:18:38+03:30",
        }
    ).encode()


async def _post(app, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://shop"
    ) as http:
        return await http.post("/payments/callback", content=body, headers=headers)


def test_signature_check_covers_timestamp_and_body():
    body = b'{"order_id": 1}'
    now = 1_700_000_000
    good = sign(SECRET, now, body)
    assert signature_problem(SECRET, str(now), good, body, max_skew=300, now=now) is None
    assert (
        signature_problem(SECRET, str(now), good, body + b" ", max_skew=300, now=now)
        == "bad signature"
    )
    assert (
        signature_problem(SECRET, str(now + 1), good, body, max_skew=300, now=now)
        == "bad signature"
    )
    assert (
        signature_problem(SECRET, str(now), good, body, max_skew=300, now=now + 301)
        == "timestamp outside the allowed window"
    )
    assert (
        signature_problem("", str(now), good, body, max_skew=300, now=now)
        == "webhook secret not configured"
    )
    assert signature_problem(SECRET, None, good, body, max_skew=300, now=now) == "missing signature"


@pytest.mark.parametrize(
    "case",
    [
        "no_signature",
        "wrong_secret",
        "tampered_body",
        "replayed_timestamp",
        "future_timestamp",
        "unknown_order",
        "malformed_json",
        "missing_field",
        "amount_mismatch",
        "negative_amount",
        "order_id_beyond_bigint",
    ],
)
async def test_refused_calls_change_nothing(db_pool, case):
    order = await make_order(db_pool, [(101, 1, 2, 150000)])
    app = create_app(_settings(), pool=db_pool, client=_NoTemporal())  # type: ignore[arg-type]
    body = _body(order.id)
    headers = _signed(body)
    expected = 401
    if case == "no_signature":
        headers = {"Content-Type": "application/json"}
    elif case == "wrong_secret":
        headers = _signed(body, secret="not-the-secret")
    elif case == "tampered_body":
        body = _body(order.id, amount="1")
    elif case == "replayed_timestamp":
        headers = _signed(body, ts=int(time.time()) - 3600)
    elif case == "future_timestamp":
        headers = _signed(body, ts=int(time.time()) + 3600)
    elif case == "unknown_order":
        body, expected = _body(order.id + 1000), 404
        headers = _signed(body)
    elif case == "malformed_json":
        body, expected = b'{"order_id": ', 422
        headers = _signed(body)
    elif case == "missing_field":
        body, expected = json.dumps({"order_id": order.id, "amount": "300000"}).encode(), 422
        headers = _signed(body)
    elif case == "amount_mismatch":
        body, expected = _body(order.id, amount="299999"), 409
        headers = _signed(body)
    elif case == "negative_amount":
        body, expected = _body(order.id, amount="-5"), 422
        headers = _signed(body)
    elif case == "order_id_beyond_bigint":
        body, expected = _body(2**63), 422
        headers = _signed(body)
    before = await db_snapshot(db_pool)
    response = await _post(app, body, headers)
    assert response.status_code == expected, response.text
    assert await db_snapshot(db_pool) == before
    assert SECRET not in response.text


async def test_order_not_payable_is_409(db_pool):
    paid = await make_order(db_pool, [(101, 1, 1, 1000)])
    await orders.mark_paid(db_pool, paid.id, Decimal(1000), "PAY-FIRST")
    cancelled = await make_order(db_pool, [(101, 1, 1, 1000)])
    await orders.cancel_and_restock(db_pool, cancelled.id, "customer changed their mind")
    app = create_app(_settings(), pool=db_pool, client=_NoTemporal())  # type: ignore[arg-type]
    before = await db_snapshot(db_pool)
    for order_id, ref in ((paid.id, "PAY-OTHER"), (cancelled.id, "PAY-2")):
        body = _body(order_id, amount="1000", ref=ref)
        response = await _post(app, body, _signed(body))
        assert response.status_code == 409, response.text
    assert await db_snapshot(db_pool) == before


async def test_accepted_call_marks_paid_and_a_duplicate_attaches(db_pool, temporal_client):
    queue = f"webhook-{uuid.uuid4().hex[:8]}"  # no worker: the workflow just waits
    order = await make_order(db_pool, [(101, 1, 2, 150000)])
    app = create_app(_settings(queue), pool=db_pool, client=temporal_client)
    body = _body(order.id)
    first = await _post(app, body, _signed(body))
    assert first.status_code == 202, first.text
    workflow_id = first.json()["workflow_id"]
    assert workflow_id == order_workflow_id(order.id)
    row = await orders.get_order(db_pool, order.id)
    assert row.payment_status == "paid" and row.payment_ref == "PAY-1"
    handle = temporal_client.get_workflow_handle(workflow_id)
    try:
        desc = await handle.describe()
        assert desc.workflow_type == "OrderSyncWorkflow" and desc.task_queue == queue
        # The gateway retries the same callback: same workflow, same run, nothing new in the DB.
        snapshot = await db_snapshot(db_pool)
        again = await _post(app, body, _signed(body))
        assert again.status_code == 202 and again.json()["workflow_id"] == workflow_id
        assert (await handle.describe()).run_id == desc.run_id
        assert await db_snapshot(db_pool) == snapshot
        # Only the order id goes into the workflow: no customer data, no payment details.
        history = await handle.fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        payload = json.loads(started.input.payloads[0].data)
        assert OrderSyncInput.model_validate(payload).order_id == order.id
        assert "Sara" not in str(started.input) and "PAY-1" not in str(started.input)
    finally:
        await handle.terminate("test over")


async def test_healthz(db_pool):
    app = create_app(_settings(), pool=db_pool, client=_NoTemporal())  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://x"
    ) as http:
        response = await http.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_readyz_names_postgresql_and_temporal(db_pool, temporal_client):
    app = create_app(_settings(), pool=db_pool, client=temporal_client)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://x"
    ) as http:
        ready = await http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert {c["name"]: c["ok"] for c in ready.json()["checks"]} == {
        "postgresql": True,
        "temporal": True,
    }

    down = create_app(_settings(), pool=db_pool, client=_NoTemporal())  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=down), base_url="http://x"
    ) as http:
        not_ready = await http.get("/readyz")
    assert not_ready.status_code == 503
    [temporal] = [c for c in not_ready.json()["checks"] if c["name"] == "temporal"]
    assert not temporal["ok"] and temporal["detail"]
