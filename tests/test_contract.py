"""The real MahakClient against the real simulator, over HTTP.

Every Sync endpoint, the error taxonomy through injected faults, token expiry in the middle
of a run, paging edge cases under both boundary readings, partial SaveAllData failures, the
"already registered" refusal, and the operators' `mahak` CLI. Assertions compare what the
client returns with what the simulator holds (`/_sim/entities`, `/_sim/orders`, `/_sim/stats`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from mahak_client import (
    ENTITIES,
    DisputeItem,
    MahakAuthError,
    MahakClient,
    MahakPermanentError,
    MahakProtocolError,
    MahakTransientError,
    OrderDisputeItem,
    SaveAllDataRequest,
    is_already_registered,
    iter_pages,
)
from mahak_client.models import Order, OrderDetail, Person, VisitorPerson
from mahak_simulator import SimControl, SimulatorServer
from mahak_sync import cli
from mahak_sync.config import get_settings
from mahak_sync.temporal import free_port

PASSWORD = "secret"
VISITOR_ID = 10101
DATABASE_ID = 1234567
CORE = (
    "stores",
    "product_categories",
    "products",
    "product_details",
    "product_detail_store_assets",
    "visitor_products",
    "pictures",
    "photo_galleries",
    "orders",
    "order_details",
    "people",
)
ORDER_BASE = 8_000_000_000_000_000
LINE_BASE = 8_100_000_000_000_000


def new_client(simulator: SimulatorServer, **kwargs: Any) -> MahakClient:
    kwargs.setdefault("database_id", DATABASE_ID)
    kwargs.setdefault("package_no", "7654321")
    password = kwargs.pop("password", PASSWORD)
    return MahakClient(simulator.base_url, "shop", SecretStr(password), **kwargs)


@pytest.fixture
async def client(simulator: SimulatorServer, sim: SimControl) -> AsyncIterator[MahakClient]:
    async with new_client(simulator) as c:
        yield c


async def drain_all(client: MahakClient, entity: str, start: int = 0, size: int = 100) -> list[Any]:
    return [row async for batch in iter_pages(client, entity, start, size) for row in batch.rows]


def id_of(entity: str, row: Any) -> Any:
    if isinstance(row, dict):
        key = "".join(p.capitalize() for p in ENTITIES[entity].id_field.split("_"))
        return row[key]
    return getattr(row, ENTITIES[entity].id_field)


def order_request(
    client_id: int,
    person_id: int,
    lines: list[tuple[int, int, float]],
) -> SaveAllDataRequest:
    return SaveAllDataRequest(
        orders=[
            Order(
                order_client_id=client_id,
                visitor_id=VISITOR_ID,
                person_id=person_id,
                order_type=201,
                settlement_type=1,
                discount=0,
                discount_type=0,
                description="سفارش وب",
            )
        ],
        order_details=[
            OrderDetail(
                order_detail_client_id=LINE_BASE + (client_id - ORDER_BASE) * 100 + i,
                order_client_id=client_id,
                item_type=1,
                product_detail_id=detail,
                store_id=store,
                price=150_000,
                count1=count,
                count2=0,
                discount=0,
                discount_type=0,
            )
            for i, (detail, store, count) in enumerate(lines, 1)
        ],
    )


# --- Login -----------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["Login", "LoginV2"])
async def test_login_both_endpoints(
    simulator: SimulatorServer, sim: SimControl, endpoint: str
) -> None:
    async with new_client(simulator, login_endpoint=endpoint) as c:
        login = await c.login()
    assert login.visitor_id == VISITOR_ID and login.database_id == DATABASE_ID
    assert login.server_time is not None and login.user_token.count(".") == 2
    assert (await sim.stats()).requests.get(endpoint) == 1


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"password": "wrong"}, "رمز عبور"),
        ({"database_id": 999}, "پایگاه داده"),
    ],
)
async def test_refused_login_is_an_auth_error(
    simulator: SimulatorServer, sim: SimControl, kwargs: dict[str, Any], text: str
) -> None:
    async with new_client(simulator, **kwargs) as c:
        with pytest.raises(MahakAuthError) as info:
            await c.login()
    assert text in (info.value.mahak_message or "") and info.value.code
    assert "wrong" not in str(info.value) and "secret" not in repr(info.value)


# --- GetAllData ------------------------------------------------------------------------------


@pytest.mark.parametrize("use_v2", [True, False], ids=["V2", "V1"])
async def test_get_all_data_matches_the_simulator_row_by_row(
    simulator: SimulatorServer, sim: SimControl, use_v2: bool
) -> None:
    await sim.seed(products=4, stores=2, categories=2, pictures_per_product=1, people=2)
    async with new_client(simulator, use_v2=use_v2) as c:
        batches = await c.get_all_data({name: 0 for name in CORE}, page_size=1000)
    path = "GetAllDataV2" if use_v2 else "GetAllData"
    assert (await sim.stats()).requests.get(path) == 1
    for name in CORE:
        truth = await sim.entities(ENTITIES[name].collection)
        batch = batches[name]
        assert batch.rejected == [], (name, batch.rejected[:1])
        assert [(id_of(name, r), r.row_version) for r in batch.rows] == [
            (id_of(name, r), r["RowVersion"]) for r in truth
        ], name
        if truth:
            assert (
                batch.max_row_version == max(r["RowVersion"] for r in truth) > 2**31
            )  # above int32, as on LIVE
    # Seeded names carry Arabic ي/ك and stray spaces; the models hand out clean Persian.
    for store in batches["stores"].rows:
        assert store.name == store.name.strip() and "ي" not in store.name and "ك" not in store.name
    assert batches["product_details"].rows and batches["orders"].rows == []


async def test_logical_delete_and_changes_come_back_with_new_versions(
    client: MahakClient, sim: SimControl
) -> None:
    seeded = await sim.seed(products=3)
    cursor = (await client.get_all_data({"product_details": 0}))["product_details"]
    assert cursor.max_row_version is not None
    detail_id = seeded.product_details[1]
    await sim.set_price(detail_id, level=1, price=990_000)
    await sim.delete("ProductDetails", seeded.product_details[2])
    rows = await drain_all(client, "product_details", cursor.max_row_version)
    assert [(r.product_detail_id, r.deleted) for r in rows] == [
        (detail_id, False),
        (seeded.product_details[2], True),
    ]
    assert rows[0].price1 == 990_000


async def test_a_malformed_row_is_quarantined_not_fatal(
    client: MahakClient, sim: SimControl
) -> None:
    await sim.seed(products=2)
    bad = await sim.inject_row(
        "ProductDetails", {"ProductDetailId": "not-a-number", "ProductId": 1, "Price1": "abc"}
    )
    batch = (await client.get_all_data({"product_details": 0}))["product_details"]
    assert len(batch.rows) == 2
    [rejected] = batch.rejected
    assert rejected.row_version == bad["RowVersion"] == batch.max_row_version
    assert rejected.raw["ProductDetailId"] == "not-a-number"


@pytest.mark.parametrize("boundary", ["inclusive", "exclusive"])
async def test_paging_with_equal_versions_across_page_boundaries(
    client: MahakClient, sim: SimControl, boundary: str
) -> None:
    await sim.configure(boundary=boundary)
    await sim.seed(products=0, stores=3)
    # A run of four stores sharing one RowVersion straddles the 3-row pages, then a run of
    # seven fills whole pages on its own, then ordinary rows follow.
    shared = (await sim.stats()).row_version + 1
    for i in range(4):
        await sim.inject_row("Stores", {"StoreId": 9_000 + i, "Name": f"run-a {i}"}, shared)
    for i in range(7):
        await sim.inject_row("Stores", {"StoreId": 9_100 + i, "Name": f"run-b {i}"}, shared + 1)
    for i in range(3):
        await sim.inject_row("Stores", {"StoreId": 9_200 + i, "Name": f"tail {i}"})
    truth = await sim.entities("Stores")

    batches = [b async for b in iter_pages(client, "stores", 0, 3)]
    got = [r.store_id for b in batches for r in b.rows]
    assert sorted(got) == sorted(r["StoreId"] for r in truth)
    assert len(got) == len(set(got))
    # Each batch's cursor is safe to persist: nothing at or below it is still to come.
    seen: set[int] = set()
    for b in batches:
        seen |= {r.store_id for r in b.rows}
        assert {r["StoreId"] for r in truth if r["RowVersion"] <= b.max_row_version} <= seen

    # Resuming from the last cursor brings nothing again, under either reading.
    assert await drain_all(client, "stores", batches[-1].max_row_version, 3) == []


# --- Tokens ----------------------------------------------------------------------------------


async def test_token_revoked_mid_run_costs_one_relogin(
    client: MahakClient, sim: SimControl
) -> None:
    await sim.seed(products=2)
    await client.get_all_data({"products": 0})
    assert await sim.expire_tokens() == 1
    batch = (await client.get_all_data({"products": 0}))["products"]
    assert len(batch.rows) == 2
    stats = await sim.stats()
    assert stats.requests["LoginV2"] == 2 and stats.requests["GetAllDataV2"] == 3


async def test_short_lived_token_is_renewed_before_it_expires(
    simulator: SimulatorServer, sim: SimControl
) -> None:
    # Lifetime 6 s, margin capped at half of it: renewal is due from 3 s, the token dies at 6
    # s; the read at ~3.5 s leaves 2.5 s of slack for a loaded machine.
    await sim.configure(token_lifetime_seconds=6)
    async with new_client(simulator, refresh_margin=300) as c:
        first = (await c.login()).user_token
        await asyncio.sleep(3.5)  # past exp - margin, well before exp
        await c.get_all_data({"stores": 0})
        assert c._session is not None and c._session.token != first
    stats = await sim.stats()
    # Renewed proactively: no request was refused and retried.
    assert stats.requests["LoginV2"] == 2 and stats.requests["GetAllDataV2"] == 1


async def test_persistent_401_is_transient_after_one_relogin(
    client: MahakClient, sim: SimControl
) -> None:
    await client.login()
    await sim.add_fault(status_code=401, endpoints=["GetAllDataV2"])
    with pytest.raises(MahakTransientError) as info:
        await client.get_all_data({"stores": 0})
    assert info.value.status_code == 401
    stats = await sim.stats()
    assert stats.requests["LoginV2"] == 2 and stats.requests["GetAllDataV2"] == 2
    token = client._session.token  # type: ignore[union-attr]
    assert token not in str(info.value) and PASSWORD not in repr(info.value)


# --- Faults ----------------------------------------------------------------------------------


FAULTS = [
    ({"status_code": 503, "retry_after": 5}, MahakTransientError, 503),
    ({"status_code": 429, "retry_after": 2}, MahakTransientError, 429),
    ({"status_code": 500}, MahakTransientError, 500),
    ({"status_code": 400}, MahakPermanentError, 400),
    ({"drop_connection": True}, MahakTransientError, None),
    ({"malformed": "html"}, MahakProtocolError, 200),
    ({"malformed": "html", "status_code": 502}, MahakTransientError, 502),
    ({"malformed": "truncated"}, MahakProtocolError, 200),
]


@pytest.mark.parametrize(
    ("fault", "kind", "status"), FAULTS, ids=[json.dumps(f[0]) for f in FAULTS]
)
async def test_injected_faults_map_to_the_taxonomy(
    client: MahakClient, sim: SimControl, fault: dict[str, Any], kind: type, status: int | None
) -> None:
    await sim.seed(products=2)
    await client.login()
    await sim.add_fault(count=1, endpoints=["GetAllDataV2"], **fault)
    with pytest.raises(kind) as info:
        await client.get_all_data({"products": 0})
    err = info.value
    assert type(err) is kind and err.endpoint == "GetAllDataV2" and err.status_code == status
    if "retry_after" in fault:
        assert err.retry_after == fault["retry_after"]
    token = client._session.token  # type: ignore[union-attr]
    assert token not in f"{err} {err!r}" and PASSWORD not in f"{err} {err!r}"
    # The fault was one-shot: the next call goes through.
    assert len((await client.get_all_data({"products": 0}))["products"].rows) == 2


async def test_a_slow_server_is_a_transient_timeout(
    simulator: SimulatorServer, sim: SimControl
) -> None:
    async with new_client(simulator, timeout=0.3) as c:
        await c.login()
        await sim.add_fault(count=1, latency_ms=1500, endpoints=["GetAllDataV2"])
        with pytest.raises(MahakTransientError, match="timed out"):
            await c.get_all_data({"stores": 0})


async def test_unreachable_server_is_transient() -> None:
    async with MahakClient(
        f"http://127.0.0.1:{free_port()}/API/v3", "shop", SecretStr(PASSWORD)
    ) as c:
        with pytest.raises(MahakTransientError, match="connection failed"):
            await c.login()


# --- SaveAllData -----------------------------------------------------------------------------


async def test_save_order_with_new_customer_and_read_it_back(
    client: MahakClient, sim: SimControl
) -> None:
    seeded = await sim.seed(products=2, stock=10)
    person_client_id = 7_000_000_000_000_001
    # Every new person carries a group (issue 12): the first live one, read through GetAllData.
    groups = (await client.get_all_data({"person_groups": 0}))["person_groups"].rows
    group_id = next(g.person_group_id for g in groups if not g.deleted)
    people = await client.save_all_data(
        SaveAllDataRequest(
            people=[
                Person(
                    person_client_id=person_client_id,
                    first_name="مريم ",
                    last_name="كريمی",
                    mobile="09120000000",
                    person_type=0,
                    person_group_id=group_id,
                )
            ],
            visitor_people=[
                VisitorPerson(
                    visitor_person_client_id=7_100_000_000_000_001,
                    person_client_id=person_client_id,
                    visitor_id=VISITOR_ID,
                )
            ],
        )
    )
    assert people.result and people.failures() == []
    person = people.for_client_id("People", person_client_id)
    assert person is not None and person.entity_id

    store = seeded.stores[0]
    request = order_request(
        ORDER_BASE + 1,
        person.entity_id,
        [(seeded.product_details[0], store, 2), (seeded.product_details[1], store, 1)],
    )
    result = await client.save_all_data(request)
    assert result.result and result.failures() == []
    saved = result.for_client_id("Orders", ORDER_BASE + 1)
    assert (
        saved is not None and saved.entity_id and saved.row_version > 2**31
    )  # above int32, as on LIVE

    order = await sim.order(ORDER_BASE + 1)
    assert order is not None and order.order_id == saved.entity_id and order.submissions == 1
    assert sorted(d["OrderDetailClientId"] for d in order.details) == [
        d.order_detail_client_id for d in request.order_details or []
    ]
    # The accepted sale invoice took its stock, and GetAllData shows the order to the shop.
    back = await client.get_all_data(
        {"orders": 0, "order_details": 0, "product_detail_store_assets": 0}
    )
    assert [o.order_client_id for o in back["orders"].rows] == [ORDER_BASE + 1]
    assert len(back["order_details"].rows) == 2
    stock = {
        a.product_detail_id: a.count1
        for a in back["product_detail_store_assets"].rows
        if a.store_id == store
    }
    assert stock[seeded.product_details[0]] == 8 and stock[seeded.product_details[1]] == 9


async def test_partial_failure_is_structured_and_keeps_the_good_records(
    client: MahakClient, sim: SimControl
) -> None:
    seeded = await sim.seed(products=2, stock=3)
    store = seeded.stores[0]
    request = order_request(
        ORDER_BASE + 2,
        seeded.people[0],
        [
            (seeded.product_details[0], store, 1),  # fine
            (seeded.product_details[1], store, 50),  # more than the store holds
            (999_999, store, 1),  # no such product detail
        ],
    )
    result = await client.save_all_data(request)
    assert result.result is False
    failures = result.failures()
    assert [(f.collection, f.index, f.client_id, f.property) for f in failures] == [
        ("OrderDetails", 2, LINE_BASE + 200 + 2, "Count1"),
        ("OrderDetails", 3, LINE_BASE + 200 + 3, "ProductDetailId"),
    ]
    assert all(f.message for f in failures) and not any(is_already_registered(f) for f in failures)
    # No rollback: the order and its good line are in Mahak.
    order = await sim.order(ORDER_BASE + 2)
    assert order is not None
    assert [d["OrderDetailClientId"] for d in order.details] == [LINE_BASE + 200 + 1]


async def test_resending_an_imported_order_is_already_registered(
    client: MahakClient, sim: SimControl
) -> None:
    seeded = await sim.seed(products=1, stock=10)
    request = order_request(
        ORDER_BASE + 3, seeded.people[0], [(seeded.product_details[0], seeded.stores[0], 1)]
    )
    first = await client.save_all_data(request)
    assert first.result
    imported = await sim.mark_imported(ORDER_BASE + 3)

    again = await client.save_all_data(request)
    assert again.result is False
    order_failures = [f for f in again.failures() if f.collection == "Orders"]
    assert len(order_failures) == 1
    failure = order_failures[0]
    assert failure.client_id == ORDER_BASE + 3 and failure.property == "OrderId"
    assert is_already_registered(failure)
    assert (await sim.stats()).duplicate_submissions == 1
    order = await sim.order(ORDER_BASE + 3)
    assert order is not None and order.order_id == imported.order_id and len(order.details) == 1


async def test_save_all_data_is_sent_once_even_when_it_fails(
    client: MahakClient, sim: SimControl
) -> None:
    seeded = await sim.seed(products=1)
    await client.login()
    await sim.add_fault(count=1, drop_connection=True, endpoints=["SaveAllDataV2"])
    with pytest.raises(MahakTransientError):
        await client.save_all_data(
            order_request(
                ORDER_BASE + 4, seeded.people[0], [(seeded.product_details[0], seeded.stores[0], 1)]
            )
        )
    assert (await sim.stats()).requests["SaveAllDataV2"] == 1


async def test_save_all_data_v1_path(simulator: SimulatorServer, sim: SimControl) -> None:
    seeded = await sim.seed(products=1)
    async with new_client(simulator, use_v2=False, login_endpoint="Login") as c:
        result = await c.save_all_data(
            order_request(
                ORDER_BASE + 5, seeded.people[0], [(seeded.product_details[0], seeded.stores[0], 1)]
            )
        )
    assert result.result
    stats = await sim.stats()
    assert stats.requests["SaveAllData"] == 1 and "SaveAllDataV2" not in stats.requests


# --- Disputes --------------------------------------------------------------------------------


async def test_solve_order_dispute_reports_registration_and_import(
    client: MahakClient, sim: SimControl
) -> None:
    seeded = await sim.seed(products=2, stock=10)
    for n in (6, 7):
        await client.save_all_data(
            order_request(
                ORDER_BASE + n, seeded.people[0], [(seeded.product_details[0], seeded.stores[0], 1)]
            )
        )
    imported = await sim.mark_imported(ORDER_BASE + 6)
    pending = await sim.order(ORDER_BASE + 7)
    assert pending is not None

    outcome = await client.solve_order_dispute(
        [
            OrderDisputeItem(id=imported.order_id, code=imported.order_code),
            OrderDisputeItem(id=pending.order_id, code=0),
            OrderDisputeItem(id=123_456_789, code=0),
        ]
    )
    assert outcome.result
    done = outcome.for_order(imported.order_id)
    assert done is not None and done.is_registered and done.imported
    assert done.desktop_code == imported.order_code and done.order_client_id == ORDER_BASE + 6
    waiting = outcome.for_order(pending.order_id)
    assert waiting is not None and waiting.is_registered and not waiting.imported
    missing = outcome.for_order(123_456_789)
    assert missing is not None and missing.is_registered is False


async def test_solve_dispute_re_emits_what_differs(client: MahakClient, sim: SimControl) -> None:
    seeded = await sim.seed(products=3)
    batch = (await client.get_all_data({"product_details": 0}))["product_details"]
    held = {r.product_detail_id: r.row_version for r in batch.rows}
    stale_id, gone_id = seeded.product_details[0], 4_444_444
    items = [DisputeItem(id=i, rw=rv - (1 if i == stale_id else 0)) for i, rv in held.items()]
    items.append(DisputeItem(id=gone_id, rw=1))
    assert await client.solve_dispute("product_details", items) is True

    changed = await drain_all(client, "product_details", batch.max_row_version or 0)
    # The stale row comes back as it is; the one Mahak never had as a deleted tombstone.
    assert sorted((r.product_detail_id, r.deleted) for r in changed) == [
        (stale_id, False),
        (gone_id, True),
    ]
    assert {r.product_detail_id: r.price1 for r in changed}[stale_id] > 0
    assert await client.solve_dispute("NoSuchEntity", items) is False


# --- CLI -------------------------------------------------------------------------------------


async def _run_cli(
    monkeypatch: pytest.MonkeyPatch,
    base_url: str,
    *argv: str,
    password: str = PASSWORD,
    keep_page_size: bool = False,
) -> int:
    """Parse like `mahak-sync` does and await the handler on the test's own event loop."""
    env = {
        "MAHAK_BASE_URL": base_url,
        "MAHAK_USERNAME": "shop",
        "MAHAK_PASSWORD": password,
        "MAHAK_DATABASE_ID": str(DATABASE_ID),
        "MAHAK_PACKAGE_NO": "7654321",
    }
    if not keep_page_size:
        env["MAHAK_PAGE_SIZE"] = "2"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        args = cli.build_parser().parse_args(list(argv))
        return await args.func(args)
    finally:
        get_settings.cache_clear()


