"""Large GetAllData answers without every row parsed at once (issue 16: memory).

A request without `pageSize` (a reconciliation, a page read again after a failed check, an
operator's `MAHAK_PAGE_SIZE=0`) may answer a whole entity in one body: parsed as usual, 200k
product details hold ~1.2 GB of Python objects at once. Read leanly, each row stays a slice
of the body (`msgspec.Raw`, no copy) behind a `LeanRow` that carries only its id and
RowVersion: what the pager needs to check, order and hand rows on. Whoever stores them parses
them a part at a time (`parse_lean`), so memory holds the body, ~100 bytes per row, and one
part of models.

A row whose id or RowVersion cannot be read is parsed at once (`envelope.parse_row`): it is
quarantined (or, being valid after all, kept) exactly as in a parsed answer. An answer that is
not the usual JSON envelope at all is left to the usual parser, which names what is wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from mahak_sync.logging import get_logger

from . import envelope
from .errors import MahakPermanentError, MahakProtocolError
from .fastparse import parse_rows_fast
from .models import ENTITIES, EntityBatch, EntitySpec, RejectedRow
from .types import fold_key

if TYPE_CHECKING:
    from .client import MahakClient

_log = get_logger("mahak_client")

_ANY = msgspec.json.Decoder()
_OBJECT = msgspec.json.Decoder(dict[str, msgspec.Raw])
_LIST = msgspec.json.Decoder(list[msgspec.Raw])


class LeanRow:
    """One row of a lean answer: its RowVersion, its id (under the entity's id attribute, as
    on a parsed row, so the pager reads both alike) and its unparsed JSON."""

    __slots__ = ("raw", "row_version")

    def __init__(self, row_version: int, raw: msgspec.Raw) -> None:
        self.row_version = row_version
        self.raw = raw


_TYPES: dict[str, type[LeanRow]] = {}


def _lean_type(spec: EntitySpec) -> type[LeanRow]:
    if spec.name not in _TYPES:
        _TYPES[spec.name] = type(
            f"Lean{spec.model.__name__}", (LeanRow,), {"__slots__": (spec.id_field,)}
        )
    return _TYPES[spec.name]


def _objects(body: bytes | bytearray) -> tuple[dict[str, Any], dict[str, msgspec.Raw]] | None:
    """The envelope with `Data` left out, and `Data.Objects` as raw lists; None when the body
    is not shaped so (the usual parser then reads it and says what is wrong)."""
    try:
        top = _OBJECT.decode(body)
        head = {k: _ANY.decode(v) for k, v in top.items() if fold_key(k) != "data"}
        data = envelope.field(top, "Data")
        inner = _OBJECT.decode(data) if data is not None else None
        objects = envelope.field(inner, "Objects") if inner is not None else None
        return (head, _OBJECT.decode(objects)) if objects is not None else None
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def parse_get_all_data_lean(
    endpoint: str, body: bytes | bytearray, entities: Iterable[str], *, status: int | None = None
) -> dict[str, EntityBatch]:
    """`envelope.parse_get_all_data` of `body`, its rows left as `LeanRow`s where their id and
    RowVersion can be read (`rows`), parsed otherwise (`rows` or `rejected`)."""
    names = list(entities)
    shaped = _objects(body)
    if shaped is not None:
        try:
            envelope.unwrap(endpoint, {**shaped[0], "Data": None}, status=status)
        except MahakPermanentError:
            shaped = None  # a refusal: its message may be in `Data`, which was left out
    if shaped is None:
        return envelope.parse_get_all_data(
            endpoint, envelope.load_json(endpoint, body, status=status), names, status=status
        )
    objects = shaped[1]
    out: dict[str, EntityBatch] = {}
    for name in names:
        spec = ENTITIES[name]
        listed = envelope.field(objects, spec.collection)
        try:
            rows = _LIST.decode(listed) if listed is not None else []
        except msgspec.ValidationError:
            if _ANY.decode(listed) is not None:
                raise MahakProtocolError(
                    f"`{spec.collection}` is not a list", endpoint=endpoint, status_code=status
                ) from None
            rows = []
        out[name] = _lean_batch(endpoint, spec, rows, status)
    return out


def _lean_batch(
    endpoint: str, spec: EntitySpec, rows: list[msgspec.Raw], status: int | None
) -> EntityBatch:
    batch = EntityBatch(entity=spec.name)
    lean, id_key = _lean_type(spec), envelope.wire_id(spec)
    top: int | None = None
    for i, raw in enumerate(rows):
        row = _ANY.decode(raw)
        if not isinstance(row, dict):
            raise MahakProtocolError(
                f"`{spec.collection}[{i}]` is not an object", endpoint=endpoint, status_code=status
            )
        mahak_id = envelope.as_int(envelope.field(row, id_key))
        version = envelope.as_int(envelope.field(row, "RowVersion"))
        item: Any
        if mahak_id is None or version is None:
            item = envelope.parse_row(spec, row)
        else:
            item = lean(version, raw)
            setattr(item, spec.id_field, mahak_id)
        (batch.rejected if isinstance(item, RejectedRow) else batch.rows).append(item)
        if item.row_version is not None:
            top = item.row_version if top is None else max(top, item.row_version)
    batch.max_row_version = top
    return batch


def parse_lean(entity: str, items: Sequence[Any]) -> EntityBatch:
    """`items` (lean rows, rows already parsed, quarantined rows) as a parsed batch."""
    spec = ENTITIES[entity]
    batch = EntityBatch(entity=entity)
    versions: list[int] = []
    # Issue 16: clean rows parsed together the strict way (fastparse.py), else each as usual.
    raws = [item.raw for item in items if isinstance(item, LeanRow)]
    fast = iter((parse_rows_fast(entity, raws) if raws else None) or ())
    for item in items:
        if isinstance(item, LeanRow):
            item = next(fast, None) or envelope.parse_row(spec, _ANY.decode(item.raw))
        (batch.rejected if isinstance(item, RejectedRow) else batch.rows).append(item)
        if item.row_version is not None:
            versions.append(item.row_version)
    batch.max_row_version = max(versions) if versions else None
    if batch.rejected:
        _log.warning(
            "mahak.rows_rejected",
            entity=entity,
            count=len(batch.rejected),
            first_error=batch.rejected[0].error,
        )
    return batch


class LeanWhenUncapped:
    """A client as the pager's fetcher (`pager.iter_pages`): an answer to a request without
    `pageSize`, which may hold a whole entity, is read leanly; a capped one is parsed."""

    def __init__(self, client: MahakClient) -> None:
        self.client = client

    async def get_all_data(
        self, from_versions: Mapping[str, int], *, page_size: int | None = None
    ) -> dict[str, EntityBatch]:
        if page_size is None:
            return await self.client.get_all_data_lean(from_versions)
        return await self.client.get_all_data(from_versions, page_size=page_size)
