"""The strict fast path for GetAllData answers (issue 16): clean rows without a Python call
per field.

The lenient path (`envelope.parse_get_all_data`: every row through its pydantic model, keys
matched with case folded, lenient field validators) costs ~20 us of CPU per row, most of the
initial sync's worker. Mahak's answers are nearly always clean: exact PascalCase keys, every
column present, plain JSON types. This reads such an answer straight from its bytes with
msgspec into one strict `Struct` per entity (every model field required, under its exact
wire name; unknown keys refused), does what the lenient validators would do to the values a
column at a time (text normalised, Tehran dates read), and builds the same pydantic model
instances without validating them again.

Whatever it is not sure of, it does not decide: an envelope that is not exactly
`{"Result": true, "Data": {"Objects": {...}}}`, a key that folds to a field but is spelled
otherwise, a missing column, a value of another JSON type (a number as a string, a null
where the model has no None, ...), a date of another spelling: `parse_get_all_data_fast`
answers None and the caller parses the whole answer the lenient way, as before, with its
errors, per-row quarantine and the delete rule of shared/mahak-api.md §10 (e). So a row
either comes out exactly as the lenient path makes it (the same `__dict__`, fields set and
types; `tests/test_fastparse.py` holds the two paths equal) or it is parsed by that path.

Unknown columns (Mahak adds some; the models ignore them) are learned per entity on first
sight (msgspec names the key it refused) and skipped after that, as is a field's own
spelling when Mahak's differs from plain PascalCase (`UnitTIN`): a key that folds to a field
whose spelling was already seen in this process is a second spelling, and sends the answer
the lenient way.
"""

from __future__ import annotations

import re
import types
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import repeat
from operator import attrgetter
from typing import Annotated, Any, Union, get_args, get_origin

import msgspec
from pydantic import BaseModel, BeforeValidator
from pydantic.fields import FieldInfo

from .models import (
    ENTITIES,
    TEHRAN,
    EntityBatch,
    EntitySpec,
    SyncedRow,
    _as_text,
    parse_tehran,
)
from .types import _ARABIC_TO_PERSIAN, _lenient_bool, _lenient_float, _lenient_int, fold_key
from .types import normalize_text as _normalize_text

# Per entity: how many unknown keys or respellings one answer may teach before it is left to
# the lenient path (a broken server sending a new key per row must not rebuild for ever).
_LEARN_PER_ANSWER = 16
_LEARN_TOTAL = 256

_INT, _FLOAT, _BOOL, _STR, _TEXT, _DATE = "int", "float", "bool", "str", "text", "date"
# What each lenient validator of models.py/types.py becomes here; a field typed any other way
# leaves its entity to the lenient path.
_KINDS: dict[tuple[Any, Any], str] = {
    (int, _lenient_int): _INT,
    (float, _lenient_float): _FLOAT,
    (bool, _lenient_bool): _BOOL,
    (str, None): _STR,
    (str, _as_text): _STR,  # numbers become text: not strict, so those rows go the lenient way
    (str, _normalize_text): _TEXT,
    (datetime, parse_tehran): _DATE,
}
_WIRE_TYPES: dict[str, Any] = {
    _INT: int,
    _FLOAT: float,
    _BOOL: bool,
    _STR: str,
    _TEXT: str,
    _DATE: str,
}

# Exactly the spelling `types.wall_clock` reads (ASCII digits only: it also takes other
# Unicode digits, which `datetime.fromisoformat` does not, so those go the lenient way).
_DATES = re.compile(r"(?:[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?\n)*")
# What `str.strip()` removes, or a letter `normalize_text` rewrites, in a column joined by NUL.
_NOT_NORMAL = re.compile(r"[\u064a\u0643\u0649]|(?:^|\x00)\s|\s(?:\x00|\Z)")
_UNKNOWN_KEY = re.compile(r"Object contains unknown field `(.*)` - at `\$\[[0-9]+\]`")

_new_model = BaseModel.__new__
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def _kind(info: FieldInfo) -> tuple[str, bool] | None:
    """(kind, optional) of a model field, or None when it is not one this path knows."""
    annotation: Any = info.annotation
    metadata = list(info.metadata)
    optional = False
    if get_origin(annotation) in (Union, types.UnionType):
        args = get_args(annotation)
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            return None
        optional, annotation = len(rest) < len(args), rest[0]
    if get_origin(annotation) is Annotated:
        annotation, *more = get_args(annotation)
        metadata += more
    validators = [m.func for m in metadata if isinstance(m, BeforeValidator)]
    if len(validators) > 1:
        return None
    kind = _KINDS.get((annotation, validators[0] if validators else None))
    return None if kind is None else (kind, optional)


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


