"""No secret and no customer's personal data in any process's log, in any workflow history
(payloads decoded, failure messages included) or in the error texts stored in the database:
the Mahak password and its MD5, Mahak tokens (JWTs), the webhook secret, and each customer's
names, e-mail, mobile and addresses. Runs last, over everything the earlier cases produced."""

from __future__ import annotations

import re
from typing import Any

import pytest
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload

from .cluster import Cluster, Plan

pytestmark = pytest.mark.slow

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.?")


def _strings(message: Message) -> list[str]:
    """Every string in a proto message, payload data decoded."""
    out: list[str] = []
    if isinstance(message, Payload):
        out.append(message.data.decode(errors="replace"))
        out += [v.decode(errors="replace") for v in message.metadata.values()]
        return out
    for _descriptor, value in message.ListFields():
        if isinstance(value, (str, bytes, Message, int, float, bool)):
            values = [value]
        elif hasattr(value, "values") and callable(value.values):  # a map field
            values = list(value.values())
        else:  # a repeated field
            values = list(value)
        for item in values:
            if isinstance(item, Message):
                out += _strings(item)
            elif isinstance(item, str):
                out.append(item)
            elif isinstance(item, bytes):
                out.append(item.decode(errors="replace"))
    return out


def needles(cluster: Cluster) -> dict[str, str]:
    found = {
        "Mahak password": cluster.mahak_password,
        "Mahak password MD5": cluster.mahak_password_md5,
        "Mahak password MD5 (upper)": cluster.mahak_password_md5.upper(),
        "webhook secret": cluster.webhook_secret,
    }
    for order_id, placed in cluster.placed.items():
        for i, value in enumerate(placed.pii):
            found[f"PII {i} of order {order_id}"] = value
    return found


def scan(where: str, text: str, wanted: dict[str, str]) -> list[str]:
    hits = [f"{where}: {name} ({value[:4]}...)" for name, value in wanted.items() if value in text]
    hits += [f"{where}: a token {m.group(0)[:12]}..." for m in JWT.finditer(text)]
    return hits


async def _histories(cluster: Cluster) -> list[tuple[str, str]]:
    out = []
    async for wf in cluster.client.list_workflows():
        history = await cluster.client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        out.append(
            (
                f"history {wf.id}/{wf.run_id[:8]}",
                "\n".join(s for e in history.events for s in _strings(e)),
            )
        )
    return out


async def test_no_secret_or_personal_data_anywhere(cluster: Cluster, plan: Plan):
    await cluster.ensure_catalog()
    if not cluster.placed:  # run alone: make some traffic, failures included
        await cluster.control.add_fault(malformed="truncated", count=2, endpoints=["SaveAllDataV2"])
        await cluster.control.add_fault(status_code=401, count=2, endpoints=["GetAllDataV2"])
        await cluster.order_stream(3)
        await cluster.settle()
        await cluster.incoming_cycle()
    wanted = needles(cluster)
    hits: list[str] = []
    # The simulator's log is Mahak's side, which is given the credentials and the customers.
    for log in sorted(cluster.logs.glob("*.log")):
        if log.name != "simulator.log":
            hits += scan(f"log {log.name}", log.read_text(errors="replace"), wanted)
    histories = await _histories(cluster)
    for where, text in histories:
        hits += scan(where, text, wanted)
    async with cluster.db() as conn:
        texts: list[Any] = []
        texts += await conn.fetch(
            "SELECT 'shop_orders.last_mahak_error ' || id AS w, last_mahak_error AS t "
            "FROM shop_orders WHERE last_mahak_error IS NOT NULL"
        )
        texts += await conn.fetch(
            "SELECT 'mahak_sync_log.error ' || id AS w, error AS t "
            "FROM mahak_sync_log WHERE error IS NOT NULL"
        )
        texts += await conn.fetch(
            "SELECT 'mahak_dead_letters.reason ' || id AS w, reason AS t FROM mahak_dead_letters"
        )
        texts += await conn.fetch(
            "SELECT 'staff notice ' || id AS w, payload::text AS t "
            "FROM notification_outbox WHERE recipient = 'staff'"
        )
    for row in texts:
        hits += scan(row["w"], row["t"], wanted)
    print(
        f"secrets scan: {len(wanted)} needles, {len(histories)} histories, "
        f"{len(list(cluster.logs.glob('*.log')))} logs, {len(texts)} stored error texts"
    )
    assert histories and wanted
    assert not hits, "\n".join(hits[:50])
