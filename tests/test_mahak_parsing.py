"""Property tests of the envelope and row parsers.

Generated valid payloads (any key case, numbers as strings, 7-digit Iran-time timestamps,
Arabic letters and stray spaces in names, int64 RowVersions) must come back as exact typed
models; mangled ones (random JSON, truncated bytes, HTML, wrong types) may only ever raise
`MahakProtocolError` or `MahakPermanentError`: nothing else escapes to the caller.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic.alias_generators import to_camel, to_pascal

from mahak_client import ENTITIES, MahakPermanentError, MahakProtocolError
from mahak_client.envelope import (
    load_json,
    parse_get_all_data,
    parse_login,
    parse_save_all_data,
    parse_solve_order_dispute,
)
from mahak_client.models import TEHRAN  # naive server times are Asia/Tehran (tz database)

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ENDPOINT = "GetAllDataV2"
NAMES = sorted(ENTITIES)

# Names as Mahak desktop users type them: Arabic or Persian yeh/kaf, padded with spaces.
persian_words = st.lists(
    st.sampled_from(["كالا", "کالا", "يخچال", "یخچال", "مركز", "فروشگاه", "Samsung", "42"]),
    min_size=1,
    max_size=3,
).map(" ".join)
padded_names = st.tuples(
    st.sampled_from(["", " ", "  ", "\t"]), persian_words, st.sampled_from(["", " ", "   "])
).map("".join)
row_versions = st.integers(min_value=2**32 + 1, max_value=2**63 - 1)
timestamps = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31))


def _maybe_string(draw: Any, value: int | float) -> int | float | str:
    return draw(st.sampled_from([value, str(value)]))


@st.composite
def mahak_rows(draw: Any, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A wire row for `name` and the values the parsed model must hold."""
    spec = ENTITIES[name]
    fields = spec.model.model_fields
    style = draw(st.sampled_from([to_pascal, to_camel]))
    expected: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    for field_name, info in fields.items():
        if info.is_required():
            value = draw(st.integers(1, 2**31 - 1))
            raw[style(field_name)] = _maybe_string(draw, value)
            expected[field_name] = value
    rv = draw(row_versions)
    raw[style("row_version")] = _maybe_string(draw, rv)
    expected["row_version"] = rv
    deleted = draw(st.booleans())
    raw[style("deleted")] = draw(st.sampled_from([deleted, str(deleted).lower()]))
    expected["deleted"] = deleted
    if "name" in fields:
        name_value = draw(padded_names)
        raw[style("name")] = name_value
        expected["name"] = name_value.strip().replace("ي", "ی").replace("ك", "ک")
    if "create_date" in fields:
        when = draw(timestamps)
        digits = f"{draw(st.integers(0, 9_999_999)):07d}"
        raw[style("create_date")] = when.strftime("%Y-%m-%dT%H:%M:%S.") + digits
        expected["create_date"] = when.replace(microsecond=int(digits[:6]), tzinfo=TEHRAN)
    if "price1" in fields:
        price = draw(st.integers(0, 10**12))
        raw[style("price1")] = _maybe_string(draw, price)
        expected["price1"] = float(price)
    raw[draw(st.sampled_from(["SomeNewColumn", "dataHash2"]))] = draw(st.none() | st.integers())
    return raw, expected


@st.composite
def valid_payloads(draw: Any) -> tuple[dict[str, Any], list[str], dict[str, list[dict[str, Any]]]]:
    requested = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    objects: dict[str, Any] = {}
    expected: dict[str, list[dict[str, Any]]] = {}
    for name in requested:
        collection = ENTITIES[name].collection
        key = draw(
            st.sampled_from(
                [
                    collection,
                    collection.lower(),
                    collection[0].lower() + collection[1:],
                    collection.upper(),
                ]
            )
        )
        if draw(st.integers(0, 5)) == 0:
            objects[key] = None  # Mahak's "nothing requested/nothing new"
            expected[name] = []
            continue
        pairs = draw(st.lists(mahak_rows(name), max_size=4))
        objects[key] = [raw for raw, _ in pairs]
        expected[name] = [exp for _, exp in pairs]
    objects["companies"] = None
    objects["Mahakpays"] = []
    payload = {"Result": True, "Code": 0, "Message": None, "Data": {"Objects": objects}}
    return payload, requested, expected