@dataclass
class _Plan:
    """One entity's strict decoder and what to do with its columns."""

    model: type[SyncedRow]
    names: tuple[str, ...]  # model fields, in model order
    kinds: tuple[tuple[str, bool], ...]
    wire: dict[str, str]  # field -> the spelling expected on the wire
    folded: dict[str, str]  # folded spelling -> field
    extras: list[str] = field(default_factory=list)  # unknown keys seen, skipped
    learned: int = 0
    spelled: set[str] = field(default_factory=set)  # fields whose spelling an answer showed
    decoder: msgspec.json.Decoder[list[Any] | None] = field(init=False)
    model_of: Callable[[Any], SyncedRow] = field(init=False)  # `_model_maker`

    def __post_init__(self) -> None:
        assert all(name.isidentifier() for name in self.names)
        self.model_of = _model_maker(self.model, self.names)
        self.build()

    def build(self) -> None:
        fields: list[tuple[str, Any, Any]] = []
        for name, (kind, optional) in zip(self.names, self.kinds, strict=True):
            wire_type = _WIRE_TYPES[kind]
            if optional or kind == _TEXT:  # null text is "" (normalize_text), set below
                wire_type = wire_type | None
            fields.append((name, wire_type, msgspec.field(name=self.wire[name])))
        for i, key in enumerate(self.extras):
            fields.append((f"extra_{i}", msgspec.Raw, msgspec.field(default=None, name=key)))
        # gc=False: a struct holds only numbers, text and Raw, never a cycle; 5000 of them
        # a page would otherwise make the collector run (and walk them) several times.
        row = msgspec.defstruct(
            f"Strict{self.model.__name__}",
            fields,
            kw_only=True,
            forbid_unknown_fields=True,
            gc=False,
        )
        # A null list is an empty one, as the lenient path reads it.
        self.decoder = msgspec.json.Decoder(list[row] | None)  # type: ignore[valid-type]

    def learn(self, key: str) -> bool:
        """Take `key` (refused as unknown) as a column to skip or as its field's spelling;
        False when it may not be: a second spelling of a field, or learning exhausted."""
        if self.learned >= _LEARN_TOTAL:
            return False
        target = self.folded.get(fold_key(key))
        if target is not None:
            if target in self.spelled:
                return False  # the field was seen spelled another way: not a clean answer
            self.wire[target] = key
        else:
            self.extras.append(key)
        self.learned += 1
        self.build()
        return True

    def rows(self, raw: msgspec.Raw | bytes) -> list[SyncedRow] | None:
        for _ in range(_LEARN_PER_ANSWER):
            try:
                structs = self.decoder.decode(raw)
                break
            except msgspec.ValidationError as exc:
                found = _UNKNOWN_KEY.fullmatch(str(exc))
                if found is None or not self.learn(found.group(1)):
                    return None
            except (msgspec.DecodeError, RecursionError):
                return None
        else:
            return None
        if not structs:
            return []
        self.spelled.update(self.names)  # each row had every field, spelled as expected
        row_type = type(structs[0])
        for name, (kind, optional) in zip(self.names, self.kinds, strict=True):
            if kind not in (_TEXT, _DATE):
                continue
            values = list(map(attrgetter(name), structs))
            done = _texts(values, optional) if kind == _TEXT else _dates(values)
            if done is None:
                return None
            if done is not values:
                # The struct's own slot setter, a C call per row.
                deque(map(row_type.__dict__[name].__set__, structs, done), maxlen=0)
        return list(map(self.model_of, structs))


def _texts(values: list[Any], optional: bool) -> list[Any]:
    """`normalize_text` of a column (None stays None where the field is optional); the same
    list when nothing in it changes."""
    present = values if None not in values else [v for v in values if v is not None]
    if _NOT_NORMAL.search("\x00".join(present)) is None:
        if optional or len(present) == len(values):
            return values
        return ["" if v is None else v for v in values]
    # normalize_text of each distinct value (names, units and tags repeat), in C calls.
    distinct = set(present)
    normal: dict[Any, Any] = dict(
        zip(distinct, map(str.strip, map(str.translate, distinct, repeat(_ARABIC_TO_PERSIAN))))
    )
    normal[None] = None if optional else _normalize_text(None)
    return list(map(normal.__getitem__, values))


