"""Reading Mahak's response envelopes without trusting them.

Every Sync answer is `{"Result": bool, "Code", "Message", "Data": …}` in PascalCase (with the odd
lowercase key). These functions turn a body into typed values or raise one of two errors:
`MahakProtocolError` when the body is not that envelope (HTML error page, truncated or non-JSON,
wrong shape) and `MahakPermanentError` when Mahak answered `Result:false`. Nothing else may
escape: the property tests feed them random and mangled payloads to hold that line.

A single GetAllData row that fails validation does not sink its page: it becomes a `RejectedRow`
(dead-lettered downstream) with whatever id and RowVersion could be read from it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import msgspec
from pydantic import ValidationError

from mahak_sync.logging import get_logger

from .disputes import OrderDisputeOutcome, SolveOrderDisputeResult, dispute_rows
from .errors import MahakAuthError, MahakPermanentError, MahakProtocolError
from .models import (
    ENTITIES,
    EntityBatch,
    EntitySpec,
    LoginData,
    RejectedRow,
    RowStamp,
    SyncedRow,
)
from .save import EntityUpdateResult, SaveAllDataResult
from .types import INT64_MAX, INT64_MIN, MahakModel, _lenient_int, fold_key

_log = get_logger("mahak_client")
_MAX_SNIPPET = 120
_M = TypeVar("_M", bound=MahakModel)
_DECODER = msgspec.json.Decoder()


def field(obj: Mapping[str, Any], name: str) -> Any:
    """`obj[name]` matching keys with case and underscores folded (Mahak is inconsistent)."""
    if name in obj:
        return obj[name]
    want = fold_key(name)
    for key, value in obj.items():
        if isinstance(key, str) and fold_key(key) == want:
            return value
    return None


def has_field(obj: Mapping[str, Any], name: str) -> bool:
    want = fold_key(name)
    return any(isinstance(k, str) and fold_key(k) == want for k in obj)


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat[:_MAX_SNIPPET] + ("…" if len(flat) > _MAX_SNIPPET else "")


def load_json(
    endpoint: str,
    content: bytes | bytearray,
    *,
    status: int | None = None,
    content_type: str | None = None,
) -> Any:
    """Decode a body, naming what it was instead when it is not JSON."""
    try:
        # msgspec reads a large answer in half the time of `json.loads` (bench/parse.py),
        # values alike, integers past 64 bits too; what it refuses (a BOM, NaN, an
        # out-of-range float, a lone surrogate, broken JSON) the stdlib reads or names below.
        return _DECODER.decode(content)
    except (msgspec.DecodeError, RecursionError):
        pass
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise MahakProtocolError(
            "response is not UTF-8 text", endpoint=endpoint, status_code=status
        ) from None
    stripped = text.lstrip()
    if not stripped:
        raise MahakProtocolError("empty response body", endpoint=endpoint, status_code=status)
    # The body decides, not the label: a JSON envelope mislabelled `text/html` by a proxy is
    # still Mahak's answer, and an error page is markup whatever its content type claims.
    if not stripped.startswith("<"):
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as exc:
            if "html" not in (content_type or "").lower():
                raise MahakProtocolError(
                    f"malformed or truncated JSON ({type(exc).__name__}: {str(exc)[:80]})",
                    endpoint=endpoint,
                    status_code=status,
                ) from None
    raise MahakProtocolError(
        f"got an HTML page instead of JSON: {_snippet(stripped)!r}",
        endpoint=endpoint,
        status_code=status,
    )


def as_int(value: Any) -> int | None:
    """An integer Mahak could have meant (int64), else None."""
    try:
        result = _lenient_int(value)
    except (ValueError, TypeError, OverflowError):
        return None
    if not isinstance(result, int) or not INT64_MIN <= result <= INT64_MAX:
        return None
    return result


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text.strip() or None


def mahak_message(payload: Any) -> tuple[str | None, int | None]:
    """Mahak's `Message`/`Code`, falling back to `Data.ErrorMessage`/`Data.ErrorCode`."""
    if not isinstance(payload, dict):
        return None, None
    message = _as_text(field(payload, "Message"))
    code = as_int(field(payload, "Code"))
    data = field(payload, "Data")
    if isinstance(data, dict):
        message = message or _as_text(field(data, "ErrorMessage"))
        code = code if code else as_int(field(data, "ErrorCode"))
    return message, code or None


def _result_flag(endpoint: str, payload: Any, status: int | None) -> bool:
    if not isinstance(payload, dict) or not has_field(payload, "Result"):
        raise MahakProtocolError(
            "response is not a Mahak envelope (no `Result`)", endpoint=endpoint, status_code=status
        )
    value = field(payload, "Result")
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower() == "true"
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise MahakProtocolError(
        f"`Result` is not a boolean: {_snippet(repr(value))}", endpoint=endpoint, status_code=status
    )


