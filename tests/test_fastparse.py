"""The strict fast path of GetAllData (issue 16, `mahak_client/fastparse.py`) against the
lenient path it stands in for.

For every entity, generated answers of complete rows (every model field, Mahak's spelling,
the unknown columns Mahak adds), clean or with the odd value the lenient path reads its own
way (numbers as strings, nulls, other date spellings, Arabic letters and stray spaces, big
integers, fractions of 1-9 digits): whenever the fast path answers, its rows are exactly the
lenient path's (values, their types, time zones, fields set, JSON dump); a clean answer always
takes it; and through the client, an answer the fast path leaves alone is parsed as before
(quarantine included).
"""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mahak_client import ENTITIES
from mahak_client.envelope import load_json, parse_get_all_data
from mahak_client.fastparse import _NOT_NORMAL, parse_get_all_data_fast, plan
from mahak_client.lean import parse_get_all_data_lean, parse_lean
from mahak_client.models import SyncedRow

ENDPOINT = "GetAllDataV2"
NAMES = sorted(ENTITIES)
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Columns Mahak sends that no model reads (bounded: the fast path learns each once).
EXTRAS = ["Serials", "Properties2", "ProductTIN", "CreateSyncId", "ExtraInfo"]


def _wire(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def plan_of(entity: str) -> Any:
    strict = plan(entity)
    assert strict is not None, f"{entity} has no fast path"
    return strict


def wire_name(entity: str, field: str) -> str:
    return "UnitTIN" if (entity, field) == ("units", "unit_tin") else _wire(field)


texts = st.text(
    alphabet=st.sampled_from(list("abc کالا يخچال مركز ىك\t\n") + ["\u00a0", "\u2003", "x"]),
    max_size=8,
)
clean_dates = st.builds(
    lambda when, digits, sep: when.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + digits,
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2099, 12, 31)),
    st.sampled_from(["", ".5", ".25", ".616899", ".6168995", ".2345036", ".123456789"]),
    st.sampled_from(["T", "T", " "]),
)
odd_dates = st.sampled_from(
    [
        "",
        "2025-10-04",
        "2025-10-04T15:18",
        "2025-10-04T15:18:38Z",
        "2025-10-04T15:18:38+03:30",
        "2025-10-04t15:18:38",
        "2025-13-04T15:18:38",
        "2025-10-04T24:00:00",
        "۲۰۲۵-10-04T15:18:38",
        "20251004T151838",
        " 2025-10-04T15:18:38",
    ]
)


def values(kind: str, optional: bool, odd: bool) -> st.SearchStrategy[Any]:
    none = st.none() if optional else st.nothing()
    clean: dict[str, st.SearchStrategy[Any]] = {
        "int": st.integers(-(2**63), 2**63 - 1) | st.integers(-(2**70), 2**70),
        "float": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**20), 10**20),
        "bool": st.booleans(),
        "str": st.text(max_size=6),
        "text": texts | st.none(),
        "date": clean_dates,
    }
    strategy = clean[kind] | none
    if not odd:
        return strategy
    odd_values = st.sampled_from(["12", " 7 ", "1,500.5", "true", "", "x", 3.0, 1e300, True])
    odd_values |= st.none() | odd_dates
    # One value in twelve is odd: most rows stay clean, so both paths are compared often.
    return st.integers(0, 11).flatmap(lambda i: odd_values if i == 0 else strategy)


@st.composite
def entity_rows(draw: Any, entity: str, odd: bool) -> list[dict[str, Any]]:
    strict = plan_of(entity)
    rows = []
    for _ in range(draw(st.integers(0, 3))):
        row: dict[str, Any] = {}
        for field, (kind, optional) in zip(strict.names, strict.kinds, strict=True):
            row[wire_name(entity, field)] = draw(values(kind, optional, odd))
        for extra in draw(st.lists(st.sampled_from(EXTRAS), max_size=2, unique=True)):
            row[extra] = draw(st.none() | st.integers() | st.lists(st.integers(), max_size=2))
        order = draw(st.permutations(list(row)))
        rows.append({key: row[key] for key in order})
    return rows


