"""Run the simulator in-process: uvicorn on its own thread and event loop, ephemeral port."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from types import TracebackType

import httpx
import uvicorn

from .app import Simulation, create_app
from .config import SimulatorConfig
from .log import get_logger


class SimulatorServer:
    """`start()` blocks until the server answers; `stop()` shuts it down and joins the thread.

    Tests talk to it over HTTP only (its state belongs to the server thread).

    With `state_file` the simulated data persists there: loaded at start when the file
    exists, saved within `save_interval` seconds of a change and at `stop()`.
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        state_file: Path | None = None,
        save_interval: float = 1.0,
    ) -> None:
        self.config = config or SimulatorConfig()
        self.state_file = state_file
        self.save_interval = save_interval
        self.simulation: Simulation | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._saver: threading.Thread | None = None
        self._saver_stop = threading.Event()
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulator is not started")
        return self._port

    @property
    def root_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The value for MAHAK_BASE_URL."""
        return f"{self.root_url}/API/v3"

    def start(self, timeout: float = 15.0) -> SimulatorServer:
        if self._thread is not None:
            raise RuntimeError("the simulator is already started")
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when the
        # listening socket says TCP, and without it every answer waits ~40 ms on Nagle.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.config.host, self.config.port))
        except OSError:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        try:
            self.simulation = Simulation(self.config, state_file=self.state_file)
        except BaseException:
            sock.close()
            raise
        self._server = uvicorn.Server(
            uvicorn.Config(
                create_app(self.config, sim=self.simulation),
                log_level="warning",
                access_log=False,
                lifespan="off",
                proxy_headers=False,
                http="h11",
                ws="none",
                loop="asyncio",
                timeout_graceful_shutdown=2,
                timeout_keep_alive=30,
            )
        )
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"mahak-simulator-{self._port}",
            daemon=True,
        )
        self._thread.start()
        self._wait_ready(timeout)
        if self.state_file is not None:
            self._saver_stop.clear()
            self._saver = threading.Thread(
                target=self._save_loop, name=f"mahak-simulator-saver-{self._port}", daemon=True
            )
            self._saver.start()
        get_logger("mahak_simulator").info("simulator started", url=self.base_url)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._thread is None or not self._thread.is_alive():
                raise RuntimeError("the simulator thread died during start-up")
            if self._server is not None and self._server.started:
                try:
                    if httpx.get(f"{self.root_url}/_sim/health", timeout=2).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"the simulator did not answer within {timeout} s")

    def _save_loop(self) -> None:
        while not self._saver_stop.wait(self.save_interval):
            self._save("periodic")

    def _save(self, when: str) -> None:
        if self.simulation is None:
            return
        try:
            self.simulation.save()
        except Exception as exc:  # noqa: BLE001 - a failed save is retried, never fatal
            get_logger("mahak_simulator").warning(
                "simulator state not saved", when=when, file=str(self.state_file), error=str(exc)
            )

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._saver is not None:
            self._saver_stop.set()
            self._saver.join(timeout)
            self._saver = None
        self._save("shutdown")
        self._server = None
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
