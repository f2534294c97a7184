"""The deployment files users run must at least be valid and complete."""

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
