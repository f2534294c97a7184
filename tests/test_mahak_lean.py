"""Lean GetAllData parsing (`mahak_client.lean`, issue 16: memory): for any body, the lean
parse followed by `parse_lean` of its rows gives exactly what the usual parse gives (the same
models in the same order, the same quarantined rows, the same cursor), or the same kind of
error; and no row is parsed before it is asked for."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given

from mahak_client import ENTITIES, MahakPermanentError, MahakProtocolError
from mahak_client.envelope import load_json, parse_get_all_data
from mahak_client.lean import LeanRow, parse_get_all_data_lean, parse_lean
from mahak_client.models import EntityBatch
from tests.test_mahak_parsing import ENDPOINT, SETTINGS, mangled_bodies, valid_payloads

_ERRORS = (MahakProtocolError, MahakPermanentError)


def _outcome(parse: Any) -> dict[str, EntityBatch] | tuple[type[Exception], str]:
    try:
        result: dict[str, EntityBatch] = parse()
        return result
    except _ERRORS as exc:
        return type(exc), str(exc)


def _fingerprint(batch: EntityBatch) -> tuple[list[Any], list[str], int | None]:
    rejected = sorted(json.dumps(r.model_dump(mode="json"), sort_keys=True) for r in batch.rejected)
    return [row.model_dump() for row in batch.rows], rejected, batch.max_row_version


def _same_as_usual(body: bytes, requested: list[str]) -> dict[str, EntityBatch] | None:
    usual = _outcome(
        lambda: parse_get_all_data(
            ENDPOINT, load_json(ENDPOINT, body, status=200), requested, status=200
        )
    )
    lean = _outcome(lambda: parse_get_all_data_lean(ENDPOINT, body, requested, status=200))
    if isinstance(usual, tuple) or isinstance(lean, tuple):
        assert lean == usual, (lean, usual)
        return None
    assert set(lean) == set(usual)
    for name, batch in lean.items():
        assert batch.max_row_version == usual[name].max_row_version, name
        parsed = parse_lean(name, [*batch.rows, *batch.rejected])
        assert _fingerprint(parsed) == _fingerprint(usual[name]), name
    return lean


@SETTINGS
@given(valid_payloads())
def test_valid_answers_parse_leanly_to_the_same_rows(case: Any) -> None:
    payload, requested, _ = case
    lean = _same_as_usual(json.dumps(payload, ensure_ascii=False).encode(), requested)
    assert lean is not None
    for name, batch in lean.items():
        for row in batch.rows:
            # Only a row without a readable id (valid, but unstorable) is parsed at once.
            mahak_id = getattr(row, ENTITIES[name].id_field)
            assert isinstance(row, LeanRow) == (mahak_id is not None), row


@SETTINGS
@given(mangled_bodies())
def test_mangled_answers_parse_leanly_to_the_same_rows_or_the_same_error(
    case: tuple[bytes, list[str]],
) -> None:
    _same_as_usual(*case)


@pytest.mark.parametrize(
    "rows",
    [
        '[{"StoreId": 5, "RowVersion": 9, "Name": "a"}, {"StoreId": "x", "RowVersion": 10}]',
        '[{"StoreId": 5, "RowVersion": null}, {"storeid": 6, "rowversion": "11"}]',
        "null",
        "7",
        "[1]",
    ],
)
def test_odd_lists_parse_leanly_to_the_same_rows_or_the_same_error(rows: str) -> None:
    body = f'{{"Result": true, "Data": {{"Objects": {{"Stores": {rows}}}}}}}'.encode()
    _same_as_usual(body, ["stores"])


def test_a_refusal_is_read_with_its_message_from_data() -> None:
    body = (
        b'{"Result": false, "Data": {"Objects": {"Stores": []}, '
        b'"ErrorMessage": "database locked", "ErrorCode": 7}}'
    )
    with pytest.raises(MahakPermanentError, match="database locked"):
        parse_get_all_data_lean(ENDPOINT, body, ["stores"], status=200)
    _same_as_usual(body, ["stores"])
