"""The benchmarks' smoke tests run each `bench.<name> --quick` the same way: as a process from
the project folder, whose exit must be 0 and whose printed figures the test then reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_quick(bench: str) -> str:
    """`python -m bench.<bench> --quick`: its stdout, once it exited 0."""
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{bench}", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout
