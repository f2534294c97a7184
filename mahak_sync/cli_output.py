"""How `mahak-sync` prints: lines and tables for people by default, JSON with `--json`.

Texts end cleanly: a label with nothing after it is left out, never printed as "note:".
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .config import Settings

DEFAULT_UI_PORT = 8233  # the Temporal dev server's and docker-compose's Web UI port


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print JSON for programs instead of text for people"
    )


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def when(moment: datetime | None, *, now: datetime | None = None) -> str:
    """`2025-10-04 12:00:03 UTC (5 min ago)`; `-` for none."""
    if moment is None:
        return "-"
    now = now or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    stamp = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    seconds = (moment - now).total_seconds()
    return f"{stamp} ({relative(seconds)})"


def relative(seconds: float) -> str:
    later = seconds > 0
    span = abs(seconds)
    if span < 1:
        return "now"
    if span < 90:
        text = f"{span:.0f} s"
    elif span < 90 * 60:
        text = f"{span / 60:.0f} min"
    elif span < 36 * 3600:
        text = f"{span / 3600:.1f} h"
    else:
        text = f"{span / 86400:.1f} days"
    return f"in {text}" if later else f"{text} ago"


def fields(rows: Iterable[tuple[str, Any]]) -> list[str]:
    """`label   value` lines, aligned; rows whose value is None or empty are left out."""
    kept = [(label, str(value)) for label, value in rows if value not in (None, "", [])]
    width = max((len(label) for label, _ in kept), default=0)
    return [f"{label:<{width}}  {value}" for label, value in kept]


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A plain text table; None prints as `-`, long cells are cut at 60 characters."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [
        max([len(header), *(len(row[i]) for row in cells)]) for i, header in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return lines


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    text = " ".join(str(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def echo(lines: Iterable[str]) -> None:
    for line in lines:
        print(line)


# --- Temporal Web UI -----------------------------------------------------------------------


def web_ui_root(settings: Settings) -> str:
    """The Temporal Web UI: the one the dev stack (`mahak-sync dev`) reported in its ready
    file when this is that stack's Temporal, else the host of TEMPORAL_ADDRESS on the UI's
    default port (8233)."""
    ready = Path(settings.data_dir) / "dev-ready.json"
    try:
        info = json.loads(ready.read_text())
    except (OSError, ValueError):
        info = {}
    ui = info.get("temporal_ui") if isinstance(info, dict) else None
    if ui and (
        settings.temporal_address is None
        or settings.temporal_address == info.get("temporal_address")
    ):
        return str(ui).rstrip("/")
    address = settings.temporal_address or "localhost:7233"
    host = urlsplit(f"//{address}").hostname or "localhost"
    return f"http://{host}:{DEFAULT_UI_PORT}"


def workflow_url(settings: Settings, workflow_id: str) -> str:
    return (
        f"{web_ui_root(settings)}/namespaces/{settings.temporal_namespace}/workflows/{workflow_id}"
    )
