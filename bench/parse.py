"""Parsing GetAllDataV2 answers: the client's rows/s beside plain pydantic on the same bytes.

    .venv/bin/python -m bench.parse [--rows 5000,100000] [--repeat 3] [--quick]

For each size, one answer of that many ProductDetails rows, encoded as the simulator sends it
(PascalCase, LIVE's columns and values), is parsed from its bytes by:
  floor   plain pydantic: one model for the whole envelope, validated from the JSON bytes
          (`model_validate_json`), fields with exact PascalCase aliases and plain types: no
          case folding, no leniency, no per-row rejection. What pydantic alone costs.
  before  the peer: decoding and key matching as they were before issue 16, stdlib
          `json.loads` then every key of every row folded (`fold_key`) and looked up; the
          field validators are today's (issue 16 made them cheaper for plain ints and
          Mahak's usual date spelling), so this isolates what decoding and matching cost.
  lenient the lenient path (`envelope.load_json` + `envelope.parse_get_all_data`): the same
          checks and per-row rejection, msgspec decoding, keys matched once per key set.
          What the client does with an answer the fast path leaves alone.
  client  what the client does with this (clean) answer: the strict fast path
          (`fastparse.parse_get_all_data_fast`, issue 16): msgspec straight from the bytes
          into strict structs, text and dates a column at a time, the same models built
          without validating again; the lenient path only for what it refuses.
Figures are rows/s of CPU time (the process's, so that other work on a shared machine does
not count; parsing is single-threaded), median of `--repeat`, with client / floor,
client / lenient and client / before. `--quick` (500 and 2000 rows, one repeat) is the smoke
test.

Where the lenient path's time goes (2-core box shared with other work, CPU ms per 5000-row
answer, noisy):
  decoding ~12 (msgspec; `json.loads` ~25-55), matching keys ~9 (one dict per row; key by
  key it was ~40), the lenient field validators ~35 (17 Python calls per row: the lenient
  int/float/bool/date types; pydantic with plain types on the same dicts takes ~34 for
  everything else), keeping 5000 models alive (allocation, GC) the rest. The fast path
  (the client column) is that next step: per 5000-row answer ~6 ms decoding into strict
  structs, ~4 ms the dates (`fromisoformat`, then `combine` with Tehran's zone: `replace`
  costs 7x more), ~10 ms building the 5000 models (one dict and four slot writes each).
The floor's rate per row drops at 100k rows (70 MB): holding every row at once costs; a
100k-row answer peaks near 500 MB of Python objects while parsed, so page sizes stay bounded.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mahak_client.envelope import load_json, parse_get_all_data, parse_row
from mahak_client.fastparse import parse_get_all_data_fast
from mahak_client.models import ENTITIES, ProductDetail, RejectedRow
from mahak_client.types import fold_key
from mahak_simulator.api import encode_answer
from mahak_simulator.config import SimulatorConfig
from mahak_simulator.state import SimState

from .simulator import fill

ENDPOINT = "GetAllDataV2"
ENTITY = "product_details"


def answer(n: int) -> bytes:
    """`n` ProductDetails rows as the simulator answers them (`bench.simulator.fill`)."""
    state = SimState(SimulatorConfig())
    fill(state, n)
    rows = state.rows("ProductDetails")
    return encode_answer({"Result": True, "Data": {"Objects": {"ProductDetails": rows}}}, state)


# --- floor: plain pydantic -------------------------------------------------------------------


class PlainDetail(BaseModel):
    model_config = ConfigDict(extra="ignore")

    row_version: int = Field(alias="RowVersion")
    deleted: bool = Field(False, alias="Deleted")
    product_detail_id: int = Field(alias="ProductDetailId")
    product_detail_client_id: int | None = Field(None, alias="ProductDetailClientId")
    product_detail_code: int | None = Field(None, alias="ProductDetailCode")
    product_id: int = Field(alias="ProductId")
    properties: str | None = Field(None, alias="Properties")
    barcode: str | None = Field(None, alias="Barcode")
    price1: float = Field(0, alias="Price1")
    price2: float = Field(0, alias="Price2")
    price3: float = Field(0, alias="Price3")
    price4: float = Field(0, alias="Price4")
    price5: float = Field(0, alias="Price5")
    price6: float = Field(0, alias="Price6")
    price7: float = Field(0, alias="Price7")
    price8: float = Field(0, alias="Price8")
    price9: float = Field(0, alias="Price9")
    price10: float = Field(0, alias="Price10")
    discount: float | None = Field(None, alias="Discount")
    discount1: float | None = Field(None, alias="Discount1")
    discount2: float | None = Field(None, alias="Discount2")
    discount3: float | None = Field(None, alias="Discount3")
    discount4: float | None = Field(None, alias="Discount4")
    default_discount_level: int | None = Field(None, alias="DefaultDiscountLevel")
    discount_type: int | None = Field(None, alias="DiscountType")
    default_sell_price_level: int | None = Field(None, alias="DefaultSellPriceLevel")
    customer_price: float | None = Field(None, alias="CustomerPrice")
    data_hash: str | None = Field(None, alias="DataHash")
    create_date: datetime | None = Field(None, alias="CreateDate")


class PlainObjects(BaseModel):
    ProductDetails: list[PlainDetail]


class PlainData(BaseModel):
    Objects: PlainObjects


class PlainAnswer(BaseModel):
    Result: bool
    Data: PlainData


assert set(PlainDetail.model_fields) == set(ProductDetail.model_fields)


# --- before: the key-by-key fold the client had until issue 16 --------------------------------


_FOLDED_FIELDS = {fold_key(name): name for name in ProductDetail.model_fields}


class KeyByKeyDetail(ProductDetail):
    @model_validator(mode="before")
    @classmethod
    def _fold_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        index = _FOLDED_FIELDS
        out: dict[str, Any] = {}
        for key, value in data.items():
            if not isinstance(key, str):
                continue
            target = index.get(fold_key(key))
            if target is not None and target not in out:
                out[target] = value
        return out


BEFORE_SPEC = dataclasses.replace(ENTITIES[ENTITY], model=KeyByKeyDetail)


def before(body: bytes) -> int:
    rows = json.loads(body.decode("utf-8-sig"))["Data"]["Objects"]["ProductDetails"]
    parsed = [parse_row(BEFORE_SPEC, raw) for raw in rows]
    assert not any(isinstance(p, RejectedRow) for p in parsed)
    return len(parsed)


def lenient(body: bytes) -> int:
    payload = load_json(ENDPOINT, body, status=200)
    batch = parse_get_all_data(ENDPOINT, payload, [ENTITY], status=200)[ENTITY]
    assert not batch.rejected
    return len(batch.rows)


def client(body: bytes) -> int:
    """As `MahakClient.get_all_data` parses: the fast path, else the lenient one."""
    batches = parse_get_all_data_fast(body, [ENTITY])
    if batches is None:
        return lenient(body)
    return len(batches[ENTITY].rows)


def floor(body: bytes) -> int:
    return len(PlainAnswer.model_validate_json(body).Data.Objects.ProductDetails)


def rate(work: Callable[[bytes], int], body: bytes, n: int, repeat: int) -> list[float]:
    rates = []
    for _ in range(repeat):
        start = time.process_time()
        assert work(body) == n
        rates.append(n / max(time.process_time() - start, 1e-6))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="5000,100000", help="answer sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small answers: a smoke test")
    args = parser.parse_args()
    sizes = [int(s) for s in args.rows.split(",")]
    repeat = args.repeat
    if args.quick:
        sizes, repeat = [500, 2_000], 1

    # The same rows come out of each way of parsing (the floor has no leniency to differ by).
    sample = answer(50)
    mine = parse_get_all_data(ENDPOINT, load_json(ENDPOINT, sample), [ENTITY])[ENTITY].rows
    plain = PlainAnswer.model_validate_json(sample).Data.Objects.ProductDetails
    assert [r.model_dump() for r in mine] == [
        ProductDetail.model_validate(p.model_dump()).model_dump() for p in plain
    ]
    fast = parse_get_all_data_fast(sample, [ENTITY])
    assert fast is not None, "the simulator's answer is clean: the fast path must take it"
    assert [r.model_dump() for r in fast[ENTITY].rows] == [r.model_dump() for r in mine]

    print("GetAllDataV2 answers of ProductDetails, parsed from bytes (rows per CPU second):")
    for n in sizes:
        body = answer(n)
        ways = (("floor", floor), ("before", before), ("lenient", lenient), ("client", client))
        results: dict[str, list[float]] = {label: [] for label, _work in ways}
        for _ in range(repeat):  # interleaved, so each sees the same load
            for label, work in ways:
                results[label] += rate(work, body, n, 1)
        med = {label: statistics.median(values) for label, values in results.items()}
        print(
            f"  {n:>7,} rows ({len(body) / 1e6:5.1f} MB)"
            f"  floor {med['floor']:>9,.0f}  before {med['before']:>9,.0f}"
            f"  lenient {med['lenient']:>9,.0f}  client {med['client']:>9,.0f}"
            f"   client/floor {med['client'] / med['floor']:4.2f}"
            f"   client/lenient {med['client'] / med['lenient']:4.2f}"
            f"   client/before {med['client'] / med['before']:4.2f}"
        )


if __name__ == "__main__":
    main()
