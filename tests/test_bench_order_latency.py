"""`bench.order_latency --quick` runs end to end and prints sane figures (no timing asserted:
speed is the benchmark's business, not the tests')."""

from __future__ import annotations

import re

import pytest

from tests.bench_quick import run_quick


@pytest.mark.slow
def test_quick_run_prints_latency_cpu_history_and_ratios() -> None:
    text = run_quick("order_latency")

    figures = {}
    for label in ("orders", "floor"):
        m = re.search(
            rf"^\s+{label}\s+p50\s+([\d.]+) ms\s+p95\s+([\d.]+) ms\s+p99\s+([\d.]+) ms.*?"
            r"(\d+)/(\d+) done,\s+([\d.]+)/s\s+CPU per item: worker\s+([\d.]+) ms\s+"
            r"temporal\s+([\d.]+) ms",
            text,
            re.M,
        )
        assert m, f"no {label} line in:\n{text}"
        p50, p95, p99, done, sent, rate, worker_cpu, server_cpu = map(float, m.groups())
        # Every callback (workflow) made it, latencies are ordered and positive (a negative
        # one would mean the simulator's `received_at` belongs to another order).
        assert done == sent == 10, text
        assert 0 < p50 <= p95 <= p99, text
        assert rate > 0 and worker_cpu > 0 and server_cpu > 0, text
        figures[label] = p50

    assert re.search(r"poller\s+p50\s+30000 ms\s+p95\s+57000 ms\s+p99\s+59400 ms", text), text
    history = re.search(
        r"history events per order ([\d.]+) \(floor (\d+)\); activities in order: ([LRS]+)", text
    )
    assert history, text
    # The happy path sends once: exactly one activity stands for the send.
    assert history.group(3).count("S") == 1 and float(history.group(1)) > 0, text
    assert re.search(r"ratios: p50 [\d.]+ x floor, p99 [\d.]+ x floor", text), text
