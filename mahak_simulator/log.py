"""The simulator's logger: structlog directly, not the project's logging setup.

The simulator is an independent witness and imports nothing of the project (a test checks
the import graph); when it runs inside the project (`mahak-sync simulator`, the test run),
structlog's process-wide configuration still formats and redacts its lines.
"""

from __future__ import annotations

from typing import Any

import structlog


def get_logger(name: str = "mahak_simulator", **context: Any) -> Any:
    return structlog.get_logger(name).bind(**context)
