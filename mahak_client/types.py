"""Lenient field types for what Mahak really sends.

Mahak answers in PascalCase with Iran-time timestamps carrying 7 fractional digits, names with
stray spaces and Arabic letters, and (through some proxies and older clients) numbers as
strings. These types accept all of that and hand the rest of the project clean values.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
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


def wall_clock(value: str, tz: tzinfo) -> datetime | None:
    """The common case of `parse_mahak_datetime` without its regex: exactly
    `YYYY-MM-DDTHH:MM:SS[.fraction]` (what Mahak sends), read as a wall clock in `tz`; None
    for any other spelling, which the regex then reads."""
    if not (
        len(value) >= 19
        and value[4] == "-"
        and value[7] == "-"
        and value[10] in "T "
        and value[13] == ":"
        and value[16] == ":"
    ):
        return None
    frac = value[20:]
    if len(value) > 19 and (value[19] != "." or not frac.isdecimal()):
        return None
    y, mo, d, h, mi, sec = (
        value[0:4],
        value[5:7],
        value[8:10],
        value[11:13],
        value[14:16],
        value[17:19],
    )
    # isdecimal() is what the regex's \d accepts (and int() reads).
    if not (y + mo + d + h + mi + sec).isdecimal():
        return None
    micro = int(frac[:6].ljust(6, "0")) if frac else 0
    return datetime(int(y), int(mo), int(d), int(h), int(mi), int(sec), micro, tzinfo=tz)


def parse_mahak_datetime(value: Any) -> Any:
    """Parse `2025-10-04T15:18:38.2345036` (7 digits, no offset = Iran time) and kin."""
    if isinstance(value, str) and (fast := wall_clock(value, IRAN_TZ)) is not None:
        return fast
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
    if type(value) is int:  # what nearly every value is: no further checks
        return value
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
    if type(value) is int:  # what nearly every value is: no further checks
        return value
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


# Distinct key sets remembered per model (a LIVE answer has one per entity and casing).
_KEY_PLANS_KEPT = 256


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
        # Rows of one answer share one key set: match it once, then only copy values.
        plans: dict[tuple[Any, ...], tuple[tuple[str, str], ...]] | None = cls.__dict__.get(
            "_key_plans"
        )
        if plans is None:
            plans = {}
            type.__setattr__(cls, "_key_plans", plans)
        keys = tuple(data)
        plan = plans.get(keys)
        if plan is None:
            plan = cls._key_plan(keys)
            if len(plans) >= _KEY_PLANS_KEPT:  # random payloads must not grow it for ever
                plans.clear()
            plans[keys] = plan
        return {target: data[key] for key, target in plan}

    @classmethod
    def _key_plan(cls, keys: tuple[Any, ...]) -> tuple[tuple[str, str], ...]:
        """(key as sent, field) for each key naming a field, case and underscores folded;
        the first of several keys folding to one field wins."""
        index = {fold_key(name): name for name in cls.model_fields}
        plan: dict[str, str] = {}
        for key in keys:
            if isinstance(key, str):
                target = index.get(fold_key(key))
                if target is not None and target not in plan.values():
                    plan[key] = target
        return tuple(plan.items())

    def to_wire(self) -> dict[str, Any]:
        """camelCase JSON-ready dict, nulls dropped: what SaveAllData expects."""
        raw = self.model_dump(mode="json", exclude_none=True)
        return {to_camel(k): v for k, v in raw.items()}
