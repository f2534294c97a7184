"""Waiting for the services a process depends on at start-up (PostgreSQL, Temporal).

A worker started before its database or Temporal is up (a reboot, `docker compose up`, a
rolling restart of the database) waits with exponential backoff and says so once per failed
try, instead of exiting at once. A stop event (SIGINT/SIGTERM) ends the wait cleanly.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from .logging import get_logger

T = TypeVar("T")

# Exit status of a process that cannot run as configured (EX_CONFIG): restarting won't help.
EXIT_CONFIG = 78
# Backoff of the first retry; later ones double up to the caller's maximum.
DEFAULT_INITIAL_SECONDS = 1.0
_ERROR_MAX_CHARS = 300
# `scheme://user:password@host` -> `scheme://user:***@host` (asyncpg, URLs in messages).
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s]*@")
_KEY_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)\S+", re.I)


class StartupAborted(Exception):
    """The stop event was set while waiting for a dependency."""

    def __init__(self, dependency: str) -> None:
        super().__init__(f"stopped while waiting for {dependency}")
        self.dependency = dependency


def describe_error(exc: BaseException) -> str:
    """`TypeName: short message` for a log line: one line, bounded, passwords masked."""
    message = " ".join(str(exc).split())
    message = _URL_PASSWORD.sub(r"\g<head>***@", message)
    message = _KEY_PASSWORD.sub(r"\g<head>***", message)
    if len(message) > _ERROR_MAX_CHARS:
        message = message[: _ERROR_MAX_CHARS - 3] + "..."
    name = type(exc).__name__
    return f"{name}: {message}" if message else name


def backoff_delay(attempt: int, *, initial: float, maximum: float) -> float:
    """Seconds to wait after failed try `attempt` (1-based): `initial` doubling up to
    `maximum`, less up to 10% jitter (so restarted workers do not retry in lock-step)."""
    base = min(maximum, initial * 2 ** min(attempt - 1, 32))
    return base * random.uniform(0.9, 1.0)


async def wait_for(
    name: str,
    connect_fn: Callable[[], Awaitable[T]],
    *,
    initial: float = DEFAULT_INITIAL_SECONDS,
    maximum: float = 30.0,
    give_up_after: float | None = None,
    stop: asyncio.Event | None = None,
    retry_if: Callable[[BaseException], bool] | None = None,
    attempt_timeout: float | None = None,
) -> T:
    """`await connect_fn()` until it succeeds; returns its result.

    Each failed try logs exactly one line: `waiting_for_dependency` (warning) with
    `dependency`, `attempt`, `retry_in` and `error`, or, on the try after which it gives up
    (`give_up_after` seconds since the first try), `dependency_unavailable` (error) before the
    last error is raised. An error `retry_if` rejects is raised at once (a wrong password is
    not an outage). Setting `stop` interrupts a try or a pause: `StartupAborted` is raised.
    `attempt_timeout` bounds one try (a connect to a black-holed address).
    """
    log = get_logger(__name__)
    stop = stop or asyncio.Event()
    initial = min(initial, maximum)
    started = time.monotonic()
    attempt = 0
    while True:
        if stop.is_set():
            raise StartupAborted(name)
        attempt += 1
        try:
            result = await _until_stopped(_attempt(connect_fn, attempt_timeout), stop, name)
        except StartupAborted:
            raise
        except Exception as exc:  # noqa: BLE001 - classified by `retry_if`
            if retry_if is not None and not retry_if(exc):
                raise
            delay = backoff_delay(attempt, initial=initial, maximum=maximum)
            elapsed = time.monotonic() - started
            if give_up_after is not None and elapsed + delay > give_up_after:
                log.error(
                    "dependency_unavailable",
                    dependency=name,
                    attempt=attempt,
                    waited=round(elapsed, 2),
                    error=describe_error(exc),
                )
                raise
            log.warning(
                "waiting_for_dependency",
                dependency=name,
                attempt=attempt,
                retry_in=round(delay, 2),
                error=describe_error(exc),
            )
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                continue
            raise StartupAborted(name) from None
        if attempt > 1:
            log.info(
                "dependency_ready",
                dependency=name,
                attempts=attempt,
                waited=round(time.monotonic() - started, 2),
            )
        return result


async def _attempt(connect_fn: Callable[[], Awaitable[T]], timeout: float | None) -> T:
    if timeout is None:
        return await connect_fn()
    async with asyncio.timeout(timeout):
        return await connect_fn()


async def _until_stopped(attempt: Awaitable[T], stop: asyncio.Event, name: str) -> T:
    """The attempt's result, unless `stop` is set first (then the attempt is cancelled)."""
    task = asyncio.ensure_future(attempt)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # we are cancelled: so is the try
        await _cancel(task)
        raise
    finally:
        stopper.cancel()
    if task.done():
        return task.result()
    await _cancel(task)
    raise StartupAborted(name)


async def _cancel(task: asyncio.Future[T]) -> None:
    """Cancel `task` and let it unwind (its `finally` blocks close what it opened)."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" warning


# --- what counts as "not up yet" ---------------------------------------------------------

# The server is not there or not accepting connections yet: refused, unresolvable host
# (container not started), timeouts, "the database system is starting up", shutting down,
# connection slots full, a connection dropped mid-handshake or mid-migration.
_POSTGRES_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,  # ConnectionRefusedError, socket.gaierror, TimeoutError, ...
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)


def postgres_is_starting(exc: BaseException) -> bool:
    """True for errors that mean "PostgreSQL is not reachable yet", worth waiting out; a
    wrong password, a missing database or a failing migration is not."""
    return isinstance(exc, _POSTGRES_TRANSIENT)


def temporal_is_starting(exc: BaseException) -> bool:
    """True unless Temporal answered and refused us (credentials, permissions, a bad
    request): "Failed client connect", UNAVAILABLE, a namespace not registered yet, ...
    are waited out."""
    from temporalio.service import RPCError, RPCStatusCode

    if temporal_refused_tls(exc):
        return False
    if isinstance(exc, RPCError):
        return exc.status not in {
            RPCStatusCode.UNAUTHENTICATED,
            RPCStatusCode.PERMISSION_DENIED,
            RPCStatusCode.INVALID_ARGUMENT,
            RPCStatusCode.UNIMPLEMENTED,
        }
    return True


# What the Temporal core's connect error says when TLS itself fails (rustls / tonic texts).
_TLS_FAILURES = ("InvalidCertificate", "certificate", "HandshakeFailure", "CorruptMessage")


def temporal_refused_tls(exc: BaseException) -> bool:
    """A connect that failed on TLS (a CA that did not sign the server's certificate, a
    client certificate refused): configuration to fix, not a server still starting."""
    return isinstance(exc, RuntimeError) and any(s in str(exc) for s in _TLS_FAILURES)