@SETTINGS
@given(valid_payloads())
def test_valid_payloads_parse_exactly(case: Any) -> None:
    payload, requested, expected = case
    body = json.dumps(payload, ensure_ascii=False).encode()
    batches = parse_get_all_data(ENDPOINT, load_json(ENDPOINT, body, status=200), requested)
    assert set(batches) == set(requested)
    for name in requested:
        batch = batches[name]
        assert batch.rejected == [], batch.rejected
        assert len(batch.rows) == len(expected[name])
        for row, want in zip(batch.rows, expected[name], strict=True):
            assert isinstance(row, ENTITIES[name].model)
            for attr, value in want.items():
                assert getattr(row, attr) == value, (name, attr)
        versions = [w["row_version"] for w in expected[name]]
        assert batch.max_row_version == (max(versions) if versions else None)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def _mangle(draw: Any, value: Any, depth: int = 0) -> Any:
    """Replace one randomly chosen node of a JSON document with random JSON."""
    if draw(st.integers(0, 3)) == 0 or depth > 6:
        return draw(json_values)
    if isinstance(value, dict) and value:
        key = draw(st.sampled_from(sorted(value)))
        return {**value, key: _mangle(draw, value[key], depth + 1)}
    if isinstance(value, list) and value:
        i = draw(st.integers(0, len(value) - 1))
        return [*value[:i], _mangle(draw, value[i], depth + 1), *value[i + 1 :]]
    return draw(json_values)


@st.composite
def mangled_bodies(draw: Any) -> tuple[bytes, list[str]]:
    payload, requested, _ = draw(valid_payloads())
    how = draw(st.sampled_from(["node", "random", "truncate", "html", "bytes"]))
    if how == "node":
        body = json.dumps(_mangle(draw, payload), ensure_ascii=False).encode()
    elif how == "random":
        body = json.dumps(draw(json_values)).encode()
    elif how == "truncate":
        full = json.dumps(payload, ensure_ascii=False).encode()
        body = full[: draw(st.integers(0, max(len(full) - 1, 0)))]
    elif how == "html":
        body = draw(
            st.sampled_from(
                [
                    b"<!DOCTYPE html><html><body>Service Unavailable</body></html>",
                    b"  <html><head><title>502 Bad Gateway</title></head></html>",
                ]
            )
        )
    else:
        body = draw(st.binary(max_size=64))
    return body, requested


def _only_mahak_errors(fn: Any) -> Any:
    try:
        return fn()
    except (MahakProtocolError, MahakPermanentError):
        return None


@SETTINGS
@given(mangled_bodies())
def test_mangled_get_all_data_raises_only_mahak_errors(case: tuple[bytes, list[str]]) -> None:
    body, requested = case
    batches = _only_mahak_errors(
        lambda: parse_get_all_data(ENDPOINT, load_json(ENDPOINT, body, status=200), requested)
    )
    if batches is not None:
        # Whatever survived is typed: models or quarantined rows, and a cursor to match.
        for name, batch in batches.items():
            for row in batch.rows:
                assert isinstance(row, ENTITIES[name].model)
            versions = [r.row_version for r in batch.rows] + [
                r.row_version for r in batch.rejected if r.row_version is not None
            ]
            assert batch.max_row_version == (max(versions) if versions else None)


@SETTINGS
@given(json_values)
def test_random_json_through_every_parser(payload: Any) -> None:
    for parse in (
        lambda: parse_get_all_data(ENDPOINT, payload, NAMES),
        lambda: parse_login("LoginV2", payload),
        lambda: parse_save_all_data("SaveAllDataV2", payload),
        lambda: parse_solve_order_dispute("SolveOrderDispute", payload),
    ):
        _only_mahak_errors(parse)


