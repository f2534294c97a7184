"""`bench/simulator.py --quick` runs and prints figures that hang together (issue 16).

No timing is asserted: each table size gets a line with positive times, and the printed
ratios are the quotients of the printed times.
"""

from __future__ import annotations

import re

from tests.bench_quick import run_quick

NUMBER = r"([\d.]+)"
LINE = re.compile(
    rf"([\d,]+) rows\s+page\s+{NUMBER}\s+no-change\s+{NUMBER}\s+query\s+{NUMBER}"
    rf"\s+scan\s+{NUMBER}\s+\(\s*{NUMBER} x faster than the scan\)"
    rf"\s+body: encoder\s+{NUMBER}, json\s+{NUMBER} \(\s*{NUMBER} x\)"
)


def test_quick_run_prints_a_line_per_table_size() -> None:
    stdout = run_quick("simulator")
    found = [m.groups() for m in map(LINE.search, stdout.splitlines()) if m]
    assert [int(g[0].replace(",", "")) for g in found] == [2000, 10000], stdout
    for g in found:
        page, nothing, query, scan, faster, encoder, stdlib, vs_json = map(float, g[1:])
        assert min(page, nothing, query, scan, encoder, stdlib) > 0
        assert faster > 0 and vs_json > 0
