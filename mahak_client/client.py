"""The async Mahak Sync API client.

One `MahakClient` per process (or per activity worker) is enough: it keeps one httpx connection
pool and one login. The token is renewed shortly before its JWT `exp`, and a 401 from a data
endpoint triggers exactly one fresh login and one retry of that call; callers arriving at the
same time share that login.

Nothing here retries on its own beyond that 401 dance. In particular SaveAllData is never
re-sent: a retry after a lost answer may duplicate writes, and deduplication by client ids is
the workflow's business. Every failure is raised as a `MahakError` subclass that says whether a
retry can help (see `errors.py`).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pydantic import SecretStr

from mahak_sync.logging import get_logger, register_secret

from . import envelope, lean
from .auth import Session, md5_password
from .disputes import DisputeItem, OrderDisputeItem, SolveOrderDisputeResult
from .errors import (
    MahakAuthError,
    MahakError,
    MahakPermanentError,
    MahakTransientError,
)
from .fastparse import parse_get_all_data_fast
from .models import ENTITIES, EntityBatch, LoginData, RowStamp, entity
from .save import SaveAllDataRequest, SaveAllDataResult

if TYPE_CHECKING:
    from mahak_sync.config import Settings

_T = TypeVar("_T")
_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """`Retry-After` as seconds: either a number or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):  # "nan" or "inf" would stall a retry schedule forever
        return None
    return max(seconds, 0.0)


def _outcome(status: int) -> str:
    if 200 <= status < 300:
        return "ok"
    if status == 401:
        return "unauthorized"
    if status in (408, 429):
        return "throttled"
    return "server_error" if status >= 500 else "rejected"


@dataclass(frozen=True)
class Answer:
    """An HTTP answer, its body read whole."""

    status_code: int
    headers: httpx.Headers
    content: bytearray