@st.composite
def save_payloads(draw: Any) -> dict[str, Any]:
    def result() -> dict[str, Any]:
        ok = draw(st.booleans())
        item: dict[str, Any] = {"Result": ok, "Index": draw(st.integers(1, 5))}
        if ok:
            item["EntityId"] = draw(st.integers(1, 10**9))
            item["RowVersion"] = draw(row_versions)
        else:
            item["Errors"] = [{"Property": "OrderId", "Error": "ثبت شده؛ ویرایش ممکن نیست"}]
        if draw(st.booleans()):
            item["EntityClientId"] = draw(st.integers(1, 2**63 - 1))
        return item

    objects = {
        name: {"Results": [result() for _ in range(draw(st.integers(0, 3)))]}
        for name in ("Orders", "OrderDetails", "People", "Companies", "MahakPays")
    }
    return {"Result": draw(st.booleans()), "Data": {"Objects": objects}}


@SETTINGS
@given(save_payloads(), st.data())
def test_save_results_parse_and_mangled_ones_raise_only_mahak_errors(
    payload: Any, data: Any
) -> None:
    result = parse_save_all_data("SaveAllDataV2", payload)
    sent = [r for c in payload["Data"]["Objects"].values() for r in c["Results"]]
    assert sum(len(v) for v in result.collections.values()) == len(sent)
    assert len(result.failures()) == sum(1 for r in sent if not r["Result"])
    for item in result.results("Orders"):
        if item.result:
            assert item.row_version is not None and item.row_version > 2**32

    mangled = _mangle(data.draw, payload)
    _only_mahak_errors(lambda: parse_save_all_data("SaveAllDataV2", mangled))
    full = json.dumps(payload).encode()
    cut = full[: data.draw(st.integers(0, len(full) - 1))]
    _only_mahak_errors(
        lambda: parse_save_all_data("SaveAllDataV2", load_json("SaveAllDataV2", cut, status=200))
    )


def test_deeply_nested_json_is_a_protocol_error_not_a_crash() -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(MahakProtocolError, match="malformed"):
        load_json(ENDPOINT, body, status=200)


def test_int64_row_versions_survive_exactly() -> None:
    big = 2**63 - 7
    payload = {
        "Result": True,
        "Data": {
            "Objects": {
                "Stores": [
                    {"StoreId": 1, "RowVersion": big},
                    {"StoreId": 2, "RowVersion": str(big - 1)},
                    {"StoreId": 3, "RowVersion": 4030000000.0},
                ]
            }
        },
    }
    batch = parse_get_all_data(
        ENDPOINT, load_json(ENDPOINT, json.dumps(payload).encode()), ["stores"]
    )["stores"]
    assert [r.row_version for r in batch.rows] == [big, big - 1, 4_030_000_000]
    assert batch.max_row_version == big


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("ProductDetailId", True),  # a boolean where an id belongs is not the number 1
        ("Price1", "NaN"),  # a NaN price would be stored as one
        ("Price1", float("inf")),  # written as `Infinity`, which Python's JSON reader accepts
        ("Price1", False),
    ],
)
def test_values_no_mahak_row_can_hold_quarantine_the_row(column: str, value: Any) -> None:
    row = {"ProductDetailId": 7, "ProductId": 1, "RowVersion": 4_030_000_001, column: value}
    body = json.dumps({"Result": True, "Data": {"Objects": {"ProductDetails": [row]}}}).encode()
    batch = parse_get_all_data(ENDPOINT, load_json(ENDPOINT, body), ["product_details"])[
        "product_details"
    ]
    [rejected] = batch.rejected
    assert batch.rows == [] and rejected.row_version == batch.max_row_version == 4_030_000_001


def test_a_rejected_row_moves_the_cursor_only_by_an_int64_row_version() -> None:
    rows = [{"StoreId": "x", "RowVersion": 2**64}, {"StoreId": "y", "RowVersion": True}]
    batch = parse_get_all_data(
        ENDPOINT, {"Result": True, "Data": {"Objects": {"Stores": rows}}}, ["stores"]
    )["stores"]
    assert [r.row_version for r in batch.rejected] == [None, None]
    assert batch.max_row_version is None


