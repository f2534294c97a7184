"""What can go wrong when talking to Mahak, sorted by what the caller should do about it.

- `MahakTransientError`: try again later (timeouts, dropped connections, 5xx, 408, 429 with its
  `Retry-After`, a 401 that survives one fresh login). `retry_after` is a hint in seconds.
- `MahakPermanentError`: retrying the same request cannot help (validation, 4xx, `Result:false`);
  `MahakAuthError` (bad credentials) and `MahakProtocolError` (a body that is not the documented
  envelope: HTML, truncated JSON, wrong shape) are the two cases callers single out.

Every error carries the endpoint, the HTTP status and Mahak's own message/code so an operator
can act on it. None of them ever carries the password or a token: messages are built from
those fields only, and the client scrubs its secrets from them before raising as a backstop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_REDACTED = "***"


class MahakError(Exception):
    retryable: bool = False

    def __init__(
        self,
        summary: str,
        *,
        endpoint: str,
        status_code: int | None = None,
        mahak_message: str | None = None,
        code: int | None = None,
    ) -> None:
        self.summary = summary
        self.endpoint = endpoint
        self.status_code = status_code
        self.mahak_message = mahak_message
        self.code = code
        super().__init__(self._render())

    def _details(self) -> list[str]:
        parts = []
        if self.status_code is not None:
            parts.append(f"HTTP {self.status_code}")
        if self.code is not None:
            parts.append(f"code {self.code}")
        if self.mahak_message:
            parts.append(f"Mahak says: {self.mahak_message}")
        return parts

    def _render(self) -> str:
        details = self._details()
        suffix = f" ({'; '.join(details)})" if details else ""
        return f"Mahak {self.endpoint}: {self.summary}{suffix}"

    def scrub(self, secrets: Iterable[str | None]) -> MahakError:
        """Mask any secret value that slipped into the text (e.g. echoed by a proxy page)."""
        for secret in secrets:
            if not secret or len(secret) < 4:
                continue
            self.summary = self.summary.replace(secret, _REDACTED)
            if self.mahak_message:
                self.mahak_message = self.mahak_message.replace(secret, _REDACTED)
        self.args = (self._render(),)
        return self

    def _state(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "status_code": self.status_code,
            "mahak_message": self.mahak_message,
            "code": self.code,
        }

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructor: teach pickle (multiprocessing, test runners) to rebuild it.
        return (_rebuild, (type(self), self.summary, self._state()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


def _rebuild(cls: type[MahakError], summary: str, state: dict[str, Any]) -> MahakError:
    return cls(summary, **state)


class MahakTransientError(MahakError):
    retryable = True

    def __init__(self, summary: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(summary, **kwargs)

    def _details(self) -> list[str]:
        parts = super()._details()
        if self.retry_after is not None:
            parts.append(f"retry after {self.retry_after:g}s")
        return parts

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "retry_after": self.retry_after}


class MahakPermanentError(MahakError):
    retryable = False


class MahakAuthError(MahakPermanentError):
    """Mahak refused the credentials (or the login endpoint refused us outright)."""


class MahakProtocolError(MahakPermanentError):
    """The body is not what the protocol documents: HTML, truncated or non-JSON, wrong shape."""
