"""`mahak-sync temporal ...`: the bundled temporal CLI, pointed at this project's Temporal."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from temporalio.client import Client

from mahak_sync.cli_temporal import command
from mahak_sync.config import get_settings

MAHAK_SYNC = str(Path(sys.executable).parent / "mahak-sync")


def test_the_projects_address_and_namespace_are_added_unless_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "temporal.example:7233")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "shop")
    get_settings.cache_clear()
    try:
        argv = command(["workflow", "list"])
        assert argv[1:] == [
            "workflow",
            "list",
            "--address",
            "temporal.example:7233",
            "--namespace",
            "shop",
        ]
        mine = command(["workflow", "list", "--address", "other:1", "-n", "x"])
        assert mine[1:] == ["workflow", "list", "--address", "other:1", "-n", "x"]
        assert command(["help"])[1:] == ["help"]
    finally:
        get_settings.cache_clear()


async def test_it_lists_the_workflows_of_the_projects_server(
    temporal_client: Client, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    env["TEMPORAL_ADDRESS"] = temporal_client.service_client.config.target_host
    env["TEMPORAL_NAMESPACE"] = temporal_client.namespace
    process = await asyncio.create_subprocess_exec(
        MAHAK_SYNC,
        "temporal",
        "workflow",
        "count",
        "-o",
        "json",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    assert isinstance(json.loads(out), dict)  # the server answered (a count, 0 omitted)