def test_a_logical_delete_with_a_null_required_number_still_deletes():
    # Issue 12 / shared/mahak-api.md §10 (e): the bad value is quarantined, not the delete.
    payload = {
        "Result": True,
        "Data": {
            "Objects": {
                "ProductDetails": [
                    {
                        "ProductDetailId": 5,
                        "ProductId": 9,
                        "Deleted": True,
                        "Price1": None,
                        "RowVersion": 4_000_000_001,
                    },
                    {
                        "ProductDetailId": 6,
                        "ProductId": 9,
                        "Deleted": False,
                        "Price1": None,
                        "RowVersion": 4_000_000_002,
                    },
                ]
            }
        },
    }
    [batch] = parse_get_all_data("GetAllDataV2", payload, ["product_details"]).values()
    assert [(r.product_detail_id, r.deleted) for r in batch.rows] == [(5, True)]
    assert [r.mahak_id for r in batch.rejected] == [6]
    assert batch.max_row_version == 4_000_000_002


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: past 64 bits too
    | st.integers(2**62, 2**66).map(lambda i: -i)
    | st.floats()  # NaN and infinities too (Python's JSON writes and reads them)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=12,
)


@SETTINGS
@given(json_values, st.booleans(), st.booleans())
def test_bodies_read_as_the_stdlib_reads_them(value: Any, bom: bool, ascii_only: bool) -> None:
    """Answers are decoded by msgspec (issue 16) where it reads them as `json.loads` would,
    and by `json.loads` otherwise: the values are the same either way, types included."""
    body = (b"\xef\xbb\xbf" if bom else b"") + json.dumps(value, ensure_ascii=ascii_only).encode()
    expected = json.loads(body.decode("utf-8-sig"))
    # json.dumps tells 1 from 1.0 and writes NaN as NaN: equal dumps, equal values and types.
    assert json.dumps(load_json(ENDPOINT, body)) == json.dumps(expected)


@pytest.mark.parametrize(
    "body",
    [b'"\\ud800"', b"-9223372036854775809", b"18446744073709551616", b"1e400", b"[NaN]"],
)
def test_values_msgspec_refuses_are_read_as_before(body: bytes) -> None:
    assert json.dumps(load_json(ENDPOINT, body)) == json.dumps(json.loads(body))


def test_each_key_set_of_a_page_matches_its_own_fields_first_spelling_first() -> None:
    """Keys are matched once per distinct key set (issue 16): rows of one page in different
    casings, with a field spelled twice (the first spelling wins, as key by key), and more
    distinct key sets than are remembered, all parse as if each row were folded alone."""
    rows: list[dict[str, Any]] = [
        {"ProductDetailId": 1, "ProductId": 1, "RowVersion": 10, "Price1": 5},
        {"productDetailId": 2, "productId": 1, "rowVersion": 11, "price1": 6},
        {"PRODUCT_DETAIL_ID": 3, "product_id": 1, "RowVersion": 12, "Price1": 7, "price1": 8},
        {"ProductDetailId": 4, "ProductId": 1, "RowVersion": 13, "price1": 9, "Price1": 10},
        {"PRODUCT_DETAIL_ID": 5, "product_id": 1, "RowVersion": 14, "Price1": 11, "price1": 12},
    ]
    expected = [(1, 5.0), (2, 6.0), (3, 7.0), (4, 9.0), (5, 11.0)]
    for i in range(300):  # each with an unknown column of its own: a new key set each
        rows.append({"ProductDetailId": 100 + i, "ProductId": 1, f"Extra{i}": i, "Price1": i})
        expected.append((100 + i, float(i)))
    body = json.dumps({"Result": True, "Data": {"Objects": {"ProductDetails": rows}}}).encode()
    for _ in range(2):  # the second time with key sets seen before
        batch = parse_get_all_data(ENDPOINT, load_json(ENDPOINT, body), ["product_details"])[
            "product_details"
        ]
        assert not batch.rejected
        assert [(r.product_detail_id, r.price1) for r in batch.rows] == expected
        assert batch.rows[0].model_fields_set == {
            "product_detail_id",
            "product_id",
            "row_version",
            "price1",
        }