async def test_cli_check_reports_account_and_entities(
    simulator: SimulatorServer,
    sim: SimControl,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await sim.seed(products=1)
    assert await _run_cli(monkeypatch, simulator.base_url, "mahak", "check") == 0
    out = capsys.readouterr().out
    assert f"database   {DATABASE_ID}" in out and f"visitor    {VISITOR_ID}" in out
    assert "server     20" in out and "offset from this machine's clock" in out
    # The simulator's server time is its own clock: no more than a few seconds off ours.
    offset = int(out.split("clock: ")[1].split(" s)")[0])
    assert abs(offset) < 60, out
    assert "api        LoginV2 + GetAllDataV2/SaveAllDataV2" in out and "'mahak-sync'" in out
    assert "token      expires 20" in out and "(JWT exp)" in out
    for name in CORE:
        assert any(line.split()[:2] == [name, "ok"] for line in out.splitlines()), name


@pytest.mark.parametrize(
    ("page_order", "page_size", "code", "verdict"),
    [
        ("row_version", "2", 0, "capped lists held the lowest RowVersions"),
        ("id", "2", 5, "set MAHAK_PAGE_SIZE=0"),
        ("id", "0", 0, "set MAHAK_PAGE_SIZE=0"),  # 0 already: nothing to fix
    ],
)
async def test_cli_check_paging_says_whether_a_page_size_is_safe(
    simulator: SimulatorServer,
    sim: SimControl,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    page_order: str,
    page_size: str,
    code: int,
    verdict: str,
) -> None:
    await sim.seed(products=30)
    await sim.configure(page_order=page_order)
    # Ids running against RowVersions: in id order a capped list is not the lowest ones.
    top = (await sim.stats()).row_version + 1000
    for i in range(40):
        await sim.inject_row("Stores", {"StoreId": 9000 + i, "Name": f"s{i}"}, top - i)
    monkeypatch.setenv("MAHAK_PAGE_SIZE", page_size)
    assert (
        await _run_cli(
            monkeypatch, simulator.base_url, "mahak", "check", "--paging", keep_page_size=True
        )
        == code
    )
    out = capsys.readouterr().out
    assert f"verdict    {verdict}" in out, out
    stores = next(
        line for line in out.split("paging ")[1].splitlines() if line.split()[:1] == ["stores"]
    )
    assert ("20 of" in stores) and (
        ("lowest RowVersions, ascending" in stores) == (page_order == "row_version")
    ), stores


async def test_cli_check_fails_clearly(
    simulator: SimulatorServer,
    sim: SimControl,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await _run_cli(monkeypatch, simulator.base_url, "mahak", "check", password="nope") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refused the credentials" in err[0] and "nope" not in err[0]

    dead = f"http://127.0.0.1:{free_port()}/API/v3"
    assert await _run_cli(monkeypatch, dead, "mahak", "check") == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach Mahak" in err[0]


async def test_cli_pull_streams_json_lines(
    simulator: SimulatorServer,
    sim: SimControl,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seeded = await sim.seed(products=5)
    assert await _run_cli(monkeypatch, simulator.base_url, "mahak", "pull", "product_details") == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["product_detail_id"] for r in lines] == seeded.product_details
    assert all("row_version" in r and "ProductDetailId" not in r for r in lines)

    cursor = lines[2]["row_version"]
    before = (await sim.stats()).requests["GetAllDataV2"]
    assert (
        await _run_cli(
            monkeypatch,
            simulator.base_url,
            "mahak",
            "pull",
            "product_details",
            "--from",
            str(cursor),
            "--page-size",
            "10",
        )
        == 0
    )
    rest = [json.loads(line)["product_detail_id"] for line in capsys.readouterr().out.splitlines()]
    assert rest == seeded.product_details[3:]
    # Pages of 10 (the first one teaches the pager the simulator's inclusive boundary), not
    # the three pages MAHAK_PAGE_SIZE=2 would take.
    assert (await sim.stats()).requests["GetAllDataV2"] - before == 2

    # 0: no pageSize (over MAHAK_PAGE_SIZE=2): every row, without a capped request.
    before = (await sim.stats()).requests["GetAllDataV2"]
    assert (
        await _run_cli(
            monkeypatch, simulator.base_url, "mahak", "pull", "product_details", "--page-size", "0"
        )
        == 0
    )
    everything = [
        json.loads(line)["product_detail_id"] for line in capsys.readouterr().out.splitlines()
    ]
    assert everything == seeded.product_details
    assert (await sim.stats()).requests["GetAllDataV2"] - before <= 2

    with pytest.raises(SystemExit) as bad:
        await _run_cli(
            monkeypatch, simulator.base_url, "mahak", "pull", "product_details", "--page-size", "-3"
        )
    assert bad.value.code == 2
    assert (
        "--page-size: a page size is 1 to 10000 rows, or 0 for no pageSize"
        in capsys.readouterr().err
    )