def unwrap(endpoint: str, payload: Any, *, status: int | None = None) -> Any:
    """`Data` of a successful envelope; `Result:false` raises `MahakPermanentError`."""
    if not _result_flag(endpoint, payload, status):
        message, code = mahak_message(payload)
        raise MahakPermanentError(
            "request refused",
            endpoint=endpoint,
            status_code=status,
            mahak_message=message,
            code=code,
        )
    return field(payload, "Data")


# --- Login ---------------------------------------------------------------------------------


# Login fields we only show to operators; the token, visitor and database ids are used.
_DISPLAY_ONLY_LOGIN_FIELDS = {
    "sync_id",
    "user_title",
    "mahak_id",
    "server_time",
    "package_no",
    "credit_day",
}


def parse_login(endpoint: str, payload: Any, *, status: int | None = None) -> LoginData:
    if not _result_flag(endpoint, payload, status):
        message, code = mahak_message(payload)
        raise MahakAuthError(
            "login refused",
            endpoint=endpoint,
            status_code=status,
            mahak_message=message or "no reason given",
            code=code,
        )
    data = field(payload, "Data")
    if (
        not isinstance(data, dict)
        or not isinstance(field(data, "UserToken"), str)
        or not field(data, "UserToken")
    ):
        raise MahakProtocolError(
            "login succeeded but carries no `Data.UserToken`", endpoint=endpoint, status_code=status
        )
    try:
        return LoginData.model_validate(data)
    except ValidationError as exc:
        bad = {str(e["loc"][0]) for e in exc.errors(include_input=False) if e["loc"]}
    if bad and bad <= _DISPLAY_ONLY_LOGIN_FIELDS:
        # Their formats are not documented for Login; an odd one must not stop the sync.
        drop = {fold_key(name) for name in bad}
        return LoginData.model_validate(
            {k: v for k, v in data.items() if not (isinstance(k, str) and fold_key(k) in drop)}
        )
    # Never echo the input: it holds the token.
    raise MahakProtocolError(
        f"login data does not validate ({', '.join(sorted(bad))})",
        endpoint=endpoint,
        status_code=status,
    )


# --- GetAllData ----------------------------------------------------------------------------


def _validation_summary(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "row"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def _validate_each(
    model: type[_M], items: list[Any], what: str, endpoint: str, status: int | None
) -> list[_M]:
    """All of `items` as `model`, or one protocol error naming what did not validate."""
    try:
        return [model.model_validate(item) for item in items]
    except ValidationError as exc:
        raise MahakProtocolError(
            f"{what} does not validate ({_validation_summary(exc)})",
            endpoint=endpoint,
            status_code=status,
        ) from None


def _is_deleted(raw: Mapping[str, Any]) -> bool:
    value = field(raw, "Deleted")
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "1"))


def _as_delete(spec: EntitySpec, raw: dict[str, Any], exc: ValidationError) -> SyncedRow | None:
    """A logical delete whose other values do not validate (e.g. `Price1: null`): the delete
    needs only the id, so the bad values are dropped (their defaults stand in) and logged,
    and the delete is applied (shared/mahak-api.md §10 (e)). None when even that fails."""
    bad = {fold_key(str(e["loc"][0])) for e in exc.errors(include_input=False) if e["loc"]}
    if not bad or fold_key(spec.id_field) in bad or fold_key("row_version") in bad:
        return None
    kept = {k: v for k, v in raw.items() if not (isinstance(k, str) and fold_key(k) in bad)}
    try:
        row = spec.model.model_validate(kept)
    except ValidationError:
        return None
    _log.warning(
        "mahak.deleted_row_bad_values",
        entity=spec.name,
        mahak_id=getattr(row, spec.id_field),
        row_version=row.row_version,
        quarantined=_validation_summary(exc),
    )
    return row


def wire_id(spec: EntitySpec) -> str:
    """The id's key on the wire (`product_detail_id` -> `ProductDetailId`)."""
    return "".join(p.capitalize() for p in spec.id_field.split("_"))


def parse_row(spec: EntitySpec, raw: dict[str, Any]) -> SyncedRow | RejectedRow:
    try:
        return spec.model.model_validate(raw)
    except ValidationError as exc:
        if _is_deleted(raw) and (row := _as_delete(spec, raw, exc)) is not None:
            return row
        return RejectedRow(
            entity=spec.name,
            raw=raw,
            error=_validation_summary(exc),
            mahak_id=as_int(field(raw, wire_id(spec))),
            # Only an int64 RowVersion may move the cursor (it is stored as a bigint).
            row_version=as_int(field(raw, "RowVersion")),
        )


def _batch(spec: EntitySpec, rows: list[Any]) -> EntityBatch:
    batch = EntityBatch(entity=spec.name)
    versions: list[int] = []
    for raw in rows:
        parsed = parse_row(spec, raw)
        if isinstance(parsed, RejectedRow):
            batch.rejected.append(parsed)
            if parsed.row_version is not None:
                versions.append(parsed.row_version)
        else:
            batch.rows.append(parsed)
            versions.append(parsed.row_version)
    batch.max_row_version = max(versions) if versions else None
    return batch


