"""The Mahak simulator's own behaviour, over raw HTTP (no project client in the loop).

Contract tests of the client run against this server, so what it promises (envelopes,
casing, paging, tokens, SaveAllData semantics, faults) is pinned here.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from mahak_simulator import SimControl, SimulatorServer
from mahak_simulator.control import SimControlError
from mahak_simulator.schema import COLLECTIONS

VISITOR = 10101
MAHAK_DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}$")
OBJECT_KEYS = [
    "Banks",
    "BankGroups",
    "Currencies",
    "Checklists",
    "Cheques",
    "Cashes",
    "ExpenseGroups",
    "Orders",
    "OrderDetails",
    "PersonGroups",
    "People",
    "PersonAddresses",
    "Pictures",
    "PhotoGalleries",
    "Products",
    "ProductCategories",
    "ProductDetails",
    "ProductProperties",
    "PropertyDescriptions",
    "PropertyDescriptionValues",
    "ProductDetailStoreAssets",
    "Receipts",
    "Transactions",
    "Visitors",
    "VisitorCashes",
    "VisitorBanks",
    "VisitorIncomes",
    "VisitorExpenses",
    "VisitorPeople",
    "VisitorLocations",
    "VisitorProducts",
    "Promotions",
    "PromotionDetails",
    "PromotionEntities",
    "ReturnReasons",
    "TransferAccounts",
    "TransferStores",
    "TransferStoreDetails",
    "Incomes",
    "Expenses",
    "IncomeGroups",
    "CostLevelNames",
    "NotRegisters",
    "Projects",
    "Stores",
    "Settings",
    "ExtraDatas",
    "Regions",
    "MissionDetails",
    "Missions",
    "Units",
    "OrderTaxStatuses",
    "companies",
    "Payments",
    "PaymentCheques",
    "Mahakpays",
    "TaxOrderReceipts",
]


class Mahak:
    """A bare Sync API caller: what any client would put on the wire."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=10)
        self.token: str | None = None

    async def login(self, endpoint: str = "Login", **body: Any) -> httpx.Response:
        body = body or {"userName": "shop", "password": hashlib.md5(b"secret").hexdigest()}
        response = await self.http.post(f"/Sync/{endpoint}", json=body)
        if response.json().get("Result"):
            self.token = response.json()["Data"]["UserToken"]
        return response

    async def post(
        self,
        endpoint: str,
        body: Any,
        *,
        auth: str | None = None,
        content_type: str = "application/json-patch+json",
    ) -> httpx.Response:
        headers = {
            "content-type": content_type,
            "authorization": auth if auth is not None else f"Bearer {self.token}",
        }
        return await self.http.post(f"/Sync/{endpoint}", content=json.dumps(body), headers=headers)

    async def objects(self, body: dict[str, Any], endpoint: str = "GetAllDataV2") -> dict[str, Any]:
        response = await self.post(endpoint, body)
        assert response.status_code == 200, response.text
        data = response.json()
        assert data["Result"] is True
        return data["Data"]["Objects"]

    async def save(self, body: dict[str, Any], endpoint: str = "SaveAllDataV2") -> dict[str, Any]:
        response = await self.post(endpoint, body)
        assert response.status_code == 200, response.text
        return response.json()


@pytest_asyncio.fixture
async def mahak(simulator: SimulatorServer, sim: SimControl) -> AsyncIterator[Mahak]:
    client = Mahak(simulator.base_url)
    assert (await client.login()).json()["Result"] is True
    yield client
    await client.http.aclose()