@st.composite
def answers(draw: Any, entities: list[str], odd: bool) -> bytes:
    """One GetAllData answer holding a list for each of `entities`."""
    objects = {ENTITIES[e].collection: draw(entity_rows(e, odd)) for e in entities}
    payload = {"Result": True, "Code": 0, "Message": None, "Data": {"Objects": objects}}
    return json.dumps(payload, ensure_ascii=draw(st.booleans())).encode()


def typed(row: SyncedRow) -> list[tuple[str, type, Any, Any]]:
    """A row's values with their types and time zones: `1 == 1.0` must not pass."""
    out = []
    for key, value in row.__dict__.items():
        zone = value.tzinfo if isinstance(value, datetime) else None
        out.append((key, type(value), value, zone))
    return out


def assert_same(fast: Any, slow: Any) -> None:
    assert not slow.rejected
    assert [typed(r) for r in fast.rows] == [typed(r) for r in slow.rows]
    assert [type(r) for r in fast.rows] == [type(r) for r in slow.rows]
    assert [r.model_fields_set for r in fast.rows] == [r.model_fields_set for r in slow.rows]
    assert [r.model_dump_json() for r in fast.rows] == [r.model_dump_json() for r in slow.rows]
    assert fast.max_row_version == slow.max_row_version


@SETTINGS
@given(data=st.data())
def test_clean_answers_take_the_fast_path_and_equal_the_lenient_one(data: st.DataObject) -> None:
    body = data.draw(answers(NAMES, odd=False))
    slow = parse_get_all_data(ENDPOINT, load_json(ENDPOINT, body), NAMES)
    fast = parse_get_all_data_fast(body, NAMES)
    assert fast is not None, "a clean answer went the lenient way"
    assert list(fast) == NAMES
    for entity in NAMES:
        assert_same(fast[entity], slow[entity])


@SETTINGS
@given(data=st.data())
def test_whatever_the_fast_path_takes_equals_the_lenient_path(data: st.DataObject) -> None:
    entities = data.draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    body = data.draw(answers(entities, odd=True))
    slow = parse_get_all_data(ENDPOINT, load_json(ENDPOINT, body), entities)
    fast = parse_get_all_data_fast(body, entities)
    if fast is not None:
        for entity in entities:
            assert_same(fast[entity], slow[entity])


@SETTINGS
@given(data=st.data())
def test_lean_rows_parsed_a_part_at_a_time_equal_the_lenient_path(data: st.DataObject) -> None:
    """A reconciliation's rows (`lean.parse_lean`, answers without pageSize) go through the
    fast path a part at a time: the same models as the usual parse, clean or odd."""
    entities = data.draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    body = data.draw(answers(entities, odd=data.draw(st.booleans())))
    usual = parse_get_all_data(ENDPOINT, load_json(ENDPOINT, body), entities)
    lean = parse_get_all_data_lean(ENDPOINT, body, entities)
    for entity in entities:
        parts = lean[entity]
        parsed = parse_lean(entity, [*parts.rows, *parts.rejected])
        want = usual[entity]
        assert [typed(r) for r in parsed.rows] == [typed(r) for r in want.rows]
        assert [r.model_dump() for r in parsed.rejected] == [r.model_dump() for r in want.rejected]
        assert parsed.max_row_version == want.max_row_version


def test_answers_the_fast_path_leaves_alone() -> None:
    """Another envelope, a second spelling of a field or of the collection, a missing column,
    a row the lenient path quarantines: all left to the lenient path (None)."""
    row = {wire_name("stores", f): 1 for f in plan_of("stores").names}
    row.update(Name="x", Comment=None, Deleted=False)
    good = {"Result": True, "Data": {"Objects": {"Stores": [row]}}}
    assert parse_get_all_data_fast(json.dumps(good).encode(), ["stores"]) is not None
    assert parse_get_all_data_fast(json.dumps(good).encode(), ["stores", "units"]) is not None
    variants: list[Any] = [
        {"Result": "true", "Data": good["Data"]},
        {"result": True, "Data": good["Data"]},
        {"Result": False, "Data": good["Data"]},
        {"Result": True, "Data": {"objects": {"Stores": [row]}}},
        {"Result": True, "Data": {"Objects": {"stores": [row]}}},
        {"Result": True, "Data": {"Objects": {"Stores": [{**row, "storeId": 2}]}}},
        {"Result": True, "Data": {"Objects": {"Stores": [{**row, "StoreId": "2"}]}}},
        {"Result": True, "Data": {"Objects": {"Stores": [{**row, "RowVersion": None}]}}},
        {"Result": True, "Data": {"Objects": {"Stores": [{**row, "StoreId": None}]}}},
        {"Result": True, "Data": {"Objects": {"Stores": {"StoreId": 1}}}},
        {"Result": True, "Data": {"Objects": {"Stores": [row, 5]}}},
        {
            "Result": True,
            "Data": {"Objects": {"Stores": [{k: v for k, v in row.items() if k != "Stock"}]}},
        },
    ]
    for payload in variants:
        assert parse_get_all_data_fast(json.dumps(payload).encode(), ["stores"]) is None, payload
    assert parse_get_all_data_fast(b"\xef\xbb\xbf" + json.dumps(good).encode(), ["stores"]) is None
    assert parse_get_all_data_fast(b"<html>", ["stores"]) is None


