"""`bench/initial_sync.py --quick` runs end to end (its own PostgreSQL, simulator, Temporal dev
server and worker process) and prints sane figures and ratios. No timing is asserted: speed
lives in the benchmark's own output (bench/RESULTS.md)."""

from __future__ import annotations

import re

import pytest

from tests.bench_quick import run_quick

pytestmark = pytest.mark.slow


def figure(out: str, pattern: str) -> float:
    found = re.search(pattern, out)
    assert found, f"{pattern!r} not in:\n{out}"
    return float(found.group(1).replace(",", ""))


def test_quick_initial_sync_bench_prints_sane_figures() -> None:
    out = run_quick("initial_sync")

    # 1000 details, 6 rows each, plus the seeded stores and categories, plus (issue 18) the
    # account's storefront rows (2 units, 2 attributes with 8 values, 2 price-level names,
    # 7 settings, a customer group, a promotion with a detail and an entity): all stored.
    stored = figure(out, r"product details, ([\d,]+) rows stored")
    assert stored == 6_006 + 25, out
    rates = {
        name: figure(out, rf"{name}\s+([\d,]+) rows/s")
        for name in ("end to end", "raw COPY", "per-row")
    }
    assert all(rate > 0 for rate in rates.values()), rates
    # Each ratio printed is its rate over the raw COPY's, and the raw COPY's is 1.
    for name, rate in rates.items():
        ratio = figure(out, rf"{name}\s+[\d,]+ rows/s\s+([\d.]+) x raw")
        assert ratio == pytest.approx(rate / rates["raw COPY"], abs=0.006), (name, out)
    assert figure(out, r"end to end / per-row: ([\d.]+) x") == pytest.approx(
        rates["end to end"] / rates["per-row"], abs=0.051
    )
    assert figure(out, r"no-change cycle at ([\d,]+) stored rows") == stored
    assert figure(out, r"median (\d+) ms") > 0
    rss = figure(out, r"worker peak RSS: (\d+) MB")
    assert 20 < rss < 4_000, "a Python worker's resident set, in MB"
    # The reconciliation found nothing to change (the bench raises otherwise) and measured
    # the worker's peak afresh.
    assert figure(out, r"reconciliation \(every entity from 0, no pageSize\): ([\d.]+) s") > 0
    assert 20 < figure(out, r"reconciliation .*worker peak RSS (\d+) MB") < 4_000
