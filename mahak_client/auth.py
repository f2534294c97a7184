"""Login conventions: the MD5 password and when a cached token must be renewed.

Mahak expects the lowercase hex MD5 of the password (the JWT it hands back embeds that same
32-hex value). A configured value that already is 32 hex digits is taken to be the MD5 itself,
so operators may store the hash instead of the password.

The token is a JWT whose `exp` tells when it dies (7 days on the real server). We only read
that claim, we never verify the signature: the server is the authority, and a token we cannot
decode is simply used until the server answers 401.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from .models import LoginData

_MD5_HEX = re.compile(r"^[0-9a-fA-F]{32}$")


def md5_password(password: str) -> str:
    if _MD5_HEX.match(password):
        return password.lower()
    return hashlib.md5(password.encode("utf-8")).hexdigest()  # noqa: S324 - Mahak's convention


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWT, unverified; None when the token is not a readable JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        return None
    return claims if isinstance(claims, dict) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


@dataclass
class Session:
    """One successful login: the token and when to stop trusting it."""

    login: LoginData
    refresh_at: float | None = None  # epoch seconds; None = valid until the server says 401

    @property
    def token(self) -> str:
        return self.login.user_token

    @classmethod
    def start(cls, login: LoginData, *, now: float, refresh_margin: float) -> Session:
        claims = jwt_claims(login.user_token) or {}
        exp = _number(claims.get("exp"))
        if exp is None or exp <= now:
            # Unreadable, or already past by our clock (a skewed clock would otherwise force
            # a login before every call): trust it until the server answers 401.
            return cls(login)
        iat = _number(claims.get("iat"))
        lifetime = exp - (iat if iat is not None else now)
        # A margin longer than half the token's life would force a login on every call
        # (short-lived tokens in tests, or a server with a skewed clock).
        margin = min(refresh_margin, max(lifetime, 0) / 2)
        return cls(login, refresh_at=exp - margin)

    def fresh(self, now: float) -> bool:
        return self.refresh_at is None or now < self.refresh_at
