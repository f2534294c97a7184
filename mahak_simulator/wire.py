"""The simulator's own reading of the wire conventions in `shared/mahak-api.md`.

Nothing here comes from `mahak_client`: the simulator is a second, independent reading of the
evidence, so a test where client and simulator agree means two readings agree, not one piece
of code agreeing with itself (a test checks the import graph).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

# §1.1: the server's clock and every naive date it reads or writes are Iran local time.
TEHRAN = ZoneInfo("Asia/Tehran")

_MD5 = re.compile(r"[0-9a-fA-F]{32}")
_DATE = re.compile(
    r"(?P<y>\d{4})-(?P<m>\d\d?)-(?P<d>\d\d?)"
    r"(?:[T ](?P<H>\d\d?):(?P<M>\d\d)(?::(?P<S>\d\d)(?:\.(?P<f>\d{1,7}))?)?)?"
    r"(?P<offset>Z|[+-]\d\d:?\d\d)?"
)


def fold(key: str) -> str:
    """How an ASP.NET model binder matches a JSON key to a property: case-insensitively
    (§9.1), so `orderClientId`, `OrderClientId` and `ORDERCLIENTID` bind alike."""
    return key.casefold()


def password_digest(given: str) -> str:
    """§2: clients send the password's MD5 (hex); a plain password is hashed here."""
    if _MD5.fullmatch(given):
        return given.lower()
    return hashlib.md5(given.encode("utf-8")).hexdigest()  # noqa: S324 - the protocol's choice


def wall_clock(value: str) -> datetime:
    """A request date as the server stores it: the wall clock sent, naive. An offset is
    dropped unread, as a server that ignores it would (§1.1): a client sending UTC shows
    3.5 hours off, which is what a test must catch."""
    m = _DATE.fullmatch(value.strip())
    if m is None:
        raise ValueError(f"not a date: {value[:40]!r}")
    fraction = (m["f"] or "0")[:6].ljust(6, "0")
    return datetime(
        int(m["y"]),
        int(m["m"]),
        int(m["d"]),
        int(m["H"] or 0),
        int(m["M"] or 0),
        int(m["S"] or 0),
        int(fraction),
    )


class OffsetRefused(ValueError):
    """A date sent with an offset, to a server that refuses those (§11.4 "refuse")."""


def offset_of(value: str) -> timedelta | None:
    """The offset a request date carries (`Z` = 0), None for a naive one."""
    m = _DATE.fullmatch(value.strip())
    if m is None:
        raise ValueError(f"not a date: {value[:40]!r}")
    text = m["offset"]
    if text is None:
        return None
    if text == "Z":
        return timedelta(0)
    digits = text[1:].replace(":", "")
    delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return delta if text[0] == "+" else -delta


def stored_wall_clock(value: str, dated_offset: str = "drop") -> datetime:
    """A request date as a server answering §11.4 with `dated_offset` files it (naive Tehran):
    "drop" keeps the wall clock sent (`wall_clock`), "honour" converts an offset date to Tehran
    time, "refuse" raises `OffsetRefused` for one. A naive date is Tehran time in every mode."""
    naive = wall_clock(value)
    offset = offset_of(value)
    if offset is None or dated_offset == "drop":
        return naive
    if dated_offset == "refuse":
        raise OffsetRefused(f"a date with an offset is not accepted: {value[:40]!r}")
    moment = naive.replace(tzinfo=timezone(offset))
    return moment.astimezone(TEHRAN).replace(tzinfo=None)


def camel_keys(data: Any) -> Any:
    """An answer with every object key in camelCase (`RowVersion` -> `rowVersion`), the
    casing Swagger shows; values (JSON strings included) are left alone."""
    if isinstance(data, dict):
        return {
            (k[:1].lower() + k[1:] if isinstance(k, str) else k): camel_keys(v)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [camel_keys(v) for v in data]
    return data


def now_in_tehran() -> datetime:
    return datetime.now(TEHRAN)