class MahakClient:
    def __init__(
        self,
        base_url: str,
        username: str,
        password: SecretStr | str,
        *,
        database_id: int | None = None,
        package_no: str | None = None,
        login_endpoint: str = "LoginV2",
        use_v2: bool = True,
        timeout: float = 120.0,
        refresh_margin: float = 300.0,
        http: httpx.AsyncClient | None = None,
        language: str = "fa",
        app_id: str = "mahak-sync",
        client_version: str = "0.1.0",
        observe: Callable[[str, str, float], None] | None = None,
    ) -> None:
        if login_endpoint not in ("Login", "LoginV2"):
            raise ValueError(f"login_endpoint must be Login or LoginV2, not {login_endpoint!r}")
        secret = password if isinstance(password, SecretStr) else SecretStr(password)
        self._base_url = base_url.rstrip("/")
        self._username = username
        self._raw_password = secret
        self._password_md5 = SecretStr(md5_password(secret.get_secret_value()))
        self._database_id = database_id
        self._package_no = package_no
        self._login_endpoint = login_endpoint
        self._use_v2 = use_v2
        self._refresh_margin = refresh_margin
        self._language = language
        self._app_id = app_id
        self._client_version = client_version
        # Told (endpoint, outcome, seconds) of every request: metrics, injected by the runtime.
        self._observe = observe
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout)
        self._session: Session | None = None
        self._login_lock = asyncio.Lock()
        self._log = get_logger("mahak_client", base_url=self._base_url, user=username)
        register_secret(secret.get_secret_value())
        register_secret(self._password_md5.get_secret_value())

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> MahakClient:
        kwargs: dict[str, Any] = {
            "database_id": settings.mahak_database_id,
            "package_no": settings.mahak_package_no,
            "login_endpoint": settings.mahak_login_endpoint,
            "use_v2": settings.mahak_use_v2,
            "timeout": settings.mahak_timeout_seconds,
            "refresh_margin": settings.mahak_token_refresh_margin_seconds,
            "language": settings.mahak_language,
            "app_id": settings.mahak_app_id,
            "client_version": settings.mahak_client_version,
        }
        kwargs.update(overrides)
        return cls(
            settings.mahak_base_url, settings.mahak_username, settings.mahak_password, **kwargs
        )

    async def __aenter__(self) -> MahakClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    def __repr__(self) -> str:
        return f"MahakClient(base_url={self._base_url!r}, username={self._username!r})"

    # --- Session -----------------------------------------------------------------------

    @property
    def visitor_id(self) -> int | None:
        return self._session.login.visitor_id if self._session else None

    @property
    def database_id(self) -> int | None:
        if self._database_id is not None:
            return self._database_id
        return self._session.login.database_id if self._session else None

    async def login(self, force: bool = False) -> LoginData:
        """The current login; logs in when there is none, it is near expiry, or `force`."""
        session = self._session
        if not force and session and session.fresh(time.time()):
            return session.login
        return await self._renew(stale=session.token if session else None)

    async def _renew(self, *, stale: str | None) -> LoginData:
        """Replace the token `stale` (None: no token yet); concurrent callers share one login."""
        async with self._login_lock:
            current = self._session
            if current and current.token != stale and current.fresh(time.time()):
                return current.login  # renewed by another caller while we waited
            try:
                login = await self._do_login()
            except MahakError as exc:
                raise exc.scrub(self._secrets()) from None
            register_secret(login.user_token)
            self._session = Session.start(
                login, now=time.time(), refresh_margin=self._refresh_margin
            )
            self._log.info(
                "mahak.login",
                endpoint=self._login_endpoint,
                visitor_id=login.visitor_id,
                database_id=login.database_id,
            )
            return login

    def _login_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "userName": self._username,
            "password": self._password_md5.get_secret_value(),
        }
        if self._login_endpoint == "LoginV2":
            extended = {
                "databaseId": self._database_id,
                "packageNo": self._package_no,
                "language": self._language,
                "appId": self._app_id,
                "description": self._app_id,
                "clientVersion": self._client_version,
            }
            body.update({k: v for k, v in extended.items() if v is not None})
        return body

    async def _do_login(self) -> LoginData:
        endpoint = self._login_endpoint
        response = await self._send(endpoint, self._login_body(), token=None)
        if response.status_code in (401, 403):
            raise MahakAuthError(
                "login refused",
                endpoint=endpoint,
                status_code=response.status_code,
                mahak_message=self._error_message(response),
            )
        self._raise_for_status(endpoint, response)
        payload = self._decode(endpoint, response)
        return envelope.parse_login(endpoint, payload, status=response.status_code)

    # --- Transport ---------------------------------------------------------------------

    def _secrets(self) -> list[str | None]:
        return [
            self._raw_password.get_secret_value(),
            self._password_md5.get_secret_value(),
            self._session.token if self._session else None,
        ]

    async def _send(self, endpoint: str, body: dict[str, Any], *, token: str | None) -> Answer:
        headers = dict(_HEADERS)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        content = json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
        url = f"{self._base_url}/Sync/{endpoint}"
        started = time.monotonic()
        outcome = "connection_failed"
        try:
            async with self._http.stream("POST", url, content=content, headers=headers) as response:
                # Read into one growing buffer: `read()` holds the chunks and their join at
                # once, twice the body (a whole entity's answer runs to 100+ MB).
                received = bytearray()
                async for chunk in response.aiter_bytes():
                    received += chunk
            outcome = _outcome(response.status_code)
            return Answer(response.status_code, response.headers, received)
        except httpx.TimeoutException as exc:
            outcome = "timeout"
            raise MahakTransientError(
                f"timed out ({type(exc).__name__})", endpoint=endpoint
            ) from None
        except httpx.TransportError as exc:
            raise MahakTransientError(
                f"connection failed ({type(exc).__name__}: {str(exc)[:120]})", endpoint=endpoint
            ) from None
        finally:
            if self._observe is not None:
                self._observe(endpoint, outcome, time.monotonic() - started)

    @staticmethod
    def _error_message(response: Answer) -> str | None:
        try:
            payload = json.loads(response.content)
        except (ValueError, RecursionError):
            return None
        # Folds key case, so the 401 body's lowercase `message` is read as well.
        return envelope.mahak_message(payload)[0]

    def _raise_for_status(self, endpoint: str, response: Answer) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        message = self._error_message(response)
        if status in (408, 429) or status >= 500:
            raise MahakTransientError(
                "server busy or failing",
                endpoint=endpoint,
                status_code=status,
                mahak_message=message,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        if status == 401:
            raise MahakTransientError(
                "unauthorized even after a fresh login",
                endpoint=endpoint,
                status_code=status,
                mahak_message=message,
            )
        raise MahakPermanentError(
            "request rejected", endpoint=endpoint, status_code=status, mahak_message=message
        )

    @staticmethod
    def _decode(endpoint: str, response: Answer) -> Any:
        return envelope.load_json(
            endpoint,
            response.content,
            status=response.status_code,
            content_type=response.headers.get("Content-Type"),
        )

    async def _call(
        self,
        endpoint: str,
        body: dict[str, Any],
        parse: Callable[..., _T],
        *,
        decoded: bool = True,
        fast: Callable[[bytes | bytearray], _T | None] | None = None,
    ) -> _T:
        """POST an authenticated call (one transparent re-login on 401), classify, parse
        (the decoded JSON, or with `decoded=False` the body's bytes). `fast` may parse a
        successful body from its bytes first (None: it leaves it to `parse`)."""
        try:
            login = await self.login()
            token = login.user_token
            response = await self._send(endpoint, body, token=token)
            if response.status_code == 401:
                self._log.info("mahak.unauthorized_relogin", endpoint=endpoint)
                login = await self._renew(stale=token)
                response = await self._send(endpoint, body, token=login.user_token)
            self._raise_for_status(endpoint, response)
            if fast is not None and (parsed := fast(response.content)) is not None:
                return parsed
            payload = self._decode(endpoint, response) if decoded else response.content
            return parse(endpoint, payload, status=response.status_code)
        except MahakError as exc:
            raise exc.scrub(self._secrets()) from None

    def _data_path(self, name: str) -> str:
        return f"{name}V2" if self._use_v2 else name

    # --- GetAllData --------------------------------------------------------------------

    async def get_all_data(
        self, from_versions: Mapping[str, int], *, page_size: int | None = None
    ) -> dict[str, EntityBatch]:
        """Rows newer than each cursor (Mahak's boundary may be inclusive: see `pager.py`)."""
        if not from_versions:
            return {}
        batches = await self._get_all_data(
            from_versions,
            page_size,
            envelope.parse_get_all_data,
            # Issue 16: clean answers without a Python call per field (fastparse.py).
            fast=parse_get_all_data_fast,
        )
        for name, batch in batches.items():
            if batch.rejected:
                self._log.warning(
                    "mahak.rows_rejected",
                    entity=name,
                    count=len(batch.rejected),
                    first_error=batch.rejected[0].error,
                )
        return batches

    async def get_all_data_lean(
        self, from_versions: Mapping[str, int], *, page_size: int | None = None
    ) -> dict[str, EntityBatch]:
        """`get_all_data`, its rows left unparsed (`lean.LeanRow`) where their id and
        RowVersion can be read: for answers that may hold a whole entity (no `pageSize`),
        parsed a part at a time by whoever stores them (`lean.parse_lean`)."""
        if not from_versions:
            return {}
        return await self._get_all_data(
            from_versions, page_size, lean.parse_get_all_data_lean, decoded=False
        )

    async def get_row_stamps(
        self, from_versions: Mapping[str, int], *, page_size: int | None = None
    ) -> dict[str, list[RowStamp]]:
        """The same request as `get_all_data`, answered with each row's id and RowVersion
        only (None where unreadable), read leanly: no row is validated (a quiet cycle's
        look-back check). Rows in wire order, quarantined ones after them."""
        batches = await self.get_all_data_lean(from_versions, page_size=page_size)
        return {
            name: [
                *(RowStamp(getattr(r, ENTITIES[name].id_field), r.row_version) for r in b.rows),
                *(RowStamp(r.mahak_id, r.row_version) for r in b.rejected),
            ]
            for name, b in batches.items()
        }

    async def _get_all_data(
        self,
        from_versions: Mapping[str, int],
        page_size: int | None,
        parse: Callable[..., _T],
        *,
        decoded: bool = True,
        fast: Callable[[bytes | bytearray, list[str]], _T | None] | None = None,
    ) -> _T:
        specs = [entity(name) for name in from_versions]
        login = await self.login()
        body: dict[str, Any] = {spec.request_field: int(from_versions[spec.name]) for spec in specs}
        if page_size is not None:
            body["pageSize"] = int(page_size)
        if login.visitor_id is not None:
            body["currentVisitorId"] = login.visitor_id
        names = [spec.name for spec in specs]
        return await self._call(
            self._data_path("GetAllData"),
            body,
            lambda endpoint, payload, status: parse(endpoint, payload, names, status=status),
            decoded=decoded,
            fast=None if fast is None else lambda content: fast(content, names),
        )

    # --- SaveAllData -------------------------------------------------------------------

    async def save_all_data(self, request: SaveAllDataRequest) -> SaveAllDataResult:
        """Send once; per-record failures come back as data (`result.failures()`)."""
        result = await self._call(
            self._data_path("SaveAllData"), request.to_wire(), envelope.parse_save_all_data
        )
        result.fill_client_ids(request)
        failures = result.failures()
        if failures:
            self._log.warning(
                "mahak.save_partial_failure",
                failed=len(failures),
                first=f"{failures[0].collection}[{failures[0].index}] "
                f"{failures[0].property}: {failures[0].message}",
            )
        return result

    # --- Disputes ----------------------------------------------------------------------

    async def _database_id_for(self, endpoint: str) -> int:
        await self.login()
        if self.database_id is None:
            raise MahakPermanentError(
                "no database id: set MAHAK_DATABASE_ID (login did not report one)",
                endpoint=endpoint,
            )
        return self.database_id

    async def solve_order_dispute(self, items: list[OrderDisputeItem]) -> SolveOrderDisputeResult:
        endpoint = "SolveOrderDispute"
        body = {
            "databaseId": await self._database_id_for(endpoint),
            "disputeItems": [item.to_wire() for item in items],
        }
        return await self._call(endpoint, body, envelope.parse_solve_order_dispute)

    async def solve_dispute(self, entity_name: str, items: list[DisputeItem]) -> bool:
        """Ask Mahak to re-emit rows whose RowVersion we hold differs from its own.

        `entity_name` is Mahak's name (`ENTITIES[name].dispute_name`) or our logical name.
        Returns Mahak's `Result`.
        """
        endpoint = "SolveDispute"
        name = ENTITIES[entity_name].dispute_name if entity_name in ENTITIES else entity_name
        body = {
            "databaseId": await self._database_id_for(endpoint),
            "entityName": name,
            "disputeItems": [item.to_wire() for item in items],
        }
        ok, message, code = await self._call(endpoint, body, envelope.parse_outcome)
        if not ok:
            self._log.warning(
                "mahak.solve_dispute_refused", entity=name, message=message, code=code
            )
        return ok
