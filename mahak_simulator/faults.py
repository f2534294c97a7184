"""Injected failures: what a flaky network or an overloaded Mahak does to a client.

A fault rule matches requests by path suffix (`GetAllDataV2`, `SaveAllData`, `refunds`, ...;
by default every Sync endpoint), fires with probability `error_rate` (seeded dice, so a run
can be replayed) and, if `count` is given, only for the next `count` matching requests.
Effects, in order: `latency_ms`; then one of `drop_connection` (the request is read, then the
socket closed without any response), `drop_after_processing` (the same, but only after the
request took effect: the client cannot know an order was saved), `status_code` (with an optional `Retry-After`), `malformed` ("html": an error
page instead of JSON; "truncated": the real answer cut in half). A rule with only latency
delays the real answer.

The middleware sits outside the Starlette app: dropping a connection needs uvicorn's own
`send`, and counting must see every request, faulted or not.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal

from pydantic import BaseModel, Field

from .log import get_logger
from .state import SimState

Scope = dict[str, Any]


class FaultSpec(BaseModel):
    error_rate: float = Field(1.0, ge=0, le=1)
    status_code: int | None = Field(None, ge=400, le=599)
    retry_after: float | None = Field(None, ge=0)  # seconds, sent as `Retry-After`
    latency_ms: int = Field(0, ge=0, le=600_000)
    drop_connection: bool = False
    # The request is processed (e.g. an order committed), then the answer is lost.
    drop_after_processing: bool = False
    malformed: Literal["html", "truncated"] | None = None
    count: int | None = Field(None, ge=1)  # None: until cleared
    endpoints: list[str] | None = None  # path suffixes; None: every Sync endpoint


@dataclass
class _Rule:
    spec: FaultSpec
    remaining: int | None


class FaultInjector:
    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._rng = random.Random(self._seed)
            self._rules: list[_Rule] = []

    def add(self, spec: FaultSpec) -> int:
        with self._lock:
            self._rules.append(_Rule(spec, spec.count))
            return len(self._rules)

    @property
    def active(self) -> int:
        return len(self._rules)

    def pick(self, path: str, *, is_sync: bool) -> FaultSpec | None:
        """The fault to apply to this request, if any (consumes one of its `count`)."""
        lowered = path.lower()
        with self._lock:
            for rule in self._rules:
                spec = rule.spec
                if spec.endpoints is None:
                    if not is_sync:
                        continue
                elif not any(lowered.endswith(s.lower()) for s in spec.endpoints):
                    continue
                if self._rng.random() >= spec.error_rate:
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
                return spec
        return None


_HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>Service Unavailable</title></head><body>"
    "<h1>خطا در سرور</h1><p>The service is temporarily unavailable.</p></body></html>"
)


async def _respond(
    send: Any,
    status: int,
    body: bytes,
    content_type: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _drop_connection(send: Any) -> None:
    """Close the socket with nothing written, like a proxy or server crashing mid-request.

    uvicorn's `send` is a bound method of its request cycle, which holds the transport.
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:  # another server: the closest we can do is an incomplete body
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"1000")],
            }
        )
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        return
    transport.abort()
    cycle.disconnected = True  # so uvicorn does not try to write its own 500 afterwards


async def _drain(receive: Any) -> None:
    """Read the whole request, so closing the socket is a clean FIN, never a reset."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


async def _capture(app: Any, scope: Scope, receive: Any) -> tuple[dict[str, Any], bytes]:
    """Run the real endpoint and keep its answer instead of sending it."""
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def capture(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, capture)
    return start, b"".join(chunks)


async def _truncated(app: Any, scope: Scope, receive: Any, send: Any) -> None:
    start, body = await _capture(app, scope, receive)
    cut = body[: max(1, len(body) // 2)]
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(cut)).encode()))
    await send(
        {"type": "http.response.start", "status": start.get("status", 200), "headers": headers}
    )
    await send({"type": "http.response.body", "body": cut})


async def apply_fault(spec: FaultSpec, app: Any, scope: Scope, receive: Any, send: Any) -> None:
    if spec.latency_ms:
        await asyncio.sleep(spec.latency_ms / 1000)
    if spec.drop_connection or spec.drop_after_processing:
        if spec.drop_after_processing:
            await _capture(app, scope, receive)
        else:
            await _drain(receive)
        await _drop_connection(send)
        return
    if spec.malformed == "truncated":
        await _truncated(app, scope, receive, send)
        return
    status = spec.status_code or 200
    extra = (
        [(b"retry-after", f"{spec.retry_after:g}".encode())] if spec.retry_after is not None else []
    )
    if spec.malformed == "html":
        await _respond(send, status, _HTML_PAGE.encode(), "text/html; charset=utf-8", extra)
    elif spec.status_code is not None:
        # A 401 looks exactly like Mahak's own; other statuses like a gateway's JSON error.
        message = "Unauthorized" if status == 401 else HTTPStatus(status).phrase
        body = json.dumps({"message": message}).encode()
        await _respond(send, status, body, "application/json; charset=utf-8", extra)
    else:
        await app(scope, receive, send)


class FaultMiddleware:
    """Counts requests per endpoint and applies injected faults (see module docstring)."""

    def __init__(
        self, app: Any, state: SimState, faults: FaultInjector, *, endpoint_of: Any
    ) -> None:
        self.app = app
        self.state = state
        self.faults = faults
        self.endpoint_of = endpoint_of  # path -> (canonical path, endpoint name, is_sync) | None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        known = self.endpoint_of(scope["path"])
        if known is None:
            await self.app(scope, receive, send)
            return
        canonical, name, is_sync = known
        scope = {**scope, "path": canonical, "raw_path": canonical.encode()}
        with self.state.lock:
            self.state.requests[name] += 1
        spec = self.faults.pick(canonical, is_sync=is_sync)
        if spec is None:
            await self.app(scope, receive, send)
            return
        with self.state.lock:
            self.state.faults_injected += 1
        get_logger("mahak_simulator").info(
            "fault injected", endpoint=name, fault=spec.model_dump(exclude_defaults=True)
        )
        await apply_fault(spec, self.app, scope, receive, send)
