"""`bench/apply_page.py --quick` runs and prints figures that hang together (issue 16).

No timing is asserted: each scenario gets a positive rate, and each printed ratio is its rate
over the stronger of the two raw COPY baselines of the same run.
"""

from __future__ import annotations

import re

import pytest

from tests.bench_quick import run_quick

LINE = re.compile(
    r"^\s+(?P<label>raw text|raw bin|insert|update|replay)\s+(?P<rate>[\d,]+) rows/s\s+(?P<ratio>[\d.]+) x raw"
)

pytestmark = pytest.mark.slow


def test_quick_run_prints_each_scenario_with_its_ratio_to_raw_copy() -> None:
    stdout = run_quick("apply_page")
    assert "2000 product details, pages of 500, median of 1 runs:" in stdout, stdout
    found = {m["label"]: m for m in map(LINE.search, stdout.splitlines()) if m}
    assert set(found) == {"raw text", "raw bin", "insert", "update", "replay"}, stdout
    rates = {label: float(m["rate"].replace(",", "")) for label, m in found.items()}
    assert all(rate > 0 for rate in rates.values())
    baseline = max(rates["raw text"], rates["raw bin"])
    for label, m in found.items():
        assert (
            abs(float(m["ratio"]) - rates[label] / baseline)
            <= 0.01 + 1e-3 * rates[label] / baseline
        )