def _claims(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    decode = lambda part: json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # noqa: E731
    return decode(header), decode(payload)


def _order(client_id: int, person_id: int, **extra: Any) -> dict[str, Any]:
    return {
        "orderClientId": client_id,
        "visitorId": VISITOR,
        "personId": person_id,
        "orderType": 201,
        "orderDate": "2025-10-04 15:18:38",
        "settlementType": 1,
        "deleted": False,
        **extra,
    }


def _line(
    client_id: int,
    order_client_id: int,
    detail_id: int | None,
    store_id: int,
    count: float,
    **extra: Any,
) -> dict[str, Any]:
    line = {
        "orderDetailClientId": client_id,
        "orderClientId": order_client_id,
        "itemType": 1,
        "storeId": store_id,
        "price": 150000,
        "count1": count,
        "count2": 0,
        **extra,
    }
    if detail_id is not None:
        line["productDetailId"] = detail_id
    return line


async def _stock(sim: SimControl, detail_id: int, store_id: int) -> dict[str, Any]:
    rows = await sim.entities("ProductDetailStoreAssets")
    return next(r for r in rows if r["ProductDetailId"] == detail_id and r["StoreId"] == store_id)


# --- Login and tokens ----------------------------------------------------------------------


async def test_login_answers_the_live_envelope_and_jwt(
    simulator: SimulatorServer, sim: SimControl
) -> None:
    client = Mahak(simulator.base_url)
    for response in (
        await client.login("Login"),  # MD5 of the password, as BZ/OS/NG send it
        await client.login(
            "LoginV2",
            UserName="shop",
            Password="secret",
            DatabaseId="1234567",
            packageNo="7654321",
            language="fa",
            appId="tests",
        ),  # clear text, PascalCase
    ):
        body = response.json()
        assert response.status_code == 200 and body["Result"] is True
        data = body["Data"]
        assert (data["VisitorId"], data["DatabaseId"], data["PackageNo"]) == (
            VISITOR,
            1234567,
            7654321,
        )
        assert MAHAK_DATE.match(data["ServerTime"])
        header, claims = _claims(data["UserToken"])
        assert header["alg"] == "HS256"
        assert claims["exp"] - claims["iat"] == 604_800 and claims["nbf"] == claims["iat"]
        user = json.loads(claims["userToken"])  # a JSON string inside the JWT, as LIVE
        assert user["UserName"] == "shop"
        assert user["Password"] == hashlib.md5(b"secret").hexdigest()
        assert (user["DatabaseId"], user["VisitorId"], user["PackageNo"]) == (
            1234567,
            VISITOR,
            "7654321",
        )
        assert user["CreateTime"].endswith("+03:30") and claims["MahakID"] == data["MahakId"]
    await client.http.aclose()


@pytest.mark.parametrize(
    "body",
    [
        {"userName": "shop", "password": "wrong"},
        {"userName": "other", "password": "secret"},
        {"userName": "shop", "password": "secret", "databaseId": 999},
        {"username": "shop"},
    ],
)
async def test_bad_credentials_are_a_200_with_result_false(
    simulator: SimulatorServer, sim: SimControl, body: dict[str, Any]
) -> None:
    async with httpx.AsyncClient(base_url=simulator.base_url) as http:
        response = await http.post("/Sync/LoginV2", json=body)
    assert response.status_code == 200
    answer = response.json()
    assert answer["Result"] is False and answer["Data"] is None and answer["Code"] != 0
    assert re.search(r"[\u0600-\u06ff]", answer["Message"])  # Persian text


async def test_every_auth_failure_is_the_same_401(mahak: Mahak) -> None:
    token = mahak.token
    assert token
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for auth in ("", token, f"bearer : {token}", f"Token {token}", f"Bearer {tampered}"):
        response = await mahak.post("GetAllDataV2", {"fromStoreVersion": 0}, auth=auth)
        assert response.status_code == 401, auth
        assert response.json() == {"message": "Unauthorized"}
    ok = await mahak.post("GetAllDataV2", {"fromStoreVersion": 0}, auth=f"bearer {token}")
    assert ok.status_code == 200


async def test_expiring_tokens_mid_run_and_a_short_lifetime(mahak: Mahak, sim: SimControl) -> None:
    assert await sim.expire_tokens() >= 1
    assert (await mahak.post("GetAllData", {"fromStoreVersion": 0})).status_code == 401
    await mahak.login()  # a fresh login works again
    assert (await mahak.post("GetAllData", {"fromStoreVersion": 0})).status_code == 200

    await sim.configure(token_lifetime_seconds=1)
    await mahak.login()
    assert mahak.token
    _, claims = _claims(mahak.token)
    assert claims["exp"] - claims["iat"] == 1
    await asyncio.sleep(1.1)
    assert (await mahak.post("GetAllData", {"fromStoreVersion": 0})).status_code == 401


# --- GetAllData ----------------------------------------------------------------------------


async def test_get_all_data_envelope_casing_and_null_vs_empty(
    mahak: Mahak, sim: SimControl
) -> None:
    await sim.seed(2)
    response = await mahak.post(
        "GetAllData",
        {
            "FromProductVersion": "0",  # PascalCase, number as a string
            "fromproductdetailversion": 0,  # lowercase
            "fromOrderVersion": 0,  # camelCase; requested but empty
        },
        content_type="text/json",
    )
    body = response.json()
    assert list(body) == ["Result", "Data"] and body["Result"] is True  # no Code/Message (LIVE)
    objects = body["Data"]["Objects"]
    assert list(objects) == OBJECT_KEYS == [c.name for c in COLLECTIONS]
    assert objects["Orders"] == [] and objects["Stores"] is None and objects["companies"] is None
    assert len(objects["Products"]) == 2 and len(objects["ProductDetails"]) == 2
    product = objects["Products"][0]
    assert list(product)[:5] == [
        "ProductId",
        "ProductClientId",
        "ProductCode",
        "ProductCategoryId",
        "Name",
    ]
    assert MAHAK_DATE.match(product["CreateDate"])
    assert product["RowVersion"] > 2**31  # int64 like LIVE
    assert all(f"Price{n}" in objects["ProductDetails"][0] for n in range(1, 11))

    v1 = await mahak.objects({"fromProductVersion": 0}, endpoint="GetAllData")
    v2 = await mahak.objects({"fromProductVersion": 0}, endpoint="GetAllDataV2")
    assert v1 == v2


async def test_paths_are_case_insensitive(simulator: SimulatorServer, mahak: Mahak) -> None:
    # ASP.NET routing ignores case: clients in the wild spell the paths differently.
    async with httpx.AsyncClient(base_url=simulator.root_url) as http:
        login = await http.post(
            "/api/V3/SYNC/login", json={"userName": "shop", "password": "secret"}
        )
        assert login.json()["Result"] is True
        response = await http.post(
            "/api/v3/sync/getalldatav2",
            json={"fromStoreVersion": 0},
            headers={"authorization": f"Bearer {mahak.token}"},
        )
    assert response.status_code == 200 and response.json()["Result"] is True


async def test_content_type_and_body_errors(mahak: Mahak) -> None:
    assert (
        await mahak.post("GetAllDataV2", {"fromStoreVersion": 0}, content_type="application/json")
    ).status_code == 200
    assert (
        await mahak.post("GetAllDataV2", {"fromStoreVersion": 0}, content_type="text/plain")
    ).status_code == 415
    bad = await mahak.post("GetAllDataV2", {"fromStoreVersion": "abc"})
    assert bad.status_code == 400 and "fromStoreVersion" in bad.json()["errors"]
    get = await mahak.http.get(
        "/Sync/GetAllData", headers={"authorization": f"Bearer {mahak.token}"}
    )
    assert get.status_code == 405


async def test_seeded_catalog_looks_like_live_data(mahak: Mahak, sim: SimControl) -> None:
    seeded = await sim.seed(6, stores=2, pictures_per_product=2, stock=7)
    objects = await mahak.objects(
        {
            name: 0
            for name in (
                "fromProductVersion",
                "fromStoreVersion",
                "fromPictureVersion",
                "fromPhotoGalleryVersion",
                "fromProductDetailStoreAssetVersion",
                "fromVisitorProductVersion",
                "fromVisitorVersion",
                "fromSettingVersion",
                "fromPersonVersion",
                "fromVisitorPersonVersion",
            )
        }
    )
    names = [p["Name"] for p in objects["Products"]]
    assert any(n != n.rstrip() for n in names)  # trailing spaces
    assert all(("ي" in n or "ك" in n) for n in names)  # Arabic letters, not Persian
    assert len(objects["ProductDetailStoreAssets"]) == 12
    assert {a["Count1"] for a in objects["ProductDetailStoreAssets"]} == {7}
    assert all(
        g["EntityType"] == 102 and g["ItemCode"] in seeded.products
        for g in objects["PhotoGalleries"]
    )
    assert (
        all(p["Url"].startswith("/") for p in objects["Pictures"])
        and len(objects["Pictures"]) == 12
    )
    assert [v["VisitorId"] for v in objects["Visitors"]] == [VISITOR]
    assert {v["ProductDetailId"] for v in objects["VisitorProducts"]} == set(seeded.product_details)
    assert {s["SettingCode"] for s in objects["Settings"]} >= {14000, 14001, 14008}
    assert [p["PersonId"] for p in objects["People"]] == seeded.people


async def test_one_global_counter_and_ascending_order(mahak: Mahak, sim: SimControl) -> None:
    await sim.seed(3)
    objects = await mahak.objects(
        {
            "fromProductVersion": 0,
            "fromProductDetailVersion": 0,
            "fromStoreVersion": 0,
            "fromProductCategoryVersion": 0,
        }
    )
    versions = [r["RowVersion"] for rows in objects.values() if rows for r in rows]
    assert len(versions) == len(set(versions))  # one counter shared by every entity
    for rows in objects.values():
        if rows:
            assert [r["RowVersion"] for r in rows] == sorted(r["RowVersion"] for r in rows)


async def test_page_size_caps_each_list_and_the_boundary_is_configurable(
    mahak: Mahak, sim: SimControl
) -> None:
    await sim.seed(5, categories=3)
    page = await mahak.objects(
        {"fromProductVersion": 0, "fromProductCategoryVersion": 0, "pageSize": 2}
    )
    assert len(page["Products"]) == 2 and len(page["ProductCategories"]) == 2
    last = page["Products"][-1]["RowVersion"]

    inclusive = await mahak.objects({"fromProductVersion": last, "pageSize": 2})
    assert inclusive["Products"][0]["RowVersion"] == last  # `>= from`: the last row comes again

    assert (await sim.configure(boundary="exclusive")).boundary == "exclusive"
    exclusive = await mahak.objects({"fromProductVersion": last, "pageSize": 10})
    assert [r["RowVersion"] > last for r in exclusive["Products"]] == [True] * 3

    everything = await mahak.objects({"fromProductVersion": 0, "pageSize": 0})
    assert len(everything["Products"]) == 5  # 0 = no cap


async def test_changes_and_logical_deletes_are_re_emitted_with_new_versions(
    mahak: Mahak, sim: SimControl
) -> None:
    seeded = await sim.seed(2)
    before = await mahak.objects({"fromProductVersion": 0, "fromProductDetailVersion": 0})
    top = max(r["RowVersion"] for rows in before.values() if rows for r in rows)

    await sim.delete("products", seeded.products[0])
    await sim.set_price(seeded.product_details[1], level=2, price=99_000)
    after = await mahak.objects(
        {"fromProductVersion": top + 1, "fromProductDetailVersion": top + 1}
    )
    assert [(p["ProductId"], p["Deleted"]) for p in after["Products"]] == [
        (seeded.products[0], True)
    ]
    assert [(d["ProductDetailId"], d["Price2"]) for d in after["ProductDetails"]] == [
        (seeded.product_details[1], 99_000)
    ]
    assert after["Products"][0]["RowVersion"] < after["ProductDetails"][0]["RowVersion"]
    assert len(await sim.entities("Products")) == 2  # never physically removed


async def test_injected_rows_and_equal_versions(mahak: Mahak, sim: SimControl) -> None:
    seeded = await sim.seed(1)
    bad = await sim.inject_row(
        "ProductDetails", {"ProductDetailId": "abc", "ProductId": seeded.products[0]}
    )
    twin = await sim.inject_row(
        "product_details",
        {"ProductDetailId": 42, "ProductId": seeded.products[0]},
        row_version=bad["RowVersion"],
    )
    assert twin["RowVersion"] == bad["RowVersion"]
    rows = (await mahak.objects({"fromProductDetailVersion": bad["RowVersion"]}))["ProductDetails"]
    assert [r["ProductDetailId"] for r in rows] == ["abc", 42]  # equal versions keep write order
    assert len(await sim.entities("ProductDetails")) == 3

    # A row written later with an older RowVersion still comes back in ascending order.
    [seeded_detail] = [
        r for r in await sim.entities("ProductDetails") if r["ProductDetailId"] not in ("abc", 42)
    ]
    older = await sim.inject_row(
        "ProductDetails",
        {"ProductDetailId": 43, "ProductId": seeded.products[0]},
        row_version=seeded_detail["RowVersion"] - 1,
    )
    rows = (await mahak.objects({"fromProductDetailVersion": 0}))["ProductDetails"]
    assert [r["ProductDetailId"] for r in rows] == [43, seeded_detail["ProductDetailId"], "abc", 42]
    assert [r["RowVersion"] for r in rows] == sorted(r["RowVersion"] for r in rows)
    assert rows[0]["RowVersion"] == older["RowVersion"]


async def test_order_types_filter_orders(mahak: Mahak, sim: SimControl) -> None:
    seeded = await sim.seed(1, stock=50)
    detail, store, person = seeded.product_details[0], seeded.stores[0], seeded.people[0]
    saved = await mahak.save(
        {
            "orders": [_order(1, person), _order(2, person, orderType=299)],
            "orderDetails": [_line(11, 1, detail, store, 1), _line(21, 2, detail, store, 1)],
        }
    )
    assert saved["Result"] is True
    sale = await mahak.objects(
        {"fromOrderVersion": 0, "fromOrderDetailVersion": 0, "orderTypes": [201]}
    )
    assert [o["OrderClientId"] for o in sale["Orders"]] == [1]
    assert {d["OrderDetailClientId"] for d in sale["OrderDetails"]} == {11, 21}
    assert MAHAK_DATE.match(sale["Orders"][0]["OrderDate"])  # "Y-m-d H:i:s" was accepted


# --- SaveAllData ---------------------------------------------------------------------------


async def test_save_all_data_partial_failure_commits_the_good_records(
    mahak: Mahak, sim: SimControl
) -> None:
    seeded = await sim.seed(2, stock=10)
    detail, store, person = seeded.product_details[0], seeded.stores[0], seeded.people[0]
    answer = await mahak.save(
        {
            "Orders": [_order(8_000_000_000_000_001, person)],
            "orderDetails": [
                _line(81, 8_000_000_000_000_001, detail, store, 1),
                _line(82, 8_000_000_000_000_001, None, store, 1, productId=seeded.products[0]),
                _line(83, 8_000_000_000_000_001, 999, store, 1),
                _line(84, 8_000_000_000_000_001, detail, 7777, 1),
            ],
            "banks": [{"bankClientId": 1}],  # accepted, ignored
        }
    )
    assert answer["Result"] is False
    objects = answer["Data"]["Objects"]
    assert list(objects) == [c.save_name for c in COLLECTIONS]
    assert "Companies" in objects and "MahakPays" in objects and objects["Banks"] == {"Results": []}
    order = objects["Orders"]["Results"][0]
    assert order == {
        "Result": True,
        "Index": 1,
        "EntityId": order["EntityId"],
        "EntityClientId": 8_000_000_000_000_001,
        "RowVersion": order["RowVersion"],
    }
    lines = objects["OrderDetails"]["Results"]
    assert [r["Index"] for r in lines] == [1, 2, 3, 4]
    assert lines[0]["Result"] is True and lines[0]["EntityClientId"] == 81
    assert lines[1] == {
        "Result": False,
        "Index": 2,
        "Errors": [
            {
                "Property": "IncomeId,ExpenseId,ProductDetailId",
                "Error": "ProductDetailId or IncomeId or ExpenseId is required ",
            }
        ],
    }
    assert lines[2]["Errors"][0]["Property"] == "ProductDetailId" and "EntityId" not in lines[2]
    assert lines[3]["Errors"][0]["Property"] == "StoreId"

    accepted = await sim.order(8_000_000_000_000_001)
    assert accepted is not None and [d["OrderDetailClientId"] for d in accepted.details] == [81]
    pulled = await mahak.objects({"fromOrderVersion": 0, "fromOrderDetailVersion": 0}, "GetAllData")
    assert [o["OrderId"] for o in pulled["Orders"]] == [order["EntityId"]]
    assert [d["OrderDetailClientId"] for d in pulled["OrderDetails"]] == [81]


async def test_unknown_person_fails_the_order_and_its_lines(mahak: Mahak, sim: SimControl) -> None:
    seeded = await sim.seed(1)
    answer = await mahak.save(
        {
            "orders": [_order(5, 123)],
            "orderDetails": [_line(51, 5, seeded.product_details[0], seeded.stores[0], 1)],
        }
    )
    objects = answer["Data"]["Objects"]
    assert objects["Orders"]["Results"][0]["Errors"][0]["Property"] == "PersonId"
    assert objects["OrderDetails"]["Results"][0]["Errors"][0]["Property"] == "OrderId"
    assert await sim.orders() == []


async def test_children_reference_parents_by_client_id(mahak: Mahak, sim: SimControl) -> None:
    seeded = await sim.seed(1, people=0)
    [group] = await sim.entities("PersonGroups")
    answer = await mahak.save(
        {
            "people": [
                {
                    "personClientId": 900,
                    "firstName": "Sara",
                    "lastName": "K",
                    "personType": 0,
                    "mobile": "09120000000",
                    "personGroupId": group["PersonGroupId"],
                }
            ],
            "visitorPeople": [{"visitorId": VISITOR, "personClientId": 900}],
            "orders": [{"orderClientId": 901, "visitorId": VISITOR, "personClientId": 900}],
            "orderDetails": [_line(902, 901, seeded.product_details[0], seeded.stores[0], "2")],
            "receipts": [
                {
                    "receiptClientId": 901,
                    "orderClientId": 901,
                    "personClientId": 900,
                    "visitorId": VISITOR,
                    "cashAmount": "300000",
                    "cashCode": 1,
                    "date": "2025-10-04 10:00:00",
                }
            ],
        },
        endpoint="SaveAllData",
    )
    assert answer["Result"] is True, answer
    objects = answer["Data"]["Objects"]
    person_id = objects["People"]["Results"][0]["EntityId"]
    # The link was sent without a client id: the member is omitted, never `null` (LIVE).
    link = objects["VisitorPeople"]["Results"][0]
    assert link["Result"] is True and "EntityClientId" not in link
    assert all(v is not None for c in objects.values() for r in c["Results"] for v in r.values())
    order = await sim.order(901)
    assert order is not None and order.order["PersonId"] == person_id
    assert order.details[0]["Count1"] == 2
    links = await sim.entities("VisitorPeople")
    assert [(v["PersonId"], v["VisitorId"]) for v in links] == [(person_id, VISITOR)]


async def test_a_person_needs_a_group_and_a_receipt_a_cash_box_or_bank(
    mahak: Mahak, sim: SimControl
) -> None:
    # Issue 12: no silent default group; no receipt without somewhere for the money to go.
    seeded = await sim.seed(1)
    person = seeded.people[0]
    answer = await mahak.save(
        {
            "people": [{"personClientId": 910, "firstName": "No", "lastName": "Group"}],
            "orders": [_order(911, person)],
            "receipts": [
                {
                    "receiptClientId": 911,
                    "orderClientId": 911,
                    "personId": person,
                    "visitorId": VISITOR,
                    "cashAmount": 1000,
                    "date": "2025-10-04 10:00:00",
                },
                {
                    "receiptClientId": 912,
                    "orderClientId": 911,
                    "personId": person,
                    "visitorId": VISITOR,
                    "cashAmount": 1000,
                    "bankId": 3,
                    "date": "2025-10-04 10:00:00",
                },
            ],
        }
    )
    objects = answer["Data"]["Objects"]
    assert objects["People"]["Results"][0]["Errors"][0]["Property"] == "PersonGroupId"
    assert objects["Receipts"]["Results"][0]["Errors"][0]["Property"] == "CashCode,BankId"
    assert objects["Receipts"]["Results"][1]["Result"] is True
    assert [r["ReceiptClientId"] for r in await sim.entities("Receipts")] == [912]


async def test_dates_are_stored_as_the_wall_clock_sent(mahak: Mahak, sim: SimControl) -> None:
    # Issue 12: naive Tehran time is stored as sent; an offset is dropped (§1.1), so a client
    # sending UTC would show 3.5 hours early.
    seeded = await sim.seed(1)
    person = seeded.people[0]
    await mahak.save(
        {
            "orders": [
                _order(921, person, orderDate="2025-10-04T15:18:38"),
                _order(922, person, orderDate="2025-10-04T11:48:38+00:00"),
            ]
        }
    )
    dates = {o["OrderClientId"]: o["OrderDate"] for o in await sim.entities("Orders")}
    assert dates == {921: "2025-10-04T15:18:38.0000000", 922: "2025-10-04T11:48:38.0000000"}


async def test_sale_invoice_takes_stock_and_refuses_what_the_store_cannot_cover(
    mahak: Mahak, sim: SimControl
) -> None:
    seeded = await sim.seed(2, stock=5)
    first, second = seeded.product_details
    store, person = seeded.stores[0], seeded.people[0]
    before = await _stock(sim, first, store)
    answer = await mahak.save(
        {
            "orders": [_order(10, person)],
            "orderDetails": [_line(101, 10, first, store, 3), _line(102, 10, second, store, 6)],
        }
    )
    lines = answer["Data"]["Objects"]["OrderDetails"]["Results"]
    assert answer["Result"] is False and lines[0]["Result"] is True
    assert (
        lines[1]["Errors"][0]["Property"] == "Count1"
        and "insufficient stock" in lines[1]["Errors"][0]["Error"]
    )
    after = await _stock(sim, first, store)
    assert after["Count1"] == 2 and after["RowVersion"] > before["RowVersion"]
    assert (await _stock(sim, second, store))["Count1"] == 5

    # A proforma (299) moves no stock.
    await mahak.save(
        {
            "orders": [_order(11, person, orderType=299)],
            "orderDetails": [_line(111, 11, first, store, 2)],
        }
    )
    assert (await _stock(sim, first, store))["Count1"] == 2


async def test_orders_are_refused_for_another_visitor_or_a_deleted_stock_row(
    mahak: Mahak, sim: SimControl
) -> None:
    seeded = await sim.seed(1, stock=5)
    detail, store, person = seeded.product_details[0], seeded.stores[0], seeded.people[0]
    foreign = await mahak.save({"orders": [_order(40, person, visitorId=VISITOR + 1)]})
    assert (
        foreign["Data"]["Objects"]["Orders"]["Results"][0]["Errors"][0]["Property"] == "VisitorId"
    )

    # A logically deleted stock row holds nothing, whatever its last Count1 said.
    await sim.delete("ProductDetailStoreAssets", seeded.product_detail_store_assets[0])
    answer = await mahak.save(
        {"orders": [_order(41, person)], "orderDetails": [_line(411, 41, detail, store, 1)]}
    )
    line = answer["Data"]["Objects"]["OrderDetails"]["Results"][0]
    assert line["Result"] is False and line["Errors"][0]["Property"] == "Count1"


async def test_known_order_is_updated_until_imported_then_refused(
    mahak: Mahak, sim: SimControl
) -> None:
    seeded = await sim.seed(1, stock=10)
    detail, store, person = seeded.product_details[0], seeded.stores[0], seeded.people[0]
    request = {"orders": [_order(77, person)], "orderDetails": [_line(771, 77, detail, store, 2)]}
    first = await mahak.save(request)
    request["orderDetails"][0]["count1"] = 3
    again = await mahak.save(request)
    assert again["Result"] is True
    first_id = first["Data"]["Objects"]["Orders"]["Results"][0]["EntityId"]
    assert again["Data"]["Objects"]["Orders"]["Results"][0]["EntityId"] == first_id
    assert (await _stock(sim, detail, store))["Count1"] == 7  # the edited line took 3 in all
    assert (await sim.stats()).duplicate_submissions == 1

    imported = await sim.mark_imported(77)
    assert imported.order_id == first_id and imported.order_code >= 1
    refused = await mahak.save(request)
    assert refused["Result"] is False
    error = refused["Data"]["Objects"]["Orders"]["Results"][0]["Errors"][0]
    assert error["Property"] == "OrderId" and "ثبت" in error["Error"] and "ویرایش" in error["Error"]
    assert refused["Data"]["Objects"]["OrderDetails"]["Results"][0]["Result"] is False
    stats = await sim.stats()
    assert stats.duplicate_submissions == 2 and stats.requests["SaveAllDataV2"] == 3
    order = await sim.order(77)
    assert order is not None and order.imported and order.submissions == 3
    assert order.details[0]["Count1"] == 3 and (await _stock(sim, detail, store))["Count1"] == 7


async def test_failures_echo_no_client_id_unless_configured(mahak: Mahak, sim: SimControl) -> None:
    request = {
        "orders": [{"orderClientId": 3, "visitorId": VISITOR, "shippingAddress": {"city": "x"}}]
    }
    result = (await mahak.save(request))["Data"]["Objects"]["Orders"]["Results"][0]
    assert result["Result"] is False and "EntityClientId" not in result  # as LIVE
    assert result["Errors"][0]["Property"] == "ShippingAddress"  # a JSON string, not an object
    assert (await sim.configure(echo_client_id_on_failure=True)).echo_client_id_on_failure
    result = (await mahak.save(request))["Data"]["Objects"]["Orders"]["Results"][0]
    assert (result["Result"], result["EntityClientId"]) == (False, 3)


# --- Control: in-store sales, disputes -----------------------------------------------------


async def test_in_store_sale_is_a_desktop_order_and_takes_stock(
    mahak: Mahak, sim: SimControl
) -> None:
    seeded = await sim.seed(1, stock=4)
    sale = await sim.sale(seeded.product_details[0], seeded.stores[0], 3)
    assert sale.remaining == 1
    [order] = await sim.orders()
    assert (order.order_id, order.source, order.imported) == (sale.order_id, "desktop", True)
    pulled = await mahak.objects({"fromOrderVersion": 0, "fromProductDetailStoreAssetVersion": 0})
    assert [o["OrderId"] for o in pulled["Orders"]] == [sale.order_id]
    assert pulled["ProductDetailStoreAssets"][-1]["Count1"] == 1
    with pytest.raises(Exception, match="409"):
        await sim.sale(seeded.product_details[0], seeded.stores[0], 2)


async def test_solve_dispute_re_emits_stale_rows_and_tombstones_missing_ones(
    mahak: Mahak, sim: SimControl
) -> None:
    seeded = await sim.seed(2)
    rows = (await mahak.objects({"fromProductVersion": 0}))["Products"]
    top = max(r["RowVersion"] for r in rows)
    answer = (
        await mahak.post(
            "SolveDispute",
            {
                "databaseId": 1234567,
                "entityName": "product",
                "disputeItems": [
                    {"id": rows[0]["ProductId"], "rw": rows[0]["RowVersion"]},  # in step: untouched
                    {"id": rows[1]["ProductId"], "rw": 1},  # stale
                    {"id": 1, "rw": 5},  # unknown to the server
                ],
            },
        )
    ).json()
    assert answer["Result"] is True
    assert answer["Data"] == {"Reemitted": [seeded.products[1]], "Deleted": [1]}
    newer = (await mahak.objects({"fromProductVersion": top + 1}))["Products"]
    assert [(r["ProductId"], r["Deleted"]) for r in newer] == [
        (seeded.products[1], False),
        (1, True),
    ]
    unknown = (
        await mahak.post("SolveDispute", {"entityName": "nonsense", "disputeItems": []})
    ).json()
    assert unknown["Result"] is False

    for endpoint, extra in (("SolveDispute", {"entityName": "product"}), ("SolveOrderDispute", {})):
        other_db = (
            await mahak.post(endpoint, {"databaseId": 999, "disputeItems": [], **extra})
        ).json()
        assert other_db["Result"] is False and other_db["Data"] is None, endpoint


async def test_solve_order_dispute_reports_registration_and_import(
    mahak: Mahak, sim: SimControl
) -> None:
    seeded = await sim.seed(1)
    saved = await mahak.save(
        {"orders": [_order(61, seeded.people[0]), _order(62, seeded.people[0])]}
    )
    ids = [r["EntityId"] for r in saved["Data"]["Objects"]["Orders"]["Results"]]
    code = (await sim.mark_imported(61)).order_code
    answer = (
        await mahak.post(
            "SolveOrderDispute",
            {
                "databaseId": 1234567,
                "disputeItems": [
                    {"id": ids[0], "code": code},
                    {"id": ids[1], "code": 0},
                    {"id": 5, "code": 0},
                ],
            },
        )
    ).json()
    assert answer["Result"] is True
    results = answer["Data"]["Results"]
    assert results[0] == {
        "Id": ids[0],
        "Code": code,
        "OrderClientId": 61,
        "Registered": True,
        "Imported": True,
        "RowVersion": results[0]["RowVersion"],
    }
    assert (results[1]["Registered"], results[1]["Imported"], "Code" in results[1]) == (
        True,
        False,
        False,
    )
    assert (results[2]["Registered"], results[2]["Imported"]) == (False, False)
    assert (await mahak.post("Upload", {})).json()["Result"] is True


# --- Faults --------------------------------------------------------------------------------


async def test_status_faults_with_count_retry_after_and_endpoint_filter(
    mahak: Mahak, sim: SimControl
) -> None:
    await sim.add_fault(status_code=503, retry_after=7, count=2, endpoints=["GetAllDataV2"])
    body = {"fromStoreVersion": 0}
    for _ in range(2):
        response = await mahak.post("GetAllDataV2", body)
        assert response.status_code == 503 and response.headers["retry-after"] == "7"
    assert (await mahak.post("GetAllData", body)).status_code == 200  # other path untouched
    assert (await mahak.post("GetAllDataV2", body)).status_code == 200  # count used up

    await sim.add_fault(status_code=429, retry_after=1)
    assert (await mahak.post("SaveAllData", {})).status_code == 429
    assert (await mahak.login()).status_code == 429  # every Sync endpoint by default
    await sim.clear_faults()
    assert (await mahak.login()).status_code == 200

    await sim.add_fault(status_code=401, count=1)
    response = await mahak.post("GetAllDataV2", body)
    assert (response.status_code, response.json()) == (401, {"message": "Unauthorized"})
    assert (await sim.stats()).faults_injected == 5


async def test_error_rate_is_random_but_seeded(mahak: Mahak, sim: SimControl) -> None:
    await sim.add_fault(status_code=500, error_rate=0.5)
    statuses = [
        (await mahak.post("GetAllDataV2", {"fromStoreVersion": 0})).status_code for _ in range(30)
    ]
    assert 0 < statuses.count(500) < 30
    await sim.reset()  # the dice restart from the seed
    await mahak.login()
    await sim.add_fault(status_code=500, error_rate=0.5)
    again = [
        (await mahak.post("GetAllDataV2", {"fromStoreVersion": 0})).status_code for _ in range(30)
    ]
    assert again == statuses


async def test_latency_fault_delays_the_real_answer(mahak: Mahak, sim: SimControl) -> None:
    await sim.add_fault(latency_ms=300, count=1)
    started = asyncio.get_running_loop().time()
    response = await mahak.post("GetAllDataV2", {"fromStoreVersion": 0})
    assert response.status_code == 200 and response.json()["Result"] is True
    assert asyncio.get_running_loop().time() - started >= 0.3


async def test_dropped_connection_gets_no_response(mahak: Mahak, sim: SimControl) -> None:
    seeded = await sim.seed(1)
    request = {"orders": [_order(31, seeded.people[0])]}
    await sim.add_fault(drop_connection=True, count=1, endpoints=["SaveAllDataV2"])
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        await mahak.post("SaveAllDataV2", request)
    assert await sim.orders() == []  # dropped before it took effect

    await sim.add_fault(drop_after_processing=True, count=1, endpoints=["SaveAllDataV2"])
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        await mahak.post("SaveAllDataV2", request)
    assert [o.order_client_id for o in await sim.orders()] == [31]  # saved, answer lost
    assert (await mahak.save(request))["Result"] is True  # not imported yet: an update
    assert (await sim.stats()).duplicate_submissions == 1


async def test_malformed_bodies(mahak: Mahak, sim: SimControl) -> None:
    await sim.add_fault(malformed="html", count=1)
    html = await mahak.post("GetAllDataV2", {"fromStoreVersion": 0})
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert html.text.lstrip().startswith("<!DOCTYPE html>")

    await sim.add_fault(malformed="truncated", count=1)
    cut = await mahak.post("GetAllDataV2", {"fromStoreVersion": 0, "fromSettingVersion": 0})
    assert cut.status_code == 200 and cut.text.startswith('{"Result":true')
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut.text)


