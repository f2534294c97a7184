"""Lenient field types for what Mahak really sends.

Mahak answers in PascalCase with Iran-time timestamps carrying 7 fractional digits, names with
stray spaces and Arabic letters, and (through some proxies and older clients) numbers as
strings. These types accept all of that and hand the rest of the project clean values.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, model_validator
from pydantic.alias_generators import to_camel

# Iran has kept +03:30 all year since 2022; Mahak's server clock is Iran time.
IRAN_TZ = timezone(timedelta(hours=3, minutes=30), "IRST")

_ARABIC_TO_PERSIAN = str.maketrans({"\u064a": "\u06cc", "\u0643": "\u06a9", "\u0649": "\u06cc"})
_DATETIME = re.compile(
    r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?\s*$"
)


def normalize_text(value: Any) -> Any:
    """Trim and turn Arabic ي/ك into Persian ی/ک, so names compare and search equal.

    Mahak (.NET) sends null for empty strings, e.g. in the tombstone of a deleted row;
    a required text field reads that as "" rather than quarantining the row."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.translate(_ARABIC_TO_PERSIAN).strip()
    return value


def parse_mahak_datetime(value: Any) -> Any:
    """Parse `2025-10-04T15:18:38.2345036` (7 digits, no offset = Iran time) and kin."""
    if value is None or isinstance(value, datetime):
        if isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=IRAN_TZ)
        return value
    if isinstance(value, str):
        if not value.strip():
            return None
        m = _DATETIME.match(value)
        if not m:
            raise ValueError(f"not a Mahak timestamp: {value[:40]!r}")
        year, month, day, hour, minute, second, frac, offset = m.groups()
        micro = int((frac or "0")[:6].ljust(6, "0"))
        tz = IRAN_TZ
        if offset:
            if offset == "Z":
                tz = UTC
            else:
                sign = 1 if offset[0] == "+" else -1
                digits = offset[1:].replace(":", "")
                tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            micro,
            tzinfo=tz,
        )
    raise ValueError(f"not a Mahak timestamp: {type(value).__name__}")


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _lenient_int(value: Any) -> Any:
    """Accept `"42"`, `"42.0"` and `42.0`; refuse real fractions rather than truncate them.

    Booleans are refused too: `true` where an id belongs is a broken row, not the number 1."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not an integer")
    if isinstance(value, str):
        s = value.strip()
        if s == "":
            return None
        try:
            return int(s)
        except ValueError:
            f = float(s)
            if f.is_integer():
                return int(f)
            raise ValueError(f"not an integer: {value[:40]!r}") from None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _lenient_float(value: Any) -> Any:
    """Accept `"1500"` and `"1,500.5"`; refuse booleans and NaN/infinity (Python's JSON
    reader lets `NaN` through, and a NaN price would be stored as one)."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, str):
        s = value.strip().replace(",", "")
        if s == "":
            return None
        value = float(s)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("not a finite number")
    return value


def _lenient_bool(value: Any) -> Any:
    if isinstance(value, str):
        s = value.strip().lower()
        if s in {"true", "1", "yes"}:
            return True
        if s in {"false", "0", "no", ""}:
            return False
    return value


MahakText = Annotated[str, BeforeValidator(normalize_text)]
MahakDateTime = Annotated[
    datetime,
    BeforeValidator(parse_mahak_datetime),
    PlainSerializer(lambda d: d.isoformat(), return_type=str, when_used="json"),
]
MahakInt = Annotated[int, BeforeValidator(_lenient_int)]
MahakFloat = Annotated[float, BeforeValidator(_lenient_float)]
MahakBool = Annotated[bool, BeforeValidator(_lenient_bool)]


def fold_key(name: str) -> str:
    """A key with case and underscores folded: how Mahak's (ASP.NET) model binder matches."""
    return name.replace("_", "").lower()


class MahakModel(BaseModel):
    """Base for every wire model: snake_case attributes, any-case input, camelCase output.

    Request keys bind case-insensitively on Mahak's side and its responses are PascalCase,
    with the odd lowercase collection; matching keys with case and underscores folded
    accepts every spelling seen in the wild. Unknown fields are ignored so a Mahak release
    that adds columns does not stop the sync.
    """

    model_config = ConfigDict(
        extra="ignore",
        populate_by_name=True,
        serialize_by_alias=False,
        alias_generator=None,
        frozen=False,
    )

    @model_validator(mode="before")
    @classmethod
    def _fold_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        index = cls.__dict__.get("_folded_fields")
        if index is None:
            index = {fold_key(name): name for name in cls.model_fields}
            type.__setattr__(cls, "_folded_fields", index)
        out: dict[str, Any] = {}
        for key, value in data.items():
            if not isinstance(key, str):
                continue
            target = index.get(fold_key(key))
            if target is not None and target not in out:
                out[target] = value
        return out

    def to_wire(self) -> dict[str, Any]:
        """camelCase JSON-ready dict, nulls dropped: what SaveAllData expects."""
        raw = self.model_dump(mode="json", exclude_none=True)
        return {to_camel(k): v for k, v in raw.items()}
