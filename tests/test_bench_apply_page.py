"""`bench/apply_page.py --quick` runs and prints figures that hang together (issue 16).

No timing is asserted: each scenario gets a positive rate, and each printed ratio is its rate
over the stronger of the two raw COPY baselines of the same run.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(
    r"^\s+(?P<label>raw text|raw bin|insert|update|replay)\s+(?P<rate>[\d,]+) rows/s\s+(?P<ratio>[\d.]+) x raw"
)

pytestmark = pytest.mark.slow


def test_quick_run_prints_each_scenario_with_its_ratio_to_raw_copy() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.apply_page", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "2000 product details, pages of 500, median of 1 runs:" in done.stdout, done.stdout
    found = {m["label"]: m for m in map(LINE.search, done.stdout.splitlines()) if m}
    assert set(found) == {"raw text", "raw bin", "insert", "update", "replay"}, done.stdout
    rates = {label: float(m["rate"].replace(",", "")) for label, m in found.items()}
    assert all(rate > 0 for rate in rates.values())
    baseline = max(rates["raw text"], rates["raw bin"])
    for label, m in found.items():
        assert (
            abs(float(m["ratio"]) - rates[label] / baseline)
            <= 0.01 + 1e-3 * rates[label] / baseline
        )