# --- Gateway and CLI -----------------------------------------------------------------------


async def test_gateway_refunds_are_idempotent_by_key(
    simulator: SimulatorServer, sim: SimControl
) -> None:
    async with httpx.AsyncClient(base_url=simulator.root_url) as http:
        body = {"payment_ref": "pay-1", "amount": 150000, "idempotency_key": "refund-order-1"}
        first = await http.post("/_gateway/refunds", json=body)
        again = await http.post("/_gateway/refunds", json=body)
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json()["refund_id"] == again.json()["refund_id"]
        conflict = await http.post("/_gateway/refunds", json={**body, "amount": 1})
        assert conflict.status_code == 409
        await sim.add_fault(status_code=502, count=1, endpoints=["refunds"])
        assert (await http.post("/_gateway/refunds", json=body)).status_code == 502
    assert [r["idempotency_key"] for r in await sim.refunds()] == ["refund-order-1"]


def test_cli_runs_the_simulator_as_a_process() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from mahak_sync.cli import main; main()",
            "simulator",
            "--port",
            "0",
            "--username",
            "demo",
            "--password",
            "pw",
            "--seed-products",
            "3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        match = re.fullmatch(r"mahak simulator listening on (http://127\.0\.0\.1:\d+/API/v3)", line)
        assert match, line
        base_url = match.group(1)
        login = httpx.post(
            f"{base_url}/Sync/Login", json={"userName": "demo", "password": "pw"}
        ).json()
        assert login["Result"] is True
        token = login["Data"]["UserToken"]
        products = httpx.post(
            f"{base_url}/Sync/GetAllData",
            json={"fromProductVersion": 0},
            headers={"Authorization": f"Bearer {token}"},
        ).json()
        assert len(products["Data"]["Objects"]["Products"]) == 3
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0


def _simulator_process(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from mahak_sync.cli import main; main()",
            "simulator",
            "--port",
            "0",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    match = re.fullmatch(r"mahak simulator listening on (http://127\.0\.0\.1:\d+)/API/v3", line)
    assert match, line
    return proc, match.group(1)


def test_a_state_file_keeps_the_simulated_data_across_restarts(tmp_path: Path) -> None:
    state = tmp_path / "simulator-state.json"
    proc, root = _simulator_process("--seed-products", "2", "--state-file", str(state))
    try:
        row = {"StoreId": 424242, "Name": "kept"}
        httpx.post(f"{root}/_sim/rows", json={"entity": "Stores", "row": row}).raise_for_status()
        before = httpx.get(f"{root}/_sim/entities/Stores").json()["rows"]
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0
    proc, root = _simulator_process("--state-file", str(state))
    try:
        after = httpx.get(f"{root}/_sim/entities/Stores").json()["rows"]
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0
    assert after == before and any(r["StoreId"] == 424242 for r in after)


# --- Open-question modes (shared/mahak-api.md §11; README.md "Simulator modes") ----------------
# Each mode bites: the raw wire shows the other answer. What the project's client does under
# each answer is in tests/test_simulator_modes.py.


async def test_unknown_fields_are_reported_not_failed(mahak: Mahak, sim: SimControl) -> None:
    seeded = await sim.seed(1)
    answer = await mahak.save(
        {"orders": [_order(51, seeded.people[0], colour="red", Colour="x")], "ordres": []}
    )
    assert answer["Result"] is True  # the real binder ignores unknown members
    await mahak.objects({"fromStoreVersion": 0, "fromWidgetVersion": 0, "UserToken": "t"})
    assert [(u.entity, u.field, u.count) for u in await sim.unknown_fields()] == [
        ("GetAllData", "UserToken", 1),
        ("GetAllData", "fromWidgetVersion", 1),
        ("Orders", "Colour", 1),
        ("Orders", "colour", 1),
        ("SaveAllData", "ordres", 1),
    ]
    await sim.reset()
    assert await sim.unknown_fields() == []


async def test_late_commit_lag_hides_a_row_that_keeps_its_lower_version(
    mahak: Mahak, sim: SimControl
) -> None:
    await sim.configure(late_commit_lag=2)
    held = await sim.inject_row("Stores", {"StoreId": 1, "Name": "late"})
    await sim.configure(late_commit_lag=0)
    prompt = await sim.inject_row("Stores", {"StoreId": 2, "Name": "prompt"})
    assert (await sim.stats()).held_rows == 1
    for _ in range(2):
        assert [r["StoreId"] for r in (await mahak.objects({"fromStoreVersion": 0}))["Stores"]] == [
            2
        ]
    rows = (await mahak.objects({"fromStoreVersion": 0}))["Stores"]
    assert [(r["StoreId"], r["RowVersion"]) for r in rows] == [
        (1, held["RowVersion"]),
        (2, prompt["RowVersion"]),
    ]
    assert held["RowVersion"] < prompt["RowVersion"] and (await sim.stats()).held_rows == 0


@pytest.mark.parametrize(
    ("mode", "stored"),
    [
        (
            "drop",
            {
                1: "2025-10-04T10:00:00.0000000",
                2: "2025-10-04T10:00:00.0000000",
                3: "2025-10-04T10:00:00.0000000",
            },
        ),
        (
            "honour",
            {
                1: "2025-10-04T13:30:00.0000000",
                2: "2025-10-04T10:00:00.0000000",
                3: "2025-10-04T10:00:00.0000000",
            },
        ),
        ("refuse", {3: "2025-10-04T10:00:00.0000000"}),
    ],
)
async def test_dated_offset_modes(
    mahak: Mahak, sim: SimControl, mode: str, stored: dict[int, str]
) -> None:
    await sim.configure(dated_offset=mode)
    person = (await sim.seed(1)).people[0]
    answer = await mahak.save(
        {
            "orders": [
                _order(1, person, orderDate="2025-10-04T10:00:00Z"),
                _order(2, person, orderDate="2025-10-04T10:00:00+03:30"),
                _order(3, person, orderDate="2025-10-04T10:00:00"),
            ]
        }
    )
    assert {o["OrderClientId"]: o["OrderDate"] for o in await sim.entities("Orders")} == stored
    if mode == "refuse":
        errors = [
            r["Errors"][0]["Property"] for r in answer["Data"]["Objects"]["Orders"]["Results"][:2]
        ]
        assert errors == ["OrderDate", "OrderDate"]


async def test_edit_after_import_allow_and_a_deleted_order_is_never_edited(
    mahak: Mahak, sim: SimControl
) -> None:
    seeded = await sim.seed(1, stock=10)
    detail, store, person = seeded.product_details[0], seeded.stores[0], seeded.people[0]
    receipt = {
        "receiptClientId": 61,
        "orderClientId": 61,
        "personId": person,
        "visitorId": VISITOR,
        "cashCode": 1,
        "cashAmount": 1000,
        "date": "2025-10-04 10:00:00",
    }
    await mahak.save(
        {
            "orders": [_order(61, person)],
            "orderDetails": [_line(611, 61, detail, store, 1)],
            "receipts": [receipt],
        }
    )
    await sim.mark_imported(61)
    refused = await mahak.save({"receipts": [{**receipt, "deleted": True}]})
    assert (
        refused["Data"]["Objects"]["Receipts"]["Results"][0]["Errors"][0]["Property"] == "ReceiptId"
    )

    await sim.configure(edit_after_import="allow")
    taken = await mahak.save(
        {
            "orders": [_order(61, person, deleted=True)],
            "orderDetails": [_line(611, 61, detail, store, 1, deleted=True)],
            "receipts": [{**receipt, "deleted": True}],
        }
    )
    assert taken["Result"] is True and (await _stock(sim, detail, store))["Count1"] == 10
    # A deleted order cannot be edited (in every mode), nor given a live line.
    edit = await mahak.save(
        {"orders": [_order(61, person)], "orderDetails": [_line(612, 61, detail, store, 1)]}
    )
    objects = edit["Data"]["Objects"]
    for collection in ("Orders", "OrderDetails"):
        error = objects[collection]["Results"][0]["Errors"][0]
        assert error["Property"] == "OrderId" and "deleted" in error["Error"]
    order = await sim.order(61)
    assert order is not None and order.order["Deleted"] and len(order.details) == 1


async def test_line_field_modes(mahak: Mahak, sim: SimControl) -> None:
    seeded = await sim.seed(1, stock=10)
    detail, store, person = seeded.product_details[0], seeded.stores[0], seeded.people[0]
    bare = {
        "orderDetailClientId": 701,
        "orderClientId": 70,
        "productDetailId": detail,
        "price": 1000,
        "count1": 1,
        "taxPercent": 0,
        "chargePercent": 0,
    }
    await sim.configure(line_fields="strict", tax_zero_means="default")
    answer = await mahak.save(
        {
            "orders": [_order(70, person)],
            "orderDetails": [
                bare,
                {**bare, "orderDetailClientId": 702, "storeId": store, "itemType": 1},
            ],
        }
    )
    results = answer["Data"]["Objects"]["OrderDetails"]["Results"]
    assert results[0]["Errors"][0]["Property"] == "StoreId" and results[1]["Result"] is True
    [line] = (await sim.order(70)).details  # type: ignore[union-attr]
    assert (line["TaxPercent"], line["ChargePercent"]) == (10, 0)  # Settings 14001 / 14000

    await sim.configure(line_fields="lenient", tax_zero_means="zero")
    assert (await mahak.save({"orderDetails": [bare]}))["Result"] is True
    stored = {d["OrderDetailClientId"]: d for d in (await sim.order(70)).details}  # type: ignore[union-attr]
    assert (stored[701]["StoreId"], stored[701]["ItemType"], stored[701]["TaxPercent"]) == (
        store,
        1,
        0,
    )


async def test_person_without_group_default_group(mahak: Mahak, sim: SimControl) -> None:
    await sim.configure(person_without_group="default_group")
    group = (await sim.entities("PersonGroups"))[0]["PersonGroupId"]
    answer = await mahak.save(
        {
            "people": [
                {"personClientId": 81, "firstName": "No"},
                {"personClientId": 82, "personGroupId": 0},
            ]
        }
    )
    assert answer["Result"] is True
    assert [p["PersonGroupId"] for p in await sim.entities("People")] == [group, group]


async def test_login_failure_and_token_form_modes(
    simulator: SimulatorServer, mahak: Mahak, sim: SimControl
) -> None:
    await sim.configure(login_failure="http_401", token_forms="lenient")
    async with httpx.AsyncClient(base_url=simulator.base_url) as http:
        refused = await http.post("/Sync/LoginV2", json={"userName": "shop", "password": "wrong"})
    assert (refused.status_code, refused.json()) == (401, {"message": "Unauthorized"})
    for auth in (f"bearer : {mahak.token}", f"{mahak.token}", f"Bearer {mahak.token}"):
        assert (
            await mahak.post("GetAllDataV2", {"fromStoreVersion": 0}, auth=auth)
        ).status_code == 200
    assert (
        await mahak.post("GetAllDataV2", {"fromStoreVersion": 0}, auth=f"Token {mahak.token}")
    ).status_code == 401


@pytest.mark.parametrize(
    ("mode", "order_data", "dispute_data"),
    [("bare_list", "list", "list"), ("envelope_only", None, None), ("refused", None, None)],
)
async def test_dispute_answer_modes(
    mahak: Mahak, sim: SimControl, mode: str, order_data: str | None, dispute_data: str | None
) -> None:
    await sim.configure(dispute_answer=mode)
    seeded = await sim.seed(1)
    await mahak.save({"orders": [_order(91, seeded.people[0])]})
    order_id = (await sim.order(91)).order_id  # type: ignore[union-attr]
    answer = (await mahak.post("SolveOrderDispute", {"disputeItems": [{"id": order_id}]})).json()
    assert answer["Result"] is (mode != "refused")
    if order_data == "list":
        assert answer["Data"][0]["OrderId"] == order_id and answer["Data"][0]["Exists"] is True
    else:
        assert answer["Data"] is None
    before = (await sim.stats()).row_version
    answer = (
        await mahak.post(
            "SolveDispute",
            {
                "entityName": "ProductDetail",
                "disputeItems": [{"id": seeded.product_details[0], "rw": 1}],
            },
        )
    ).json()
    assert (answer["Data"] == [seeded.product_details[0]]) is (dispute_data == "list")
    assert ((await sim.stats()).row_version > before) is (mode != "refused")


async def test_answer_casing_camel(mahak: Mahak, sim: SimControl) -> None:
    await sim.configure(answer_casing="camel")
    await sim.seed(1)
    body = (await mahak.post("GetAllDataV2", {"fromProductVersion": 0})).json()
    assert list(body) == ["result", "data"] and "products" in body["data"]["objects"]
    assert "productId" in body["data"]["objects"]["products"][0]
    login = (await mahak.login()).json()
    assert login["result"] is True and "userToken" in login["data"]


def test_the_simulator_imports_nothing_of_the_project_and_has_no_import_cycle() -> None:
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "mahak_simulator"
    project = ("mahak_client", "activities", "workflows", "shopdb", "mahak_sync")
    graph: dict[str, set[str]] = {}
    for path in sorted(root.glob("*.py")):
        tree = ast.parse(path.read_text())
        edges: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.ImportFrom) and node.level == 1:
                # `from .x import y` -> x; `from . import x, y` -> x, y
                edges |= {node.module} if node.module else {a.name for a in node.names}
                continue
            else:
                continue
            assert not any(n.split(".")[0] in project for n in names), (path.name, names)
        graph[path.stem] = edges
    # Only runtime imports count: `TYPE_CHECKING` blocks are not executed.
    for path in sorted(root.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom) and inner.level == 1 and inner.module:
                        graph[path.stem].discard(inner.module)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    assert [m for m in graph if reaches(m, m, {m})] == [], "an import cycle"


async def test_configure_refuses_an_unknown_knob_and_a_bad_value(sim: SimControl) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        await sim.configure(no_such_knob=True)
    with pytest.raises(SimControlError, match="422.*late_commit_lag"):
        await sim.configure(late_commit_lag=-1)  # the knob's own constraint, checked by the server
    assert (await sim.configure(boundary="exclusive")).boundary == "exclusive"


def test_the_readme_documents_every_control_endpoint() -> None:
    from mahak_simulator.control import routes

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme.split("### Simulator control API", 1)[1].split("### Simulator modes", 1)[0]
    for route in routes():
        for method in sorted(route.methods or {"GET"}):
            if method == "HEAD":
                continue
            assert f"{method} {route.path}" in table, (method, route.path)