def _dates(values: list[Any]) -> list[Any] | None:
    """`models.parse_tehran` of a column of strings in Mahak's own spelling (Tehran wall
    clock, up to microseconds: more digits are cut, as `wall_clock` cuts them); None when a
    value is spelled otherwise or is not a date."""
    present = values if None not in values else [v for v in values if v is not None]
    if _DATES.fullmatch("\n".join(present) + "\n" if present else "") is None:
        return None
    try:
        # combine(), not replace(tzinfo=): the same value at a seventh of the cost.
        return [
            None if v is None else _combine(d := _fromisoformat(v[:26]), d.time(), TEHRAN)
            for v in values
        ]
    except ValueError:  # a month 13, a 25th hour: the lenient path says why
        return None


_combine, _fromisoformat = datetime.combine, datetime.fromisoformat


def _model_maker(model: type[SyncedRow], names: tuple[str, ...]) -> Callable[[Any], SyncedRow]:
    """A function making an instance of `model` from a strict struct, as validation would
    leave it: every field set (the strict decoder requires each key), no extra, no private
    values. Generated, as dataclasses generate their `__init__`: a dict display with the
    field names as constants is the cheapest way to build each row's `__dict__` (~0.7 us a
    row less than `dict(zip(...))`, on 5000-row pages). The rows of a plan share one
    `__pydantic_fields_set__`: it names every field, so pydantic's only change to it (adding
    a field assigned to) changes nothing."""
    body = ", ".join(f"{name!r}: struct.{name}" for name in names)
    source = (
        "def model_of(struct):\n"
        "    row = new(model)\n"
        f"    set_dict(row, {{{body}}})\n"
        "    set_fields(row, every)\n"
        "    set_extra(row, None)\n"
        "    set_private(row, None)\n"
        "    return row\n"
    )
    scope: dict[str, Any] = {
        "new": _new_model,
        "model": model,
        "set_dict": _set_dict,
        "set_fields": _set_fields,
        "set_extra": _set_extra,
        "set_private": _set_private,
        "every": set(names),
    }
    exec(source, scope)  # noqa: S102 - names are the model's own field identifiers
    maker: Callable[[Any], SyncedRow] = scope["model_of"]
    return maker


def _plan(spec: EntitySpec) -> _Plan | None:
    model = spec.model
    kinds = [_kind(info) for info in model.model_fields.values()]
    if any(k is None for k in kinds) or model.model_config.get("extra") != "ignore":
        return None
    names = tuple(model.model_fields)
    return _Plan(
        model,
        names,
        tuple(k for k in kinds if k is not None),
        {name: _pascal(name) for name in names},
        {fold_key(name): name for name in names},
    )


_PLANS: dict[str, _Plan | None] = {}


def plan(entity: str) -> _Plan | None:
    if entity not in _PLANS:
        _PLANS[entity] = _plan(ENTITIES[entity])
    return _PLANS[entity]


class _Data(msgspec.Struct):
    Objects: dict[str, msgspec.Raw]


class _Envelope(msgspec.Struct):
    Result: bool
    Data: _Data


_ENVELOPE = msgspec.json.Decoder(_Envelope)


def parse_get_all_data_fast(
    content: bytes | bytearray, entities: Iterable[str]
) -> dict[str, EntityBatch] | None:
    """`envelope.parse_get_all_data` of a clean answer, read from its bytes; None when the
    answer (or any requested entity's list) is not clean, to be parsed the lenient way."""
    try:
        envelope = _ENVELOPE.decode(content)
    except (msgspec.DecodeError, RecursionError):  # also ValidationError: another shape
        return None
    if envelope.Result is not True:
        return None
    objects = envelope.Data.Objects
    folded = {fold_key(k): k for k in objects}
    out: dict[str, EntityBatch] = {}
    for name in entities:
        spec = ENTITIES[name]
        raw = objects.get(spec.collection)
        if raw is None:
            if fold_key(spec.collection) in folded:
                return None  # another spelling of the collection: the lenient path finds it
            out[name] = EntityBatch(entity=name)
            continue
        strict = plan(name)
        rows = strict.rows(raw) if strict is not None else None
        if rows is None:
            return None
        out[name] = EntityBatch(
            entity=name,
            rows=rows,
            max_row_version=max(map(_row_version, rows)) if rows else None,
        )
    return out


_row_version = attrgetter("row_version")


def parse_rows_fast(entity: str, raws: Sequence[msgspec.Raw]) -> list[SyncedRow] | None:
    """Rows of `entity` kept unparsed (`lean.LeanRow.raw`), parsed as one list the strict
    way; None when any is not clean (the caller parses each the lenient way)."""
    strict = plan(entity)
    if strict is None:
        return None
    rows = strict.rows(b"[" + b",".join(map(bytes, raws)) + b"]")
    return rows if rows is not None and len(rows) == len(raws) else None
