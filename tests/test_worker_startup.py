"""The worker's start-up: it waits for PostgreSQL and Temporal (backoff, one log line per failed
try, stoppable), and refuses to poll unless the workflows' search attributes exist with the
right types (registered on the dev server; otherwise the exact commands to run).

Real servers throughout: the session PostgreSQL (reached over a TCP proxy opened late, so the
database "appears" mid-wait), Temporal dev servers started late on a chosen port, and the
real `worker.py` process for the exit status. The only stand-in is the server's refusal of
AddSearchAttributes, which a dev server never refuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
import pytest_asyncio
from google.protobuf.duration_pb2 import Duration
from structlog.testing import capture_logs
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import OperatorService, RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from mahak_sync.config import Settings
from mahak_sync.runtime import run_worker
from mahak_sync.startup import (
    EXIT_CONFIG,
    StartupAborted,
    backoff_delay,
    describe_error,
    postgres_is_starting,
    wait_for,
)
from mahak_sync.temporal import (
    SEARCH_ATTRIBUTES,
    SearchAttributesMissing,
    free_port,
    search_attribute_type_name,
    temporal_cli_path,
    verify_search_attributes,
)
from mahak_sync.webhook import create_app
from shopdb.migrate import migrate
from tests.fixtures_temporal import STARTUP_TIMEOUT

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "Sup3r-Secret-Pw"
WAITING = "waiting_for_dependency"
NAMES = {key.name for key in SEARCH_ATTRIBUTES}


def _waiting(logs: list[dict[str, Any]], dependency: str | None = None) -> list[dict[str, Any]]:
    return [
        e
        for e in logs
        if e["event"] == WAITING and (dependency is None or e["dependency"] == dependency)
    ]


async def _until(
    predicate: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    task: asyncio.Task[Any] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if task is not None and task.done():
            task.result()  # the worker died: show why
            pytest.fail(f"worker returned before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def _settings(**env: Any) -> Settings:
    values = {
        "STARTUP_RETRY_MAX_SECONDS": 0.2,
        "MAHAK_BASE_URL": "http://127.0.0.1:9/API/v3",
        "LOG_FORMAT": "json",
        **env,
    }
    return Settings(_env_file=None, **values)


def _assert_one_line_per_try(lines: list[dict[str, Any]], dependency: str, maximum: float) -> None:
    assert [e["attempt"] for e in lines] == list(range(1, len(lines) + 1))
    for e in lines:
        assert e["dependency"] == dependency and e["log_level"] == "warning"
        assert 0 < e["retry_in"] <= maximum
        assert e["error"].split(":")[0].isidentifier(), "type name first"


async def _stop(task: asyncio.Task[Any], stop: asyncio.Event, *, within: float) -> None:
    stop.set()
    started = time.monotonic()
    await asyncio.wait_for(task, timeout=within)
    assert time.monotonic() - started < within


# --- the helper ----------------------------------------------------------------------------


async def test_wait_for_logs_one_line_per_failed_try_and_returns_the_connection() -> None:
    calls = 0

    async def connect() -> str:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise ConnectionRefusedError(
                111, f"connect to postgresql://shop:{PASSWORD}@db:5432/shop refused"
            )
        return "connected"

    with capture_logs() as logs:
        assert await wait_for("postgresql", connect, initial=0.01, maximum=0.05) == "connected"
    lines = _waiting(logs)
    assert calls == 4 and len(lines) == 3, "exactly one line per failed try, none on success"
    _assert_one_line_per_try(lines, "postgresql", 0.05)
    assert lines[0]["error"].startswith("ConnectionRefusedError: ")
    assert "shop:***@db" in lines[0]["error"]
    assert PASSWORD not in repr(logs)
    assert [e["event"] for e in logs] == [WAITING] * 3 + ["dependency_ready"]


def test_backoff_doubles_up_to_the_maximum_with_a_little_jitter() -> None:
    for attempt, base in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 5.0), (50, 5.0)]:
        delays = {backoff_delay(attempt, initial=0.5, maximum=5.0) for _ in range(20)}
        assert all(0.9 * base <= d <= base for d in delays)
        assert len(delays) > 1, "jittered"


async def test_wait_for_gives_up_and_refuses_non_transient_errors_at_once() -> None:
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise OSError("still down")

    with capture_logs() as logs, pytest.raises(OSError, match="still down"):
        await wait_for("temporal", down, initial=0.01, maximum=0.02, give_up_after=0.3)
    assert len(logs) == calls >= 2, "one line per try, the last one included"
    assert [e["event"] for e in logs] == [WAITING] * (calls - 1) + ["dependency_unavailable"]

    async def wrong_password() -> None:
        raise asyncpg.InvalidPasswordError('password authentication failed for user "shop"')

    with capture_logs() as logs, pytest.raises(asyncpg.InvalidPasswordError):
        await wait_for("postgresql", wrong_password, initial=0.01, retry_if=postgres_is_starting)
    assert logs == [], "a wrong password is not an outage: no waiting"


async def test_wait_for_is_stopped_by_the_stop_event_during_a_pause_or_a_try() -> None:
    stop = asyncio.Event()

    async def refused() -> None:
        raise ConnectionRefusedError(111, "refused")

    waiter = asyncio.create_task(wait_for("postgresql", refused, initial=30, maximum=30, stop=stop))
    await asyncio.sleep(0.1)
    stop.set()
    with pytest.raises(StartupAborted):
        await asyncio.wait_for(waiter, timeout=1.0)

    # A try that hangs (a black-holed address) is cancelled, and what it opened is closed.
    stop = asyncio.Event()
    closed = asyncio.Event()

    async def hangs() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            closed.set()

    waiter = asyncio.create_task(wait_for("temporal", hangs, stop=stop))
    await asyncio.sleep(0.1)
    stop.set()
    with pytest.raises(StartupAborted):
        await asyncio.wait_for(waiter, timeout=1.0)
    assert closed.is_set()


def test_error_descriptions_never_carry_passwords() -> None:
    exc = OSError(
        f"could not connect: postgresql://shop:{PASSWORD}@db/shop host=db password={PASSWORD}"
    )
    text = describe_error(exc)
    assert PASSWORD not in text and text.startswith("OSError: could not connect")
    assert len(describe_error(RuntimeError("x" * 5000))) < 400


# --- PostgreSQL down at start-up ------------------------------------------------------------


class LateTcpProxy:
    """127.0.0.1:<port> -> the embedded server's unix socket, listening only once `open()`ed:
    before that the port is closed, as when the database server is down."""

    def __init__(self, server_dsn: str) -> None:
        socket_dir = parse_qs(urlsplit(server_dsn).query)["host"][0]
        sockets = [p for p in Path(socket_dir).glob(".s.PGSQL.*") if p.suffix != ".lock"]
        assert len(sockets) == 1, sockets
        self.socket = str(sockets[0])
        self.port = free_port()
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_unix_connection(self.socket)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


@pytest_asyncio.fixture
async def late_postgres(
    pg_server: str, empty_db_dsn: str
) -> AsyncIterator[tuple[LateTcpProxy, str]]:
    """(proxy, DATABASE_URL): an EMPTY database, over TCP with a password, not up yet."""
    proxy = LateTcpProxy(pg_server)
    database = urlsplit(empty_db_dsn).path.lstrip("/")
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{proxy.port}/{database}?sslmode=disable"
    try:
        yield proxy, url
    finally:
        await proxy.close()


async def test_worker_waits_for_postgres_then_migrates_and_runs(
    late_postgres: tuple[LateTcpProxy, str],
    temporal_env: WorkflowEnvironment,
    empty_db_dsn: str,
    task_queue: str,
) -> None:
    proxy, url = late_postgres
    settings = _settings(
        DATABASE_URL=url,
        TEMPORAL_TASK_QUEUE=task_queue,
        TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
    )
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(run_worker(settings, stop=stop))
        try:
            await _until(lambda: len(_waiting(logs)) >= 3, timeout=10, what="3 tries", task=task)
            await proxy.open()  # the database comes up
            await _until(
                lambda: any(e["event"] == "worker_started" for e in logs),
                timeout=30,
                what="the worker to start",
                task=task,
            )
        finally:
            await _stop(task, stop, within=40)
    lines = _waiting(logs)
    _assert_one_line_per_try(lines, "postgresql", 0.2)
    assert all(e["error"].startswith("ConnectionRefusedError") for e in lines)
    assert not _waiting(logs, "temporal"), "Temporal was up"
    ready = [e for e in logs if e["event"] == "dependency_ready"]
    assert ready == [
        {
            "event": "dependency_ready",
            "log_level": "info",
            "dependency": "postgresql",
            "attempts": len(lines) + 1,
            "waited": ready[0]["waited"],
        }
    ]
    assert PASSWORD not in repr(logs)
    # MIGRATE_ON_START still holds: the empty database was migrated once it appeared.
    conn = await asyncpg.connect(empty_db_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") >= 1
        assert await conn.fetchval("SELECT to_regclass('shop_orders') IS NOT NULL")
    finally:
        await conn.close()


async def test_webhook_waits_for_postgres_then_temporal_and_serves(
    late_postgres: tuple[LateTcpProxy, str], temporal_env: WorkflowEnvironment, empty_db_dsn: str
) -> None:
    """The payment webhook started before its database (compose, the dev stack, a reboot)
    waits for it, one line per try, instead of failing its start-up."""
    proxy, url = late_postgres
    await migrate(empty_db_dsn)
    settings = _settings(
        DATABASE_URL=url,
        TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
        WEBHOOK_SECRET="s",
    )
    app = create_app(settings)
    entered = asyncio.Event()

    async def serve() -> None:
        async with app.router.lifespan_context(app):
            entered.set()
            await asyncio.Event().wait()

    with capture_logs() as logs:
        task = asyncio.create_task(serve())
        try:
            await _until(lambda: len(_waiting(logs)) >= 3, timeout=10, what="3 tries", task=task)
            assert not entered.is_set()
            await proxy.open()
            await _until(entered.is_set, timeout=30, what="the webhook to start", task=task)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://w") as http:
                ready = await http.get("/readyz")
            assert ready.status_code == 200, ready.text
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    _assert_one_line_per_try(_waiting(logs), "postgresql", 0.2)
    assert PASSWORD not in repr(logs)


async def test_worker_waiting_for_postgres_stops_cleanly_on_the_stop_event(
    late_postgres: tuple[LateTcpProxy, str], temporal_env: WorkflowEnvironment, task_queue: str
) -> None:
    _, url = late_postgres  # never opened
    settings = _settings(
        DATABASE_URL=url,
        TEMPORAL_TASK_QUEUE=task_queue,
        TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
    )
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(run_worker(settings, stop=stop))
        await _until(lambda: len(_waiting(logs)) >= 2, timeout=10, what="2 tries", task=task)
        await _stop(task, stop, within=2)  # returns, no exception
    assert task.result() is None
    _assert_one_line_per_try(_waiting(logs), "postgresql", 0.2)
    events = [e["event"] for e in logs]
    assert "worker_started" not in events
    assert events[-1] == "worker_stopped_before_start"
    assert logs[-1]["waiting_for"] == "postgresql"
    assert PASSWORD not in repr(logs)


# --- Temporal down at start-up --------------------------------------------------------------


async def test_worker_waits_for_temporal_then_registers_search_attributes_and_runs(
    db_dsn: str, task_queue: str
) -> None:
    port = free_port()
    settings = _settings(
        DATABASE_URL=db_dsn, TEMPORAL_TASK_QUEUE=task_queue, TEMPORAL_ADDRESS=f"127.0.0.1:{port}"
    )
    stop = asyncio.Event()
    env: WorkflowEnvironment | None = None
    with capture_logs() as logs:
        task = asyncio.create_task(run_worker(settings, stop=stop))
        try:
            await _until(lambda: len(_waiting(logs)) >= 3, timeout=10, what="3 tries", task=task)
            # Temporal comes up on that port, WITHOUT the project's search attributes.
            env = await WorkflowEnvironment.start_local(
                dev_server_existing_path=temporal_cli_path(),
                port=port,
                dev_server_log_level="error",
                dev_server_startup_timeout=STARTUP_TIMEOUT,
            )
            await _until(
                lambda: any(e["event"] == "worker_started" for e in logs),
                timeout=30,
                what="the worker to start",
                task=task,
            )
        finally:
            await _stop(task, stop, within=40)
            listed = None
            if env is not None:
                listed = await env.client.operator_service.list_search_attributes(
                    ListSearchAttributesRequest(namespace="default")
                )
                await env.shutdown()
    lines = _waiting(logs)
    _assert_one_line_per_try(lines, "temporal", 0.2)
    assert not _waiting(logs, "postgresql")
    assert [e["attempts"] for e in logs if e["event"] == "dependency_ready"] == [len(lines) + 1]
    # The dev server accepted the registration, so the check passed and the worker polled.
    events = [e["event"] for e in logs]
    assert events.index("search_attributes_registered") < events.index("worker_started")
    assert listed is not None
    for key in SEARCH_ATTRIBUTES:
        assert listed.custom_attributes[key.name] == key.indexed_value_type


# --- search attributes ----------------------------------------------------------------------


async def _fresh_namespace(client: Client) -> str:
    name = f"startup-{uuid.uuid4().hex[:10]}"
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=name, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    return name


async def _custom_attributes(client: Client, namespace: str) -> dict[str, int]:
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    return dict(listed.custom_attributes)


def _create_command(namespace: str, key: Any, address: str) -> str:
    return (
        f"temporal operator search-attribute create --namespace {namespace} "
        f"--name {key.name} --type {search_attribute_type_name(key.indexed_value_type)} "
        f"--address {address}"
    )


async def test_dev_server_registers_missing_search_attributes_and_the_check_passes(
    temporal_env: WorkflowEnvironment,
) -> None:
    client = temporal_env.client
    namespace = await _fresh_namespace(client)
    assert not set(await _custom_attributes(client, namespace)) & NAMES
    names = sorted(key.name for key in SEARCH_ATTRIBUTES)
    assert await verify_search_attributes(client, namespace) == names
    assert await verify_search_attributes(client, namespace) == [], "idempotent"
    existing = await _custom_attributes(client, namespace)
    for key in SEARCH_ATTRIBUTES:
        assert existing[key.name] == key.indexed_value_type


@pytest.fixture
def refused_registration(monkeypatch: pytest.MonkeyPatch) -> list[AddSearchAttributesRequest]:
    """The server refuses AddSearchAttributes, as a production server does to a worker without
    the admin role (the one stand-in: a dev server never refuses). Listing stays real."""
    asked: list[AddSearchAttributesRequest] = []

    async def refuse(
        self: OperatorService, req: AddSearchAttributesRequest, *args: Any, **kwargs: Any
    ) -> Any:
        asked.append(req)
        raise RPCError("Request unauthorized.", RPCStatusCode.PERMISSION_DENIED, b"")

    monkeypatch.setattr(OperatorService, "add_search_attributes", refuse)
    return asked


async def test_refused_registration_names_the_exact_commands_to_run(
    temporal_env: WorkflowEnvironment, refused_registration: list[AddSearchAttributesRequest]
) -> None:
    client = temporal_env.client
    address = client.service_client.config.target_host
    namespace = await _fresh_namespace(client)
    with pytest.raises(SearchAttributesMissing) as raised:
        await verify_search_attributes(client, namespace)
    message = str(raised.value)
    assert len(refused_registration) == 1
    for key in SEARCH_ATTRIBUTES:
        assert _create_command(namespace, key, address) in message
    assert raised.value.commands == sorted(
        (_create_command(namespace, k, address) for k in SEARCH_ATTRIBUTES),
        key=lambda c: c.split(" --name ")[1],
    )
    assert "PERMISSION_DENIED" in message
    assert not set(await _custom_attributes(client, namespace)) & NAMES


async def test_worker_does_not_poll_when_the_search_attributes_cannot_be_registered(
    temporal_env: WorkflowEnvironment,
    late_postgres: tuple[LateTcpProxy, str],
    refused_registration: list[AddSearchAttributesRequest],
    task_queue: str,
) -> None:
    address = temporal_env.client.service_client.config.target_host
    namespace = await _fresh_namespace(temporal_env.client)
    _, url = late_postgres  # never opened: the worker must stop before reaching for it
    settings = _settings(
        DATABASE_URL=url,
        TEMPORAL_TASK_QUEUE=task_queue,
        TEMPORAL_ADDRESS=address,
        TEMPORAL_NAMESPACE=namespace,
    )
    with capture_logs() as logs, pytest.raises(SearchAttributesMissing) as raised:
        await asyncio.wait_for(run_worker(settings), timeout=30)
    assert _create_command(namespace, SEARCH_ATTRIBUTES[0], address) in str(raised.value)
    assert "worker_started" not in [e["event"] for e in logs]
    assert not _waiting(logs), "nothing after the check: not even the database"


async def test_worker_process_exits_with_the_commands_when_an_attribute_has_another_type(
    temporal_env: WorkflowEnvironment,
) -> None:
    """The real `python worker.py` against a real server: `OrderId` exists as a Keyword."""
    client = temporal_env.client
    address = client.service_client.config.target_host
    namespace = await _fresh_namespace(client)
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=namespace,
            search_attributes={"OrderId": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD},
        )
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MAHAK_", "DATABASE_URL", "TEMPORAL_", "STARTUP_"))
    }
    env |= {
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_NAMESPACE": namespace,
        "LOG_FORMAT": "json",
        "DATABASE_URL": f"postgresql://shop:{PASSWORD}@127.0.0.1:{free_port()}/shop",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "worker.py"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    stderr = err.decode()
    assert proc.returncode == EXIT_CONFIG, stderr
    assert (
        f"temporal operator search-attribute remove --namespace {namespace} --name OrderId "
        f"--yes --address {address}"
    ) in stderr
    assert (
        f"temporal operator search-attribute create --namespace {namespace} --name OrderId "
        f"--type Int --address {address}"
    ) in stderr
    assert "OrderId is Keyword, the workflows need Int" in stderr
    assert "worker_started" not in stderr + out.decode()
    assert PASSWORD not in stderr + out.decode()
    # The attributes that were merely missing got registered on the way.
    existing = await _custom_attributes(client, namespace)
    assert existing["OrderId"] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    for key in SEARCH_ATTRIBUTES:
        if key.name != "OrderId":
            assert existing[key.name] == key.indexed_value_type
