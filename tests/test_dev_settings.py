"""Settings find the running dev stack from the project folder (issue 15, "First run"): its env
file is read while the stack that wrote it runs; the environment still wins, and a shell that
names another Temporal or database reads nothing of it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mahak_sync.config import load_settings, running_dev_env_file

CONFIG_NAMES = ("MAHAK_", "DATABASE_URL", "TEMPORAL_", "WEBHOOK_", "PAYMENT_")


@pytest.fixture
def listening() -> Iterator[str]:
    """A live "Temporal" frontend address (a listening socket)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)  # never accepted: room for every probe of a test
        yield f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith(CONFIG_NAMES):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".data").mkdir()
    return tmp_path


def _write(project: Path, pid: int, address: str) -> Path:
    path = project / ".data" / "dev.env"
    path.write_text(
        f"MAHAK_SYNC_DEV_PID='{pid}'\n"
        f"TEMPORAL_ADDRESS='{address}'\n"
        "DATABASE_URL='postgresql://postgres:@/mahak_sync?host=/x'\n"
        "MAHAK_USERNAME='shop'\n"
        "MAHAK_PASSWORD='secret'\n"
        "WEBHOOK_SECRET='abc123abc123'\n"
    )
    return path


def test_the_running_stack_is_read_and_the_environment_wins(
    project: Path, listening: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = _write(project, os.getpid(), listening)
    assert running_dev_env_file() == Path(".data/dev.env")
    s = load_settings()
    assert s.temporal_address == listening and s.mahak_username == "shop"
    assert s.database_url is not None and s.mahak_password.get_secret_value() == "secret"
    # The same system named in the environment: still the stack's file, the environment first.
    monkeypatch.setenv("TEMPORAL_ADDRESS", listening)
    monkeypatch.setenv("MAHAK_USERNAME", "other-user")
    s = load_settings()
    assert s.mahak_username == "other-user" and s.webhook_secret.get_secret_value()
    # `mahak-sync dev` itself never reads a stack's file.
    assert load_settings(dev_stack=False).webhook_secret.get_secret_value() == ""
    # Another data directory: another stack's file (none here).
    monkeypatch.setenv("MAHAK_SYNC_DATA_DIR", str(project / "elsewhere"))
    assert running_dev_env_file() is None
    assert env_file.exists()


@pytest.mark.parametrize("name", ["TEMPORAL_ADDRESS", "DATABASE_URL"])
def test_a_shell_of_another_system_reads_nothing_of_the_stack(
    project: Path, listening: str, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    _write(project, os.getpid(), listening)
    monkeypatch.setenv(name, "elsewhere:7233" if name == "TEMPORAL_ADDRESS" else "postgresql://x/y")
    assert running_dev_env_file() is None
    s = load_settings()
    assert s.mahak_username == "" and s.webhook_secret.get_secret_value() == ""


def test_a_stopped_stack_is_not_read(project: Path, listening: str) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _write(project, gone.pid, listening)
    assert running_dev_env_file() is None
    # Alive, but its Temporal does not answer (a pid reused by another process).
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        _write(project, os.getpid(), f"127.0.0.1:{closed.getsockname()[1]}")
    assert running_dev_env_file() is None
