"""The deployment files users run must at least be valid and complete."""

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_docker_compose_file_is_valid() -> None:
    exe = shutil.which("docker-compose")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is missing in CI: scripts/test should have installed it")
        pytest.skip("docker-compose not installed")
    proc = subprocess.run(
        [exe, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr


def test_image_contains_every_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+) ", dockerfile, re.M))
    assert set(packages) <= copied, f"Dockerfile misses {set(packages) - copied}"
    # The entry points are scripts beside the packages (not installed modules): the image's
    # commands run them from its working directory.
    assert "COPY worker.py starter.py ./" in dockerfile


def test_compose_passes_the_contract_environment() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    for name in (
        "DATABASE_URL",
        "TEMPORAL_ADDRESS",
        "TEMPORAL_NAMESPACE",
        "TEMPORAL_TASK_QUEUE",
        "MAHAK_BASE_URL",
        "MAHAK_USERNAME",
        "MAHAK_PASSWORD",
        "MAHAK_DATABASE_ID",
        "MAHAK_PACKAGE_NO",
        "MAHAK_PAGE_SIZE",
        "WEBHOOK_SECRET",
    ):
        assert re.search(rf"^\s+{name}:", compose, re.M), name


def test_ci_runs_the_readme_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "\n    ./scripts/test\n" in readme and "exec ./scripts/test" in ci
    assert "\n    ./scripts/dev\n" in readme
    assert "mahak-sync dev" in (ROOT / "scripts" / "dev").read_text()


def _dashboard_metrics() -> set[str]:
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/mahak-sync.json").read_text())
    names: set[str] = set()
    for panel in dashboard["panels"]:
        exprs = [target["expr"] for target in panel["targets"]]
        assert exprs and all(exprs), f"panel {panel['title']!r} has no query"
        for expr in exprs:
            found = set(re.findall(r"\b((?:mahak_sync|temporal)_[a-z_]+)\b", expr))
            assert found, f"panel {panel['title']!r} names no metric"
            names |= {re.sub(r"_(bucket|count|sum)$", "", n) for n in found}
    return names


def test_every_dashboard_panel_queries_a_metric_the_code_exports() -> None:
    from mahak_sync.metrics import METRICS

    names = _dashboard_metrics()
    ours = {n for n in names if n.startswith("mahak_sync_")}
    assert ours <= set(METRICS), ours - set(METRICS)
    # Every declared metric is recorded somewhere (a count/gauge/observe_seconds call).
    code = "\n".join(
        p.read_text()
        for package in ("activities", "workflows", "mahak_sync", "mahak_client")
        for p in (ROOT / package).rglob("*.py")
    )
    recorded = set(re.findall(r'(?:count|gauge|observe_seconds)\(\s*"(mahak_sync_[a-z_]+)"', code))
    assert set(METRICS) - recorded == set()
    # The SDK's are checked against a real scrape in tests/test_metrics.py.
    assert {n for n in names if n.startswith("temporal_")}


def test_compose_scrapes_and_provisions_the_dashboard() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "METRICS_ADDRESS: 0.0.0.0:9464" in compose and 'profiles: ["monitoring"]' in compose
    scrape = (ROOT / "deploy/prometheus.yml").read_text()
    assert "worker:9464" in scrape and "webhook:9464" in scrape
