"""Issue 15, "First run", against `mahak-sync dev` as a subprocess: the env file a second shell
needs (mode 0600), CLI commands from the project folder that find the running stack without it
(and never mix it with another system named in the environment), a restart that takes the same
ports (and says which one it could not take, and why), a simulator that remembers its data
across the restart, and a dying part that stops the stack with a non-zero exit naming it."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from dotenv import dotenv_values

from mahak_simulator.control import SimControl
from mahak_sync.cli_dev import PART_DIED_EXIT

pytestmark = pytest.mark.slow

EXE = str(Path(sys.executable).with_name("mahak-sync"))
PORT_FLAGS = ("--temporal-port", "--ui-port", "--webhook-port", "--simulator-port")


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a fresh shell: nothing of mahak-sync's configuration."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MAHAK_", "DATABASE_URL", "TEMPORAL_", "WEBHOOK_", "PAYMENT_"))
    }
    return env | {"LOG_FORMAT": "console", **extra}


class Dev:
    """`mahak-sync dev` run from `folder` (the project folder: data in `folder/.data`)."""

    def __init__(self, folder: Path, *args: str) -> None:
        self.folder = folder
        self.data = folder / ".data"
        self.log_path = folder / f"dev-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [EXE, "dev", "--seed-products", "3", *args],
            cwd=folder,
            env=_clean_env(INCOMING_SYNC_INTERVAL_SECONDS="300"),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def ready(self) -> dict[str, Any]:
        ready = self.data / "dev-ready.json"
        deadline = time.monotonic() + 60
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dev stack did not come up:\n{self.output()[-3000:]}")
            time.sleep(0.1)
        return json.loads(ready.read_text())

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float = 45) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"dev stack did not stop:\n{self.output()[-3000:]}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def cli(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args], cwd=folder, env=_clean_env(**env), capture_output=True, text=True, timeout=60
    )


def test_a_second_shell_finds_the_stack_and_a_dying_part_stops_it(tmp_path: Path) -> None:
    dev = Dev(tmp_path, *(arg for flag in PORT_FLAGS for arg in (flag, "0")))
    try:
        info = dev.ready()
        env_file = dev.data / "dev.env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        values = dotenv_values(env_file)
        secret = (dev.data / "webhook-secret").read_text().strip()
        assert values == {
            "MAHAK_SYNC_DEV_PID": str(dev.proc.pid),
            "MAHAK_SYNC_DATA_DIR": str(dev.data.resolve()),
            "DATABASE_URL": info["database"],
            "TEMPORAL_ADDRESS": info["temporal_address"],
            "TEMPORAL_NAMESPACE": "default",
            "TEMPORAL_TASK_QUEUE": "mahak-sync",
            "WEBHOOK_URL": info["webhook"],
            "WEBHOOK_SECRET": secret,
            "MAHAK_BASE_URL": f"{info['simulator']}/API/v3",
            "MAHAK_USERNAME": "shop",
            "MAHAK_PASSWORD": "secret",
            "MAHAK_DATABASE_ID": "1234567",
            "MAHAK_PACKAGE_NO": "7654321",
            "PAYMENT_GATEWAY_URL": f"{info['simulator']}/_gateway",
        }
        # The ready file carries the same, secrets excepted.
        assert info["mahak_username"] == "shop" and info["task_queue"] == "mahak-sync"
        assert info["env_file"] == str(env_file.resolve())
        ready_text = (dev.data / "dev-ready.json").read_text()
        assert secret not in ready_text and "MAHAK_PASSWORD" not in ready_text
        assert "set -a; . .data/dev.env; set +a" in dev.output()

        # A second shell in the project folder, none of the variables set: the running stack.
        status = cli(tmp_path, "sync", "status")
        assert status.returncode == 0, status.stderr
        assert status.stdout.startswith("incoming sync"), status.stdout
        # The env file loaded by a shell works too (and from any folder).
        loaded = subprocess.run(
            ["sh", "-c", f"set -a; . {env_file}; set +a; exec {EXE} sync status --json"],
            cwd="/",
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert loaded.returncode == 0, loaded.stderr
        assert "cycles_done" in json.loads(loaded.stdout), loaded.stdout

        # A shell of another system is never mixed with this one: its Temporal, or nothing.
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            elsewhere = f"127.0.0.1:{closed.getsockname()[1]}"
        other = cli(tmp_path, "sync", "status", TEMPORAL_ADDRESS=elsewhere)
        assert other.returncode != 0 and elsewhere in other.stderr, other.stderr

        # A second `mahak-sync dev` on the same data directory is refused, and harms nothing.
        second = cli(tmp_path, "dev")
        assert second.returncode == 75, second.stderr
        assert f"a dev stack (pid {dev.proc.pid}) already runs" in second.stderr
        assert dev.proc.poll() is None and (dev.data / "dev-ready.json").exists()

        # A part dies: one line names it, everything stops, the exit is non-zero.
        os.kill(info["pids"]["temporal"], signal.SIGKILL)
        assert dev.wait() == PART_DIED_EXIT
        out = dev.output()
        pid = info["pids"]["temporal"]
        assert f"mahak-sync dev: the Temporal dev server (pid {pid}) was killed (SIGKILL)" in out
        assert "\x1b[" not in out  # no terminal colour codes in a file
        assert not (dev.data / "dev-ready.json").exists()
        # The stack is gone: commands no longer read its env file.
        after = cli(tmp_path, "sync", "status")
        assert after.returncode != 0 and info["temporal_address"] not in after.stderr
    finally:
        dev.close()


async def test_a_restart_keeps_its_ports_and_the_simulator_remembers(tmp_path: Path) -> None:
    first = Dev(tmp_path, *(arg for flag in PORT_FLAGS for arg in (flag, "0")))
    try:
        before = first.ready()
        async with SimControl(before["simulator"]) as sim:
            kept = await sim.inject_row(
                "People", {"PersonId": 3999001, "FirstName": "Remembered", "Deleted": False}
            )
            row_version = (await sim.stats()).row_version
        first.proc.send_signal(signal.SIGINT)
        assert first.wait() == 0, first.output()[-2000:]
    finally:
        first.close()

    # One remembered port is taken meanwhile: the restart says which it took instead, and why.
    taken = before["ports"]["webhook"]
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", taken))
    blocker.listen(1)
    second = Dev(tmp_path)  # no port options: last run's ports
    try:
        after = second.ready()
        blocker.close()
        ports = dict(after["ports"])
        instead = ports.pop("webhook")
        assert ports == {k: v for k, v in before["ports"].items() if k != "webhook"}
        assert instead != taken
        notice = f"payment webhook port {taken} (used by the last run) is in use"
        assert notice in second.output() and f"took {instead} instead" in second.output()
        assert any(notice in line for line in after["port_notices"])
        assert after["webhook"] == f"http://127.0.0.1:{instead}/payments/callback"
        assert dotenv_values(second.data / "dev.env")["WEBHOOK_URL"] == after["webhook"]
        assert after["temporal_address"] == before["temporal_address"]

        async with SimControl(after["simulator"]) as sim:
            people = {p["PersonId"]: p for p in await sim.entities("people")}
            assert people[3999001] == kept
            assert (await sim.stats()).row_version == row_version
        second.proc.send_signal(signal.SIGINT)
        assert second.wait() == 0
    finally:
        blocker.close()
        second.close()