def _entity_lists(
    endpoint: str, payload: Any, entities: Iterable[str], status: int | None
) -> dict[str, list[dict[str, Any]]]:
    """Each requested entity's list of row objects (empty when Mahak sent `null` or nothing),
    or a protocol error when the answer is not that shape."""
    data = unwrap(endpoint, payload, status=status)
    if not isinstance(data, dict):
        raise MahakProtocolError("`Data` is not an object", endpoint=endpoint, status_code=status)
    objects = field(data, "Objects")
    if not isinstance(objects, dict):
        raise MahakProtocolError(
            "`Data.Objects` is not an object", endpoint=endpoint, status_code=status
        )
    out: dict[str, list[dict[str, Any]]] = {}
    for name in entities:
        spec = ENTITIES[name]
        rows = field(objects, spec.collection)
        if rows is None:
            rows = []
        if not isinstance(rows, list):
            raise MahakProtocolError(
                f"`{spec.collection}` is not a list", endpoint=endpoint, status_code=status
            )
        for i, raw in enumerate(rows):
            if not isinstance(raw, dict):
                raise MahakProtocolError(
                    f"`{spec.collection}[{i}]` is not an object",
                    endpoint=endpoint,
                    status_code=status,
                )
        out[name] = rows
    return out


def parse_get_all_data(
    endpoint: str, payload: Any, entities: Iterable[str], *, status: int | None = None
) -> dict[str, EntityBatch]:
    """One batch per requested logical entity name (empty when Mahak sent `null` or nothing)."""
    lists = _entity_lists(endpoint, payload, entities, status)
    return {name: _batch(ENTITIES[name], rows) for name, rows in lists.items()}


def parse_row_stamps(
    endpoint: str, payload: Any, entities: Iterable[str], *, status: int | None = None
) -> dict[str, list[RowStamp]]:
    """Only each row's id and RowVersion (None where unreadable), in wire order: what a quiet
    cycle compares with the shop's versions before it parses any row in full."""
    lists = _entity_lists(endpoint, payload, entities, status)
    out: dict[str, list[RowStamp]] = {}
    for name, rows in lists.items():
        id_key = wire_id(ENTITIES[name])
        out[name] = [
            RowStamp(as_int(field(raw, id_key)), as_int(field(raw, "RowVersion"))) for raw in rows
        ]
    return out


# --- SaveAllData ---------------------------------------------------------------------------


def parse_save_all_data(
    endpoint: str, payload: Any, *, status: int | None = None
) -> SaveAllDataResult:
    """Per-record verdicts. `Result:false` with records is data; without any it is an error."""
    ok = _result_flag(endpoint, payload, status)
    message, code = mahak_message(payload)
    data = field(payload, "Data")
    objects = field(data, "Objects") if isinstance(data, dict) else None
    if objects is None:
        if not ok:
            raise MahakPermanentError(
                "request refused",
                endpoint=endpoint,
                status_code=status,
                mahak_message=message,
                code=code,
            )
        raise MahakProtocolError("`Data.Objects` is missing", endpoint=endpoint, status_code=status)
    if not isinstance(objects, dict):
        raise MahakProtocolError(
            "`Data.Objects` is not an object", endpoint=endpoint, status_code=status
        )
    collections: dict[str, list[EntityUpdateResult]] = {}
    for name, value in objects.items():
        if value is None:
            continue
        results = field(value, "Results") if isinstance(value, dict) else None
        if results is None and isinstance(value, dict):
            results = []
        if not isinstance(results, list):
            raise MahakProtocolError(
                f"`{name}.Results` is not a list", endpoint=endpoint, status_code=status
            )
        collections[str(name)] = _validate_each(
            EntityUpdateResult, results, f"`{name}.Results`", endpoint, status
        )
    return SaveAllDataResult(result=ok, collections=collections, message=message)


# --- Disputes ------------------------------------------------------------------------------


def parse_solve_order_dispute(
    endpoint: str, payload: Any, *, status: int | None = None
) -> SolveOrderDisputeResult:
    ok = _result_flag(endpoint, payload, status)
    message, _code = mahak_message(payload)
    items = _validate_each(
        OrderDisputeOutcome,
        dispute_rows(field(payload, "Data")),
        "a dispute result",
        endpoint,
        status,
    )
    return SolveOrderDisputeResult(result=ok, message=message, items=items)


def parse_outcome(
    endpoint: str, payload: Any, *, status: int | None = None
) -> tuple[bool, str | None, int | None]:
    """`Result` with Mahak's message and code, for calls whose `Data` carries nothing."""
    return (_result_flag(endpoint, payload, status), *mahak_message(payload))
