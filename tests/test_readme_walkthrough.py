"""Issue 15, "Done when": the README's walkthrough, run as it stands against `mahak-sync dev` as a
subprocess, from a second shell that sets nothing; then the CLI run 50 times against the same
stack, every exit code checked (no crash at interpreter exit)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from mahak_simulator.control import SimControl
from tests.test_cli_errors import run_process
from tests.test_dev_first_run import PORT_FLAGS, Dev, _clean_env

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parent.parent / "README.md"
BIN = str(Path(sys.executable).parent)
# The dev stack's first-run simulator address, as the README writes it.
README_SIMULATOR = "http://127.0.0.1:9000"


@dataclass
class Step:
    command: str
    exit_code: int  # 0 unless the line's comment says "(exit N)"


def walkthrough() -> list[Step]:
    """The shell block after `<!-- walkthrough -->` in the README, one step per command
    (continuation lines joined, comment-only lines dropped)."""
    text = README.read_text()
    block = re.search(r"<!-- walkthrough -->\n```sh\n(.*?)```", text, re.S)
    assert block, "README lost its walkthrough block"
    steps: list[Step] = []
    pending = ""
    for line in block.group(1).splitlines():
        if not pending and line.lstrip().startswith("#"):
            continue
        pending += line
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        code = re.search(r"#.*\(exit (\d+)\)", pending)
        steps.append(Step(pending.strip(), int(code.group(1)) if code else 0))
        pending = ""
    return steps


def test_the_walkthrough_block_is_parsed_as_written() -> None:
    steps = walkthrough()
    assert steps[0].command.startswith("mahak-sync sync run")
    assert any(s.command.startswith("curl ") and "-d '{" in s.command for s in steps)
    assert [s.exit_code for s in steps if "dead-letters retry" in s.command] == [1]
    assert all(s.command.startswith(("mahak-sync ", "curl ")) for s in steps)


def _shell(folder: Path, command: str, simulator: str) -> subprocess.CompletedProcess[str]:
    env = _clean_env()
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    return subprocess.run(
        ["sh", "-c", command.replace(README_SIMULATOR, simulator)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _until(folder: Path, step: Step, simulator: str, done: str) -> str:
    """Rerun a step (as a reader would) until its output says `done`, for up to 60 s."""
    deadline = time.monotonic() + 60
    while True:
        result = _shell(folder, step.command, simulator)
        assert result.returncode == 0, result.stderr
        if done in result.stdout or time.monotonic() > deadline:
            return result.stdout
        time.sleep(0.5)


async def test_the_readme_walkthrough_runs_against_the_dev_stack(tmp_path: Path) -> None:
    dev = Dev(tmp_path, *(arg for flag in PORT_FLAGS for arg in (flag, "0")))
    try:
        info = dev.ready()
        simulator = info["simulator"]
        outputs: dict[str, str] = {}
        for step in walkthrough():
            if step.command.startswith("mahak-sync order show"):
                outputs[step.command] = _until(tmp_path, step, simulator, "synced")
                continue
            result = _shell(tmp_path, step.command, simulator)
            assert result.returncode == step.exit_code, (
                f"{step.command}\nexit {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
            assert "Traceback" not in result.stderr, result.stderr
            outputs[step.command] = result.stdout + result.stderr

        def out(prefix: str, nth: int = 0) -> str:
            return [v for k, v in outputs.items() if k.startswith(prefix)][nth]

        demo = out("mahak-sync demo order")
        assert re.search(r"^order\s+1$", demo, re.M), demo
        assert re.search(r"^workflow\s+order-sync-1$", demo, re.M), demo
        assert "order-sync-1" in out("mahak-sync order show 1")
        assert re.search(r"^\s*1\s", out("mahak-sync orders list"), re.M)
        assert "synced" in out("mahak-sync temporal workflow query")
        assert "990001" in out("mahak-sync dead-letters list")
        assert "ProductCategoryId" in out("mahak-sync dead-letters show 1")
        assert "refused again" in out("mahak-sync dead-letters retry 1")

        # What the walkthrough did really happened: Mahak holds the order once, with its lines,
        # and the dead letter is resolved (dropped), not deleted.
        conn = await asyncpg.connect(info["database"])
        try:
            client_id = await conn.fetchval("SELECT order_client_id FROM shop_orders WHERE id = 1")
            letter = await conn.fetchrow(
                "SELECT entity, mahak_id, resolved, resolution FROM mahak_dead_letters"
            )
            synced = await conn.fetchval("SELECT sync_status FROM shop_orders WHERE id = 1")
        finally:
            await conn.close()
        assert dict(letter) == {
            "entity": "products",
            "mahak_id": 990001,
            "resolved": True,
            "resolution": "dropped by operator",
        }
        assert synced == "synced"
        async with SimControl(simulator) as sim:
            held = await sim.order(client_id)
        assert held is not None and held.submissions == 1 and len(held.details) == 2

        # The CLI run 50 times (4 at once) against the running stack: every exit code is 0.
        commands = [
            ("status",),
            ("sync", "status"),
            ("orders", "list"),
            ("order", "show", "1"),
            ("dead-letters", "list"),
        ]
        gate = asyncio.Semaphore(4)
        env = _clean_env(LOG_LEVEL="WARNING")

        async def once(argv: tuple[str, ...]) -> tuple[tuple[str, ...], int, str]:
            async with gate:
                code, _, err = await run_process(*argv, env=env, cwd=tmp_path)
                return argv, code, err

        runs = await asyncio.gather(*(once(commands[i % len(commands)]) for i in range(50)))
        failed = [(argv, code, err[-500:]) for argv, code, err in runs if code != 0]
        assert failed == []
    finally:
        dev.close()
