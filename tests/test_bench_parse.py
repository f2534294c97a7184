"""`bench/parse.py --quick` runs and prints figures that hang together (issue 16).

No timing is asserted: only that each size gets a positive rate for the floor, the peer, the
lenient path and the client, and that the printed ratios are the quotients of the printed rates.
"""

from __future__ import annotations

import re

from tests.bench_quick import run_quick

LINE = re.compile(
    r"(?P<n>[\d,]+) rows \(.*MB\)\s+floor\s+(?P<floor>[\d,]+)\s+before\s+(?P<before>[\d,]+)"
    r"\s+lenient\s+(?P<lenient>[\d,]+)"
    r"\s+client\s+(?P<client>[\d,]+)\s+client/floor\s+(?P<vs_floor>[\d.]+)"
    r"\s+client/lenient\s+(?P<vs_lenient>[\d.]+)"
    r"\s+client/before\s+(?P<vs_before>[\d.]+)"
)


def test_quick_run_prints_a_line_per_size_with_consistent_ratios() -> None:
    stdout = run_quick("parse")
    found = [m.groupdict() for m in map(LINE.search, stdout.splitlines()) if m]
    assert [int(f["n"].replace(",", "")) for f in found] == [500, 2000], stdout
    for f in found:
        floor, before, lenient, client = (
            int(f[k].replace(",", "")) for k in ("floor", "before", "lenient", "client")
        )
        assert floor > 0 and before > 0 and lenient > 0 and client > 0
        # Ratios are printed to two decimals from unrounded rates.
        assert abs(float(f["vs_floor"]) - client / floor) <= 0.01 + 1e-3 * client / floor
        assert abs(float(f["vs_lenient"]) - client / lenient) <= 0.01 + 1e-3 * client / lenient
        assert abs(float(f["vs_before"]) - client / before) <= 0.01 + 1e-3 * client / before
