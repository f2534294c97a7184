"""Mahak's login token: an HS256 JWT with the LIVE claims, built with the stdlib only.

The `userToken` claim is a JSON *string* (as LIVE shows) holding the account, the MD5 of the
password and the ids Login returned. Verification answers only "valid or not": every failure
(missing header, odd scheme, bad signature, expired, revoked) is the same 401 upstream.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from typing import Any

from .wire import now_in_tehran

_BEARER = re.compile(r"^\s*bearer\s+(\S+)\s*$", re.IGNORECASE)
# §2/§11.8 the forms Mahak's own clients use: BZ `bearer : <t>`, MO/NG a bare `<t>`.
_LENIENT = re.compile(r"^\s*(?:bearer\s*:?\s*)?([^\s:]+)\s*$", re.IGNORECASE)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, signing_input: str) -> str:
    return _b64(hmac.new(secret.encode(), signing_input.encode("ascii"), hashlib.sha256).digest())


def issue_token(
    secret: str,
    *,
    username: str,
    password_md5_hex: str,
    database_id: int,
    visitor_id: int,
    sync_id: int,
    package_no: str,
    credit_day: int,
    client_ip: str,
    lifetime_seconds: int,
    mahak_id: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """Return (token, claims)."""
    now = int(time.time())
    mahak_id = mahak_id or str(uuid.uuid4())
    user_token = {
        "UserName": username,
        "Password": password_md5_hex,
        "MahakID": mahak_id,
        "CreateTime": now_in_tehran().isoformat(timespec="microseconds"),
        "IP": client_ip,
        "DatabaseId": database_id,
        "DatabaseType": 1301,
        "SyncId": sync_id,
        "VisitorId": visitor_id,
        "Language": "en-US",
        "CreditDay": credit_day,
        "PackageNo": package_no,
    }
    claims = {
        "MahakID": mahak_id,
        "userToken": json.dumps(user_token, ensure_ascii=False),
        "nbf": now,
        "exp": now + lifetime_seconds,
        "iat": now,
    }
    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = ".".join(
        _b64(json.dumps(part, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        for part in (header, claims)
    )
    return f"{signing_input}.{_sign(secret, signing_input)}", claims


def bearer_token(authorization: str | None, *, lenient: bool = False) -> str | None:
    """`Bearer <token>` / `bearer <token>`; any other form is not a credential, unless
    `lenient` (mode `token_forms="lenient"`): then `bearer : <token>` and a bare token too."""
    if not authorization:
        return None
    m = (_LENIENT if lenient else _BEARER).match(authorization)
    return m.group(1) if m else None


def verify_token(secret: str, token: str, *, now: float | None = None) -> dict[str, Any] | None:
    """The claims of a well-signed, current token; None otherwise."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    signing_input = f"{parts[0]}.{parts[1]}"
    if not hmac.compare_digest(_sign(secret, signing_input), parts[2]):
        return None
    try:
        header = json.loads(_unb64(parts[0]))
        claims = json.loads(_unb64(parts[1]))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(claims, dict):
        return None
    now = time.time() if now is None else now
    exp, nbf = claims.get("exp"), claims.get("nbf", 0)
    if not isinstance(exp, int) or now >= exp or (isinstance(nbf, int) and now < nbf - 5):
        return None
    return claims
