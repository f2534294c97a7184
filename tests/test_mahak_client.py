"""MahakClient against scripted HTTP (httpx.MockTransport) and the pager against fake servers.

What matters here is what reached "Mahak" (paths, bodies, headers), how often we logged in,
which error type a failure becomes (the workflows' retry decisions hang on it), that no secret
leaks into an error, and that paging loses no row under either boundary reading.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mahak_client import (
    DisputeItem,
    EntityBatch,
    MahakAuthError,
    MahakClient,
    MahakError,
    MahakPermanentError,
    MahakProtocolError,
    MahakTransientError,
    OrderDisputeItem,
    RejectedRow,
    SaveAllDataRequest,
    drain,
    is_already_registered,
    iter_pages,
    parse_retry_after,
)
from mahak_client.auth import Session, md5_password
from mahak_client.models import LoginData, Order, OrderDetail, Store
from mahak_client.pager import PagerStats

BASE = "http://mahak.test/API/v3"
PASSWORD = "pa55-word!"
PASSWORD_MD5 = hashlib.md5(PASSWORD.encode()).hexdigest()
ALREADY_REGISTERED = "این سفارش قبلا ثبت شده است و امکان ویرایش آن وجود ندارد"


def make_jwt(exp: float | None, iat: float | None = None, marker: str = "") -> str:
    def part(obj: dict[str, Any]) -> str:
        raw = json.dumps(obj).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    claims: dict[str, Any] = {"MahakID": "x", "marker": marker}
    if exp is not None:
        claims["exp"] = int(exp)
    if iat is not None:
        claims["iat"] = int(iat)
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def envelope(data: Any, result: bool = True, **extra: Any) -> dict[str, Any]:
    return {"Result": result, "Code": 0, "Message": None, "Data": data, **extra}


class FakeMahak:
    """A scripted Mahak: counts logins, records requests, answers data calls via `on_data`."""

    def __init__(
        self, *, lifetime: float = 7 * 86400, token_factory: Callable[[int], str] | None = None
    ) -> None:
        self.lifetime = lifetime
        self.logins = 0
        self.requests: list[httpx.Request] = []
        self.valid_tokens: set[str] = set()
        self.token_factory = token_factory
        self.login_response: Callable[[dict[str, Any]], httpx.Response] | None = None
        self.on_data: Callable[[str, dict[str, Any]], httpx.Response] = lambda path, body: (
            httpx.Response(200, json=envelope({"Objects": {}}))
        )

    def issue(self) -> str:
        self.logins += 1
        if self.token_factory:
            token = self.token_factory(self.logins)
        else:
            now = time.time()
            token = make_jwt(now + self.lifetime, now, marker=f"t{self.logins}")
        self.valid_tokens.add(token)
        return token

    def bodies(self, suffix: str) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.url.path.endswith(suffix)]

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = json.loads(request.content)
        path = request.url.path.removeprefix("/API/v3/Sync/")
        if path in ("Login", "LoginV2"):
            if self.login_response:
                return self.login_response(body)
            if body.get("password") != PASSWORD_MD5:
                return httpx.Response(
                    200,
                    json={
                        "Result": False,
                        "Code": 1001,
                        "Message": "نام کاربری یا رمز عبور اشتباه است",
                        "Data": None,
                    },
                )
            token = self.issue()
            return httpx.Response(
                200,
                json=envelope(
                    {
                        "UserToken": token,
                        "VisitorId": 10101,
                        "DatabaseId": 1234567,
                        "SyncId": 5,
                        "ServerTime": "2025-10-04T15:18:38.2345036",
                    }
                ),
            )
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.valid_tokens:
            return httpx.Response(401, json={"message": "Unauthorized"})
        return self.on_data(path, body)


def client_for(fake: Any, **kwargs: Any) -> MahakClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    return MahakClient(BASE, "shop", kwargs.pop("password", PASSWORD), http=http, **kwargs)


def assert_no_secrets(exc: BaseException, *secrets: str) -> None:
    text = f"{exc!s} {exc!r} {exc.args!r}"
    for secret in (PASSWORD, PASSWORD_MD5, *secrets):
        assert secret not in text, f"secret leaked into {type(exc).__name__}: {text}"


# --- Login -----------------------------------------------------------------------------------


def test_md5_convention() -> None:
    assert md5_password("secret") == "5ebe2294ecd0e0f08eab7690d2a6ee69"
    assert md5_password("5EBE2294ECD0E0F08EAB7690D2A6EE69") == "5ebe2294ecd0e0f08eab7690d2a6ee69"
    assert md5_password("12345") == hashlib.md5(b"12345").hexdigest()


async def test_login_v2_sends_extended_body_with_md5_password() -> None:
    fake = FakeMahak()
    async with client_for(fake, database_id=1234567, package_no="7654321") as client:
        login = await client.login()
    assert login.visitor_id == 10101 and client.visitor_id == 10101
    [req] = fake.requests
    assert req.url.path == "/API/v3/Sync/LoginV2"
    assert req.headers["Content-Type"] == "application/json"
    assert "Authorization" not in req.headers
    assert json.loads(req.content) == {
        "userName": "shop",
        "password": PASSWORD_MD5,
        "databaseId": 1234567,
        "packageNo": "7654321",
        "language": "fa",
        "appId": "mahak-sync",
        "description": "mahak-sync",
        "clientVersion": "0.1.0",
    }


async def test_plain_login_sends_only_user_and_password() -> None:
    fake = FakeMahak()
    async with client_for(fake, login_endpoint="Login", database_id=1) as client:
        await client.login()
    [req] = fake.requests
    assert req.url.path == "/API/v3/Sync/Login"
    assert json.loads(req.content) == {"userName": "shop", "password": PASSWORD_MD5}


async def test_an_md5_given_as_password_is_sent_as_is() -> None:
    fake = FakeMahak()
    async with client_for(fake, password=PASSWORD_MD5.upper()) as client:
        await client.login()
    assert fake.bodies("LoginV2")[0]["password"] == PASSWORD_MD5


async def test_bad_credentials_raise_auth_error_with_mahaks_message() -> None:
    fake = FakeMahak()
    async with client_for(fake, password="wrong") as client:
        with pytest.raises(MahakAuthError) as info:
            await client.login()
    err = info.value
    assert err.mahak_message == "نام کاربری یا رمز عبور اشتباه است" and err.code == 1001
    assert err.endpoint == "LoginV2" and not err.retryable
    assert "اشتباه" in str(err)
    assert_no_secrets(err, md5_password("wrong"), "wrong-")


async def test_login_failure_falls_back_to_data_error_message() -> None:
    fake = FakeMahak()
    fake.login_response = lambda body: httpx.Response(
        200, json={"Result": False, "Data": {"ErrorCode": 77, "ErrorMessage": "package expired"}}
    )
    async with client_for(fake) as client:
        with pytest.raises(MahakAuthError, match="package expired") as info:
            await client.login()
    assert info.value.code == 77


async def test_login_without_token_is_a_protocol_error() -> None:
    fake = FakeMahak()
    fake.login_response = lambda body: httpx.Response(200, json=envelope({"VisitorId": 1}))
    async with client_for(fake) as client:
        with pytest.raises(MahakProtocolError, match="UserToken"):
            await client.login()


async def test_odd_display_fields_do_not_stop_a_login_but_odd_ids_do() -> None:
    fake = FakeMahak()
    fake.login_response = lambda body: httpx.Response(
        200,
        json=envelope(
            {
                "UserToken": fake.issue(),
                "VisitorId": 10101,
                "ServerTime": "1404/07/12 15:18",
                "MahakId": 42,
                "UserTitle": ["x"],
            }
        ),
    )
    async with client_for(fake) as client:
        login = await client.login()
    assert (login.visitor_id, login.server_time, login.mahak_id) == (10101, None, None)

    fake.login_response = lambda body: httpx.Response(
        200, json=envelope({"UserToken": "t0ken-value", "VisitorId": "abc", "ServerTime": "nope"})
    )
    async with client_for(fake) as client:
        with pytest.raises(MahakProtocolError, match="visitor_id") as info:
            await client.login()
    assert "t0ken-value" not in str(info.value)


async def test_token_is_cached_and_concurrent_callers_share_one_login() -> None:
    fake = FakeMahak()
    async with client_for(fake) as client:
        await asyncio.gather(*(client.get_all_data({"stores": 0}) for _ in range(8)))
        await client.get_all_data({"stores": 0})
    assert fake.logins == 1
    tokens = {r.headers["Authorization"] for r in fake.requests if "GetAllData" in r.url.path}
    assert len(tokens) == 1 and tokens.pop().startswith("Bearer ")


async def test_token_is_refreshed_before_its_exp() -> None:
    # A 1-hour token with a 5-minute margin: still good now, due for renewal after 56 minutes.
    fake = FakeMahak(lifetime=3600)
    async with client_for(fake, refresh_margin=300) as client:
        await client.get_all_data({"stores": 0})
        assert fake.logins == 1
        session = client._session
        assert session is not None and session.refresh_at is not None
        session.refresh_at = time.time() - 1  # as if 56 minutes had passed
        await client.get_all_data({"stores": 0})
    assert fake.logins == 2
    auths = [r.headers["Authorization"] for r in fake.requests if "GetAllData" in r.url.path]
    assert auths[0] != auths[1]


def test_session_renews_a_margin_before_the_jwt_exp() -> None:
    now = 1_760_000_000.0
    login = LoginData(user_token=make_jwt(now + 7 * 86400, now))
    assert Session.start(login, now=now, refresh_margin=300).refresh_at == now + 7 * 86400 - 300
    # Already past `exp` by our clock (skew) or not a JWT: trusted until the server says 401.
    stale = LoginData(user_token=make_jwt(now - 10, now - 100))
    assert Session.start(stale, now=now, refresh_margin=300).fresh(now + 10**6)
    assert Session.start(LoginData(user_token="opaque"), now=now, refresh_margin=300).fresh(now)


async def test_margin_never_exceeds_half_a_short_token_life() -> None:
    fake = FakeMahak(lifetime=60)  # margin 300 s would otherwise renew on every call
    async with client_for(fake, refresh_margin=300) as client:
        for _ in range(3):
            await client.get_all_data({"stores": 0})
    assert fake.logins == 1


async def test_opaque_token_is_used_until_a_401_then_renewed_once() -> None:
    fake = FakeMahak(token_factory=lambda n: f"opaque-token-{n}")
    async with client_for(fake) as client:
        await client.get_all_data({"stores": 0})
        fake.valid_tokens.clear()  # the server forgets it (expiry, key rotation)
        batches = await client.get_all_data({"stores": 0})
    assert batches["stores"].rows == []
    assert fake.logins == 2
    auths = [r.headers["Authorization"] for r in fake.requests if "GetAllData" in r.url.path]
    assert auths == ["Bearer opaque-token-1", "Bearer opaque-token-1", "Bearer opaque-token-2"]


async def test_concurrent_401s_share_one_relogin() -> None:
    fake = FakeMahak()
    async with client_for(fake) as client:
        await client.login()
        fake.valid_tokens.clear()
        await asyncio.gather(*(client.get_all_data({"stores": 0}) for _ in range(6)))
    assert fake.logins == 2


async def test_a_401_that_survives_relogin_is_transient_and_leaks_nothing() -> None:
    fake = FakeMahak()
    fake.on_data = lambda path, body: httpx.Response(401, json={"message": "Unauthorized"})
    async with client_for(fake) as client:
        with pytest.raises(MahakTransientError) as info:
            await client.get_all_data({"stores": 0})
        token = client._session.token  # type: ignore[union-attr]
    assert fake.logins == 2
    assert info.value.status_code == 401 and info.value.endpoint == "GetAllDataV2"
    assert_no_secrets(info.value, token)


# --- Error taxonomy --------------------------------------------------------------------------


def _http_date(seconds_ahead: int) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds_ahead), usegmt=True)


TAXONOMY = [
    ("500", lambda: httpx.Response(500, text="boom"), MahakTransientError, None),
    (
        "502 html",
        lambda: httpx.Response(502, html="<html>Bad gateway</html>"),
        MahakTransientError,
        None,
    ),
    (
        "503 retry-after",
        lambda: httpx.Response(503, headers={"Retry-After": "7"}),
        MahakTransientError,
        7.0,
    ),
    (
        "429 retry-after date",
        lambda: httpx.Response(429, headers={"Retry-After": _http_date(30)}),
        MahakTransientError,
        30.0,
    ),
    ("408", lambda: httpx.Response(408), MahakTransientError, None),
    (
        "400",
        lambda: httpx.Response(400, json={"Message": "pageSize invalid"}),
        MahakPermanentError,
        None,
    ),
    ("404", lambda: httpx.Response(404, text="not found"), MahakPermanentError, None),
    (
        "200 html",
        lambda: httpx.Response(200, html="<!DOCTYPE html><title>IIS</title>"),
        MahakProtocolError,
        None,
    ),
    (
        "200 truncated",
        lambda: httpx.Response(200, content=b'{"Result": true, "Data": {"Obj'),
        MahakProtocolError,
        None,
    ),
    ("200 empty", lambda: httpx.Response(200, content=b""), MahakProtocolError, None),
    ("200 no envelope", lambda: httpx.Response(200, json=[1, 2]), MahakProtocolError, None),
    (
        "200 Objects a list",
        lambda: httpx.Response(200, json=envelope({"Objects": []})),
        MahakProtocolError,
        None,
    ),
    (
        "200 result false",
        lambda: httpx.Response(200, json={"Result": False, "Code": 12, "Message": "نسخه نامعتبر"}),
        MahakPermanentError,
        None,
    ),
]


@pytest.mark.parametrize(
    ("case", "respond", "kind", "retry_after"), TAXONOMY, ids=[c[0] for c in TAXONOMY]
)
async def test_error_taxonomy(
    case: str,
    respond: Callable[[], httpx.Response],
    kind: type[MahakError],
    retry_after: float | None,
) -> None:
    fake = FakeMahak()
    fake.on_data = lambda path, body: respond()
    async with client_for(fake) as client:
        with pytest.raises(MahakError) as info:
            await client.get_all_data({"stores": 0})
        token = client._session.token  # type: ignore[union-attr]
    err = info.value
    assert type(err) is kind, f"{case}: {err!r}"
    assert err.endpoint == "GetAllDataV2" and "GetAllDataV2" in str(err)
    assert err.status_code == int(case[:3])
    assert err.retryable is (kind is MahakTransientError)
    if retry_after is not None:
        assert isinstance(err, MahakTransientError)
        assert err.retry_after == pytest.approx(retry_after, abs=2)
    if case == "400":
        assert err.mahak_message == "pageSize invalid"
    if case == "200 result false":
        assert err.mahak_message == "نسخه نامعتبر" and err.code == 12
    if case == "200 html":
        assert "HTML page" in str(err)  # operators are told what came back, not just "bad JSON"
    assert_no_secrets(err, token)
    assert fake.logins == 1


def test_retry_after_is_seconds_or_a_date_and_never_unbounded() -> None:
    assert parse_retry_after(" 7 ") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("-3") == 0.0  # a date in the past: retry now
    for junk in (None, "", "soon", "nan", "inf", "1e999"):
        assert parse_retry_after(junk) is None, junk


async def test_json_mislabelled_as_html_is_still_read() -> None:
    fake = FakeMahak()
    fake.on_data = lambda path, body: httpx.Response(
        200,
        content=json.dumps(envelope({"Objects": {"Stores": [{"StoreId": 1, "RowVersion": 9}]}})),
        headers={"Content-Type": "text/html; charset=utf-8"},
    )
    async with client_for(fake) as client:
        batch = (await client.get_all_data({"stores": 0}))["stores"]
    assert [s.store_id for s in batch.rows] == [1]


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectError("connection refused"),
        httpx.RemoteProtocolError("peer closed connection"),
    ],
)
async def test_network_failures_are_transient(exc: Exception) -> None:
    calls = 0

    async def transport(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise exc

    async with client_for(transport) as client:
        with pytest.raises(MahakTransientError) as info:
            await client.login()
    assert calls == 1
    assert info.value.endpoint == "LoginV2" and info.value.__cause__ is None
    assert_no_secrets(info.value)


async def test_server_echoing_secrets_is_scrubbed() -> None:
    fake = FakeMahak()
    holder: dict[str, str] = {}

    def echo(path: str, body: dict[str, Any]) -> httpx.Response:
        token = next(iter(fake.valid_tokens))
        holder["token"] = token
        return httpx.Response(400, json={"Message": f"bad request token={token} pw={PASSWORD}"})

    fake.on_data = echo
    async with client_for(fake) as client:
        with pytest.raises(MahakPermanentError) as info:
            await client.get_all_data({"stores": 0})
    assert "***" in str(info.value)
    assert_no_secrets(info.value, holder["token"])


def test_errors_survive_pickling() -> None:
    import pickle

    err = MahakTransientError(
        "busy", endpoint="GetAllDataV2", status_code=503, retry_after=3.0, mahak_message="later"
    )
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is MahakTransientError and str(again) == str(err)
    assert again.retry_after == 3.0 and again.status_code == 503


# --- GetAllData ------------------------------------------------------------------------------


async def test_get_all_data_requests_only_what_was_asked_and_parses_leniently() -> None:
    fake = FakeMahak()
    fake.on_data = lambda path, body: httpx.Response(
        200,
        json=envelope(
            {
                "Objects": {
                    "stores": [
                        {"StoreId": 1, "Name": " انبار مركزي ", "RowVersion": 4_030_000_001}
                    ],
                    "PRODUCTDETAILS": [
                        {
                            "ProductDetailId": 5,
                            "ProductId": "9",
                            "Price1": "1500.0",
                            "RowVersion": 4_030_000_002,
                        },
                        {"ProductDetailId": "oops", "ProductId": 9, "RowVersion": 4_030_000_009},
                    ],
                    "Products": None,
                    "People": [{"PersonId": 1, "RowVersion": 1}],
                }
            }
        ),
    )
    async with client_for(fake) as client:
        batches = await client.get_all_data(
            {"stores": 0, "product_details": 4_030_000_000, "products": 7}, page_size=50
        )
    [body] = fake.bodies("GetAllDataV2")
    assert body == {
        "fromStoreVersion": 0,
        "fromProductDetailVersion": 4_030_000_000,
        "fromProductVersion": 7,
        "pageSize": 50,
        "currentVisitorId": 10101,
    }
    assert set(batches) == {"stores", "product_details", "products"}
    [store] = batches["stores"].rows
    assert isinstance(store, Store) and store.name == "انبار مرکزی"
    details = batches["product_details"]
    assert [d.product_detail_id for d in details.rows] == [5]
    assert details.rows[0].price1 == 1500.0
    [bad] = details.rejected
    assert isinstance(bad, RejectedRow) and bad.row_version == 4_030_000_009
    assert bad.entity == "product_details" and "product_detail_id" in bad.error
    assert details.max_row_version == 4_030_000_009  # rejected rows count for the cursor
    assert batches["products"].rows == [] and batches["products"].max_row_version is None


async def test_v1_paths_when_v2_is_off() -> None:
    fake = FakeMahak()
    fake.on_data = lambda path, body: httpx.Response(
        200,
        json=envelope(
            {"Objects": {"Orders": {"Results": []}}} if path.startswith("Save") else {"Objects": {}}
        ),
    )
    async with client_for(fake, use_v2=False) as client:
        await client.get_all_data({"orders": 0})
        await client.save_all_data(SaveAllDataRequest(orders=[]))
    paths = [r.url.path for r in fake.requests]
    assert paths == ["/API/v3/Sync/LoginV2", "/API/v3/Sync/GetAllData", "/API/v3/Sync/SaveAllData"]


async def test_unknown_entity_is_refused_before_any_request() -> None:
    fake = FakeMahak()
    async with client_for(fake) as client:
        with pytest.raises(KeyError, match="unknown Mahak entity"):
            await client.get_all_data({"nope": 0})
    assert fake.requests == []


# --- SaveAllData -----------------------------------------------------------------------------


def _order_request() -> SaveAllDataRequest:
    return SaveAllDataRequest(
        orders=[
            Order(
                order_client_id=8_000_000_000_000_001, visitor_id=10101, person_id=3, order_type=201
            ),
            Order(
                order_client_id=8_000_000_000_000_002, visitor_id=10101, person_id=3, order_type=201
            ),
        ],
        order_details=[
            OrderDetail(
                order_detail_client_id=8_100_000_000_000_001,
                order_client_id=8_000_000_000_000_001,
                product_detail_id=5,
                store_id=1,
                price=1500,
                count1=2,
            )
        ],
    )


async def test_save_all_data_partial_failure_is_structured_data() -> None:
    fake = FakeMahak()
    fake.on_data = lambda path, body: httpx.Response(
        200,
        json={
            "Result": False,
            "Data": {
                "Objects": {
                    "Orders": {
                        "Results": [
                            {
                                "Result": True,
                                "Index": 1,
                                "EntityId": 900000001,
                                "EntityClientId": 8_000_000_000_000_001,
                                "RowVersion": 4_040_000_000,
                            },
                            {
                                "Result": False,
                                "Index": 2,
                                "Errors": [{"Property": "OrderId", "Error": ALREADY_REGISTERED}],
                            },
                        ]
                    },
                    "OrderDetails": {
                        "Results": [
                            {
                                "Result": False,
                                "Index": 1,
                                "Errors": [
                                    {
                                        "Property": "IncomeId,ExpenseId,ProductDetailId",
                                        "Error": "ProductDetailId or IncomeId or ExpenseId is required ",
                                    }
                                ],
                            },
                        ]
                    },
                    "People": {"Results": []},
                    "MahakPays": {"Results": []},
                }
            },
        },
    )
    async with client_for(fake) as client:
        result = await client.save_all_data(_order_request())
    [body] = fake.bodies("SaveAllDataV2")
    assert set(body) == {"orders", "orderDetails"}
    assert body["orders"][0]["orderClientId"] == 8_000_000_000_000_001
    assert body["orders"][0]["orderType"] == 201
    assert body["orderDetails"][0] == {
        "orderDetailClientId": 8_100_000_000_000_001,
        "orderClientId": 8_000_000_000_000_001,
        "productDetailId": 5,
        "storeId": 1,
        "price": 1500.0,
        "count1": 2.0,
        "deleted": False,
    }

    assert result.result is False
    ok = result.for_client_id("Orders", 8_000_000_000_000_001)
    assert ok is not None and ok.result and ok.entity_id == 900000001
    assert ok.row_version == 4_040_000_000
    failures = result.failures()
    assert [(f.collection, f.index, f.client_id, f.property) for f in failures] == [
        ("Orders", 2, 8_000_000_000_000_002, "OrderId"),
        ("OrderDetails", 1, 8_100_000_000_000_001, "IncomeId,ExpenseId,ProductDetailId"),
    ]
    assert [is_already_registered(f) for f in failures] == [True, False]
    assert failures[1].message.startswith("ProductDetailId or IncomeId")


def test_already_registered_detection_folds_arabic_letters_and_needs_order_id() -> None:
    from mahak_client import RecordFailure

    arabic = ALREADY_REGISTERED.replace("ی", "ي").replace("ک", "ك")
    assert is_already_registered(
        RecordFailure(collection="Orders", property="OrderId", message=arabic)
    )
    assert not is_already_registered(
        RecordFailure(collection="Orders", property="PersonId", message=ALREADY_REGISTERED)
    )
    assert not is_already_registered(
        RecordFailure(collection="Orders", property="OrderId", message="موجودی کافی نیست")
    )


async def test_save_all_data_is_never_retried() -> None:
    fake = FakeMahak()
    fake.on_data = lambda path, body: httpx.Response(503)
    async with client_for(fake) as client:
        with pytest.raises(MahakTransientError):
            await client.save_all_data(_order_request())
    assert len(fake.bodies("SaveAllDataV2")) == 1


async def test_save_all_data_refused_as_a_whole_is_an_error() -> None:
    fake = FakeMahak()
    fake.on_data = lambda path, body: httpx.Response(
        200, json={"Result": False, "Message": "visitor disabled", "Data": None}
    )
    async with client_for(fake) as client:
        with pytest.raises(MahakPermanentError, match="visitor disabled"):
            await client.save_all_data(_order_request())


# --- Disputes --------------------------------------------------------------------------------


async def test_dispute_calls_send_the_documented_bodies() -> None:
    fake = FakeMahak()

    def answer(path: str, body: dict[str, Any]) -> httpx.Response:
        if path == "SolveOrderDispute":
            return httpx.Response(
                200,
                json=envelope(
                    {
                        "Results": [
                            {
                                "OrderId": 900000001,
                                "OrderCode": 55,
                                "Registered": True,
                                "Imported": True,
                            }
                        ]
                    }
                ),
            )
        return httpx.Response(200, json=envelope(None))

    fake.on_data = answer
    async with client_for(fake) as client:  # no database id configured: taken from login
        outcome = await client.solve_order_dispute([OrderDisputeItem(id=900000001, code=55)])
        ok = await client.solve_dispute("product_details", [DisputeItem(id=5, rw=4_030_000_002)])
    assert ok is True
    assert fake.bodies("SolveOrderDispute") == [
        {"databaseId": 1234567, "disputeItems": [{"id": 900000001, "code": 55}]}
    ]
    assert fake.bodies("SolveDispute") == [
        {
            "databaseId": 1234567,
            "entityName": "ProductDetail",
            "disputeItems": [{"id": 5, "rw": 4_030_000_002}],
        }
    ]
    item = outcome.for_order(900000001)
    assert item is not None and item.is_registered and item.imported and item.desktop_code == 55


# --- Pager -----------------------------------------------------------------------------------


class FakeRows:
    """A GetAllData stand-in over (id, RowVersion) store rows with a chosen boundary reading."""

    def __init__(self, versions: list[int], *, inclusive: bool, cap: int | None = None) -> None:
        self.rows = [(i + 1, rv) for i, rv in enumerate(versions)]
        self.inclusive = inclusive
        self.cap = cap
        self.calls: list[tuple[int, int | None]] = []

    async def get_all_data(
        self, from_versions: Any, *, page_size: int | None = None
    ) -> dict[str, EntityBatch]:
        [(name, start)] = from_versions.items()
        self.calls.append((start, page_size))
        if len(self.calls) > 500:
            raise AssertionError("pager does not terminate")
        keep = [
            r
            for r in sorted(self.rows, key=lambda r: r[1])
            if (r[1] >= start if self.inclusive else r[1] > start)
        ]
        limits = [x for x in (page_size, self.cap) if x is not None]
        page = keep[: min(limits)] if limits else keep  # no pageSize and no cap: every row
        stores = [Store(store_id=i, row_version=rv) for i, rv in page]
        return {
            name: EntityBatch(
                entity=name, rows=stores, max_row_version=max((rv for _, rv in page), default=None)
            )
        }


async def _drain(fake: FakeRows, start: int, size: int, **kw: Any) -> list[EntityBatch]:
    return [b async for b in iter_pages(fake, "stores", start, size, **kw)]


def _check_drain(fake: FakeRows, batches: list[EntityBatch], start: int) -> None:
    got = [r.store_id for b in batches for r in b.rows]
    want = sorted(i for i, rv in fake.rows if rv > start)
    assert len(got) == len(set(got)), "a row was yielded twice"
    assert sorted(got) == want, "a row was lost"
    delivered: set[int] = set()
    for b in batches:
        assert b.rows, "empty batch"
        delivered |= {r.store_id for r in b.rows}
        # Persisting this batch's cursor must be safe: nothing at or below it is still missing.
        assert {i for i, rv in fake.rows if start < rv <= b.max_row_version} <= delivered


@pytest.mark.parametrize("inclusive", [True, False], ids=["inclusive", "exclusive"])
async def test_pager_equal_versions_across_a_page_boundary(inclusive: bool) -> None:
    fake = FakeRows([10, 11, 12, 12, 12, 13, 14], inclusive=inclusive)
    batches = await _drain(fake, 0, 3)
    _check_drain(fake, batches, 0)
    assert [r.row_version for r in batches[0].rows] == [10, 11]  # the cut run of 12 waits


@pytest.mark.parametrize("inclusive", [True, False], ids=["inclusive", "exclusive"])
async def test_pager_page_full_of_equal_versions_grows_the_page(inclusive: bool) -> None:
    fake = FakeRows([5] + [7] * 9 + [8], inclusive=inclusive)
    batches = await _drain(fake, 0, 4)
    _check_drain(fake, batches, 0)
    # (An inclusive server's answer that resends the run at the bound plus one new run may
    # have been cut by a silent cap; that one is read again without pageSize: issue 12.)
    assert max(size for _, size in fake.calls if size is not None) == 16


async def test_pager_reads_a_run_longer_than_the_largest_page_without_page_size() -> None:
    # Issue 12: rather than give up, a full page of one run at `max_page_size` is re-read
    # without pageSize.
    fake = FakeRows([7] * 30, inclusive=True)
    stats = PagerStats()
    batches = [b async for b in iter_pages(fake, "stores", 0, 4, max_page_size=16, stats=stats)]
    _check_drain(fake, batches, 0)
    assert fake.calls[-1] == (6, None) and stats.reread == 16


async def test_pager_fails_clearly_instead_of_re_reading_when_told_to() -> None:
    fake = FakeRows([7] * 30, inclusive=True)
    with pytest.raises(MahakProtocolError, match="stores: .*RowVersion 7"):
        await _drain(fake, 0, 4, max_page_size=16, reread=False)


@pytest.mark.parametrize("inclusive", [True, False], ids=["inclusive", "exclusive"])
async def test_pager_resumes_from_a_cursor_without_redelivering_it(inclusive: bool) -> None:
    fake = FakeRows([4_030_000_000 + v for v in (1, 2, 3, 4, 5)], inclusive=inclusive)
    batches = await _drain(fake, 4_030_000_003, 10)
    assert [r.row_version for b in batches for r in b.rows] == [4_030_000_004, 4_030_000_005]
    assert fake.calls[0] == (4_030_000_003, 10)


async def test_pager_reads_past_held_rows_without_guessing_the_boundary() -> None:
    # Resuming at a cursor shared by more rows than a page holds: an inclusive server keeps
    # sending those held rows first. Issue 12: the pager no longer infers the reading from
    # rows at the bound (an exclusive server may send one too); it grows the page, then reads
    # without pageSize, and never asks from `cursor + 1`.
    fake = FakeRows([7] * 10 + [8, 9], inclusive=True)
    stats = PagerStats()
    batches = [b async for b in iter_pages(fake, "stores", 7, 4, max_page_size=8, stats=stats)]
    assert [r.row_version for b in batches for r in b.rows] == [8, 9]
    assert [start for start, _ in fake.calls] == [7, 7, 7, 8]
    assert stats.dropped > 0  # the held rows at the cursor, left out and counted


async def test_pager_hands_a_late_row_below_the_bound_to_the_store() -> None:
    # Issue 12: a row below the bound (a late commit an odd server sends) was dropped as
    # "already held"; the store's newer-only upsert must decide. The capped page fails the
    # "nothing below the bound" check, so it is re-read without pageSize, and counted.
    class Late(FakeRows):
        async def get_all_data(
            self, from_versions: Any, *, page_size: int | None = None
        ) -> dict[str, EntityBatch]:
            out = await super().get_all_data(from_versions, page_size=page_size)
            [(name, start)] = from_versions.items()
            if start == 7:
                out[name].rows.insert(0, Store(store_id=99, row_version=6))
            return out

    fake = Late([5, 6, 7, 7, 8], inclusive=False)
    stats = PagerStats()
    batches = [b async for b in iter_pages(fake, "stores", 7, 10, include_held=True, stats=stats)]
    assert sorted(r.store_id for b in batches for r in b.rows) == [5, 99]
    assert stats.reread == 2 and stats.below_bound == 1 and stats.dropped == 0
    assert fake.calls[:2] == [(7, 10), (7, None)]


async def test_pager_stops_after_one_request_when_nothing_changed() -> None:
    fake = FakeRows([1, 2, 3], inclusive=True)
    assert await _drain(fake, 3, 100) == []
    assert len(fake.calls) == 1


async def test_pager_survives_a_server_that_caps_the_page_silently() -> None:
    fake = FakeRows([1, 2, 3, 3, 4, 5, 6, 7, 8, 9], inclusive=False, cap=3)
    batches = await _drain(fake, 0, 100)
    _check_drain(fake, batches, 0)


async def test_pager_quarantined_rows_travel_with_their_page_once() -> None:
    class WithRejects(FakeRows):
        async def get_all_data(
            self, from_versions: Any, *, page_size: int | None = None
        ) -> dict[str, EntityBatch]:
            out = await super().get_all_data(from_versions, page_size=page_size)
            batch = out["stores"]
            batch.rejected.append(RejectedRow(entity="stores", raw={"x": 1}, error="bad"))
            if any(r.row_version == 2 for r in batch.rows):
                batch.rejected.append(
                    RejectedRow(entity="stores", raw={"StoreId": "?"}, error="bad", row_version=2)
                )
            return out

    fake = WithRejects([1, 2, 3, 4], inclusive=True)
    batches = [b async for b in iter_pages(fake, "stores", 0, 3)]
    rejected = [r for b in batches for r in b.rejected]
    assert sorted((r.row_version or 0) for r in rejected) == [0, 2]
    assert sorted(r.store_id for b in batches for r in b.rows) == [1, 2, 3, 4]


async def test_drain_pages_each_entity_from_its_own_cursor() -> None:
    class PerEntity:
        def __init__(self) -> None:
            self.servers = {
                "stores": FakeRows([1, 2, 3, 4, 5], inclusive=True),
                "pictures": FakeRows([7, 8, 9], inclusive=False),
            }

        async def get_all_data(
            self, from_versions: Any, *, page_size: int | None = None
        ) -> dict[str, EntityBatch]:
            [name] = from_versions
            return await self.servers[name].get_all_data(from_versions, page_size=page_size)

    fake = PerEntity()
    batches = [b async for b in drain(fake, {"stores": 2, "pictures": 0}, 2)]
    got = {(b.entity, r.store_id) for b in batches for r in b.rows}
    assert got == {
        ("stores", 3),
        ("stores", 4),
        ("stores", 5),
        ("pictures", 1),
        ("pictures", 2),
        ("pictures", 3),
    }
    entities = [b.entity for b in batches]
    assert entities == sorted(entities, key=["stores", "pictures"].index)  # mapping order


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
    database=None,
)
@given(
    versions=st.lists(st.integers(1, 25), max_size=60),
    inclusive=st.booleans(),
    page_size=st.integers(1, 8),
    start=st.integers(0, 10),
    cap_extra=st.none() | st.integers(0, 5),
)
async def test_pager_never_loses_or_repeats_a_row(
    versions: list[int], inclusive: bool, page_size: int, start: int, cap_extra: int | None
) -> None:
    # A silent server cap is tolerated as long as it exceeds two neighbouring runs of equal
    # versions (an inclusive server sends the run at the bound again with the next one).
    runs = [versions.count(v) for v in sorted(set(versions))]
    widest = max((a + b for a, b in zip(runs, runs[1:])), default=max(runs, default=0))
    cap = None if cap_extra is None else widest + 1 + cap_extra
    fake = FakeRows(versions, inclusive=inclusive, cap=cap)
    batches = await _drain(fake, start, page_size, max_page_size=64)
    _check_drain(fake, batches, start)
