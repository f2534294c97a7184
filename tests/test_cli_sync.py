"""`mahak-sync sync status|pause|...|reset-cursor`: a clear line when the incoming sync does
not run, readable output by default and JSON with `--json`, and a clean exit every time."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RawValue
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

import workflows.incoming_sync as incoming_sync_module
from mahak_sync import cli
from mahak_sync.cli_sync import NOT_RUNNING, status_lines
from tests.test_cli_errors import clean_env, run_cli, run_process
from tests.test_incoming_e2e import start_sync  # noqa: F401 - a fixture
from workflows.incoming_types import (
    CycleSummary,
    EntityCounts,
    EntityProgress,
    EntitySyncResult,
    SyncConfig,
    SyncStatus,
)

NOW = datetime(2025, 10, 4, 12, 0, tzinfo=UTC)


def sample_status() -> SyncStatus:
    return SyncStatus(
        paused=False,
        running=False,
        cycles_done=3,
        next_run_at=NOW + timedelta(minutes=4),
        cursors={"stores": 12, "products": 3400},
        last_cycle=CycleSummary(
            run_id="cycle-3",
            trigger="timer",
            started_at=NOW - timedelta(minutes=1),
            finished_at=NOW - timedelta(seconds=50),
            entities={
                "stores": EntitySyncResult(
                    entity="stores", counts=EntityCounts(fetched=2, inserted=2), cursor=12
                ),
                "products": EntitySyncResult(
                    entity="products",
                    counts=EntityCounts(fetched=5, updated=4, dead_lettered=1),
                    cursor=3400,
                    error="MahakRefused: one row refused",
                ),
            },
        ),
        config=SyncConfig(interval_seconds=300, reconcile_every_seconds=0),
    )


def test_status_reads_as_lines_and_a_table() -> None:
    assert status_lines(sample_status(), now=NOW) == [
        "incoming sync  idle",
        "next run       2025-10-04 12:04:00 UTC (in 4 min)",
        "cycles done    3",
        "config         every 300 s, page size none, reconcile on request only",
        "last cycle     cycle-3 (timer), started 2025-10-04 11:59:00 UTC (60 s ago), "
        "finished 2025-10-04 11:59:10 UTC (50 s ago), with errors",
        "",
        "entity    cursor  fetched  inserted  updated  deleted  dead  error",
        "stores    12      2        2         0        0        0     -",
        "products  3400    5        0         4        0        1     MahakRefused: one row refused",
    ]


def test_status_names_the_entity_the_running_activity_reads() -> None:
    """One activity reads the entities of a quiet cycle in a row: the workflow knows the
    first, the activity's heartbeat (`current_progress`) the one it is at."""
    status = sample_status().model_copy(update={"running": True, "current_entity": "stores"})
    assert status_lines(status, now=NOW)[0] == "incoming sync  running a cycle, now at stores"
    status.current_progress = EntityProgress(entity="products", started_at=NOW, pages=2)
    lines = status_lines(status, now=NOW)
    assert lines[0] == "incoming sync  running a cycle, now at products"
    assert "products: 2 page(s)" in lines[1]