ODD_VALUES: list[Any] = [
    "12",
    " 7 ",
    "1,500.5",
    "true",
    "1",
    "",
    "  ",
    "x",
    3.0,
    -0.0,
    1e300,
    2**64,
    True,
    None,
    [],
    {},
    "2025-10-04",
    "2025-10-04T15:18",
    "2025-10-04T15:18:38Z",
    "2025-10-04T15:18:38+03:30",
    "2025-10-04T15:18:38.",
    "2025-10-04t15:18:38",
    "2025-10-04x15:18:38",
    "2025-13-04T15:18:38",
    "2025-10-04T24:00:00",
    "2025-10-04T15:18:60",
    "\u06f2\u06f0\u06f2\u06f5-10-04T15:18:38",
    "20251004T151838",
    " 2025-10-04T15:18:38",
    "2025-10-04T15:18:38 ",
    "2025-10-04T15:18:38.1234567890123",
    "2022-03-22T00:30:00",
    " \u0643\u0627\u0644\u0627 ",
]


@pytest.mark.parametrize("entity", ["products", "orders", "person_addresses", "settings"])
def test_each_odd_value_in_each_column_is_left_alone_or_read_alike(entity: str) -> None:
    """Every column of a clean row given each odd value in turn: the fast path answers None
    (the lenient path reads the row, or quarantines it) or exactly what the lenient path
    reads."""
    strict = plan_of(entity)
    sample = {
        "int": 7,
        "float": 2.5,
        "bool": False,
        "str": "s",
        "text": "t",
        "date": "2025-10-04T15:18:38.2345036",
    }
    clean = {
        wire_name(entity, f): sample[kind]
        for f, (kind, _optional) in zip(strict.names, strict.kinds, strict=True)
    }
    collection = ENTITIES[entity].collection
    taken = 0
    for key in clean:
        for value in ODD_VALUES:
            row = {**clean, key: value}
            payload = {"Result": True, "Data": {"Objects": {collection: [clean, row]}}}
            body = json.dumps(payload).encode()
            fast = parse_get_all_data_fast(body, [entity])
            if fast is not None:
                taken += 1
                slow = parse_get_all_data(ENDPOINT, load_json(ENDPOINT, body), [entity])
                assert_same(fast[entity], slow[entity])
    assert taken  # some odd values are clean for some columns (None where optional, ...)


def test_null_and_missing_lists_are_empty_batches() -> None:
    body = json.dumps({"Result": True, "Data": {"Objects": {"Stores": None}}}).encode()
    batches = parse_get_all_data_fast(body, ["stores", "units"])
    assert batches is not None
    assert batches == parse_get_all_data(ENDPOINT, load_json(ENDPOINT, body), ["stores", "units"])


def test_the_text_check_sees_every_character_strip_removes() -> None:
    """`_NOT_NORMAL` decides a text column needs no `normalize_text`: it must match wherever
    `str.strip()` would remove a character (Python's `\\s` and `str.isspace` agree)."""
    every = (chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF)
    spaces = [c for c in every if c.isspace()]
    assert spaces == [c for c in map(chr, range(sys.maxunicode + 1)) if re.fullmatch(r"\s", c)]
    for c in spaces:
        for value in (c + "a", "a" + c, c):
            assert value.strip() != value
            assert _NOT_NORMAL.search(value), repr(value)
            assert _NOT_NORMAL.search("b\x00" + value + "\x00b"), repr(value)
