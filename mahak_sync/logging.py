"""structlog, configured once per process: JSON in production, console in dev.

Secrets must never reach a log line. Call sites are expected to log ids, not credentials,
but the redaction processor is the backstop: any key that looks like a secret is masked,
and known secret values registered at start-up are masked wherever they appear.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

_SECRET_KEY = re.compile(r"pass(word)?|secret|token|authorization|api[_-]?key|signature", re.I)
_REDACTED = "***"
_known_secrets: set[str] = set()
_configured = False


def register_secret(value: str | None) -> None:
    """Mask this exact value in every later log line (e.g. the Mahak password, a token)."""
    if value and len(value) >= 4:
        _known_secrets.add(value)


def _mask(value: Any) -> Any:
    if isinstance(value, str) and _known_secrets:
        for secret in _known_secrets:
            if secret in value:
                value = value.replace(secret, _REDACTED)
    return value


def redact_secrets(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key in list(event_dict):
        if _SECRET_KEY.search(key):
            event_dict[key] = _REDACTED
        else:
            event_dict[key] = _mask(event_dict[key])
    return event_dict


def configure_logging(fmt: str = "console", level: str = "INFO") -> None:
    global _configured
    log_level = logging.getLevelName(level.upper())
    if not isinstance(log_level, int):
        log_level = logging.INFO

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        redact_secrets,
    ]
    renderer: Any
    if fmt == "json":
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())

    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(log_level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries (temporalio, uvicorn, httpx) log through stdlib logging.
    logging.basicConfig(level=max(log_level, logging.WARNING), stream=sys.stderr, force=True)
    _configured = True


def get_logger(name: str | None = None, **context: Any) -> structlog.stdlib.BoundLogger:
    if not _configured:
        configure_logging()
    return structlog.get_logger(name).bind(**context)