@pytest.mark.parametrize(
    "argv",
    [
        ["sync", "reset-cursor", "products", "--row-version", "5", "--to-start"],
        ["sync", "reset-cursor", "products", "--row-version", "-1"],
    ],
)
def test_reset_cursor_takes_one_valid_starting_point(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--row-version" in err and ("not allowed with" in err or "0 or more" in err), err
    args = cli.build_parser().parse_args(["sync", "reset-cursor", "products", "--to-start"])
    assert (args.to_start, args.row_version) == (True, None)


async def test_reset_cursor_asks_where_to_start_explicitly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Never a silent reset to 0; refused before Temporal is even asked (none runs here)."""
    env = {"TEMPORAL_ADDRESS": "127.0.0.1:1"}
    assert await run_cli(monkeypatch, env, "sync", "reset-cursor", "ProductDetails") == 2
    assert capsys.readouterr() == (
        "",
        "error: say where to read product_details from: --row-version N (rows newer than N) "
        "or --to-start (everything)\n",
    )


def _temporal_env(client: Client) -> dict[str, str]:
    return {
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": client.namespace,
    }


async def test_sync_status_without_the_workflow_is_one_line_every_time(
    temporal_client: Client, tmp_path: Path
) -> None:
    """Run as a process 20 times (4 at once): exit 1 and the one line, never a crash at exit
    (temporalio/sdk-python#300 made this segfault or abort now and then)."""
    env = clean_env(**_temporal_env(temporal_client))
    gate = asyncio.Semaphore(4)

    async def once() -> tuple[int, str, str]:
        async with gate:
            return await run_process("sync", "status", env=env, cwd=tmp_path)

    results = await asyncio.gather(*(once() for _ in range(20)))
    assert results == [(1, "", f"error: {NOT_RUNNING}\n")] * 20


@pytest.mark.parametrize("command", ["pause", "resume", "now", "reconcile", "reset-cursor"])
async def test_operations_on_a_sync_that_does_not_run_are_refused(
    command: str,
    temporal_client: Client,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(incoming_sync_module, "WORKFLOW_ID", f"absent-{uuid.uuid4().hex[:8]}")
    argv = ["sync", command] + (["products", "--to-start"] if command == "reset-cursor" else [])
    assert await run_cli(monkeypatch, _temporal_env(temporal_client), *argv) == 1
    assert capsys.readouterr() == ("", f"error: {NOT_RUNNING}\n")


@workflow.defn(name="FakeIncomingSync")
class FakeIncomingSync:
    """Answers `status` like the incoming sync and records its signals."""

    def __init__(self) -> None:
        self._status: SyncStatus | None = None
        self._signals: list[str] = []

    @workflow.run
    async def run(self, status: SyncStatus) -> None:
        self._status = status
        await workflow.wait_condition(lambda: "stop" in self._signals)

    @workflow.query
    def status(self) -> SyncStatus:
        assert self._status is not None
        return self._status

    @workflow.query
    def signals(self) -> list[str]:
        return self._signals

    @workflow.signal(dynamic=True)
    def any_signal(self, name: str, args: Sequence[RawValue]) -> None:
        self._signals.append(name)


async def test_status_for_people_and_for_programs(
    temporal_client: Client,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    queue = f"test-{uuid.uuid4().hex[:12]}"
    workflow_id = f"fake-incoming-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(incoming_sync_module, "WORKFLOW_ID", workflow_id)
    status = sample_status()
    env = _temporal_env(temporal_client)
    async with Worker(
        temporal_client,
        task_queue=queue,
        workflows=[FakeIncomingSync],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        handle = await temporal_client.start_workflow(
            FakeIncomingSync.run, status, id=workflow_id, task_queue=queue
        )
        try:
            assert await run_cli(monkeypatch, env, "sync", "status") == 0
            out = capsys.readouterr().out
            assert out.startswith("incoming sync  idle\nnext run       "), out
            assert "cycles done    3\n" in out
            assert "products  3400    5        0         4" in out

            assert await run_cli(monkeypatch, env, "sync", "status", "--json") == 0
            assert json.loads(capsys.readouterr().out) == status.model_dump(mode="json")

            assert await run_cli(monkeypatch, env, "sync", "pause") == 0
            assert capsys.readouterr().out == "pause sent\n"
            assert await handle.query(FakeIncomingSync.signals) == ["pause"]
        finally:
            await handle.signal("stop")
            await handle.result()


async def test_status_while_mahak_fails_shows_the_attempt_its_error_and_the_next_try(
    start_sync: Any, sim: Any
) -> None:
    # Issue 15: during an outage `sync status` said `running` and nothing else.
    from mahak_sync.cli_sync import current_activity
    from tests.test_incoming_e2e import fast_config

    await sim.add_fault(status_code=503, endpoints=["GetAllDataV2"])
    sync = await start_sync(
        fast_config(retry_initial_seconds=1, retry_max_seconds=1, entity_timeout_seconds=60)
    )
    retry = None
    for _ in range(200):
        _, retry = await current_activity(sync.client, sync.handle)
        if retry is not None and retry.attempt >= 2 and retry.last_error:
            break
        await asyncio.sleep(0.05)
    assert retry is not None and retry.attempt >= 2, retry
    assert "503" in (retry.last_error or "") or "busy" in (retry.last_error or ""), retry
    status = (await sync.status()).model_copy(update={"current_retry": retry})
    [line] = [ln for ln in status_lines(status) if ln.startswith("retrying")]
    assert f"attempt {retry.attempt}" in line and "last error" in line
    await sim.clear_faults()


async def test_sync_run_shows_the_cycle_as_it_goes_and_its_counts(
    start_sync: Any,
    sim: Any,
    temporal_client: Client,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.test_incoming_e2e import fast_config

    await sim.seed(3)
    sync = await start_sync(fast_config())
    await sync.cycles(1)
    monkeypatch.setattr(incoming_sync_module, "WORKFLOW_ID", sync.handle.id)
    env = _temporal_env(temporal_client)
    capsys.readouterr()
    await sim.set_price((await sim.entities("product_details"))[0]["ProductDetailId"], 1, 5)
    await sim.add_fault(latency_ms=400, endpoints=["GetAllDataV2"])  # slow enough to watch
    assert await run_cli(monkeypatch, env, "sync", "run") == 0
    await sim.clear_faults()
    out = capsys.readouterr().out
    assert "reading " in out, out
    [details] = [ln for ln in out.splitlines() if ln.startswith("product_details ")]
    # fetched (the look-back window re-reads the rest), inserted, updated
    fetched, inserted, updated = map(int, details.split()[1:4])
    assert fetched >= 1 and (inserted, updated) == (0, 1), details
    assert re.search(r"^cycle \S+: ok$", out, re.M), out

    # Refused while paused, with the reason.
    await sync.handle.signal("pause")
    assert await run_cli(monkeypatch, env, "sync", "run") == 1
    assert "run_cycle refused: incoming sync is paused" in capsys.readouterr().err
