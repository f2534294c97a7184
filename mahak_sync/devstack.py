"""The whole system on one machine with nothing pre-installed: `mahak-sync dev`.

Brings up, in order: PostgreSQL (embedded, unless `DATABASE_URL`), Temporal dev server with
Web UI (bundled CLI, unless `TEMPORAL_ADDRESS`), the Mahak simulator (unless real Mahak
credentials are configured), the worker, the payment webhook, and starts the incoming sync
and the order sweep. When everything answers it writes a JSON ready file other tools (and
tests) can wait on, and an env file (`dev.env`, mode 0600: endpoints and credentials) that
every `mahak-sync` command run from the project folder reads while this stack runs
(`mahak_sync.config.running_dev_env_file`). Ports are remembered in the data directory and
taken again on the next start when free; the simulator's data persists there too. `wait()`
watches every part and raises `PartDied` naming the first one that stops. Usable in-process
as an async context manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from dotenv import dotenv_values
from pydantic import SecretStr

from mahak_sync.config import DEV_ENV_FILENAME, DEV_PID_VARIABLE, Settings, dev_stack_alive
from mahak_sync.logging import get_logger, register_secret

log = get_logger(__name__)


PORTS_FILENAME = "dev-ports.json"
SIMULATOR_STATE_FILENAME = "simulator-state.json"
# Each port: the default, and what it is called in messages.
DEFAULT_PORTS = {"temporal": 7233, "ui": 8233, "webhook": 8080, "simulator": 9000}
_PORT_LABELS = {
    "temporal": "Temporal frontend",
    "ui": "Temporal Web UI",
    "webhook": "payment webhook",
    "simulator": "Mahak simulator",
}


@dataclass
class DevOptions:
    """A port left None is the one the last run used (remembered in the data directory),
    else the default; 0 is any free port."""

    temporal_port: int | None = None
    ui_port: int | None = None
    webhook_port: int | None = None
    simulator_port: int | None = None
    seed_products: int = 50
    ready_file: Path | None = None
    # The simulator's state persists in the data directory (off: in memory only).
    persist_simulator: bool = True
    # How often the parts are checked for life.
    watch_interval: float = 0.5
    given: dict[str, int | None] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.given = {
            "temporal": self.temporal_port,
            "ui": self.ui_port,
            "webhook": self.webhook_port,
            "simulator": self.simulator_port,
        }


class PartDied(RuntimeError):
    """One part of the dev stack stopped; the message names it and how."""

    def __init__(self, part: str, how: str) -> None:
        super().__init__(f"{part} {how}")
        self.part = part


class DevStackRunning(RuntimeError):
    """Another `mahak-sync dev` already runs on this data directory."""


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed ({name})"
    return f"exited with status {code}"


def _pid_state(pid: int) -> str | None:
    """None while `pid` runs; else how it ended, as far as can be told."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with the embedded extra
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return "is gone"
        except PermissionError:
            pass
        return None
    try:
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return "is gone"
    except psutil.NoSuchProcess:
        return "is gone"
    except psutil.Error:
        pass
    return None


def _port_holder(port: int) -> str:
    """` (by pid N, name)` for the process listening on `port` when it can be seen, else ``."""
    try:
        import psutil

        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
                if conn.pid:
                    return f" (by pid {conn.pid}, {psutil.Process(conn.pid).name()})"
    except Exception:  # noqa: BLE001 - only a hint in a message
        pass
    return ""


def _free_port(preferred: int, host: str = "127.0.0.1") -> int:
    """`preferred` when a server can listen on it, else a free one. Probed with SO_REUSEADDR,
    as the servers themselves listen (uvicorn, the simulator, Go's net.Listen), so the
    TIME_WAIT connections a just-stopped run left never count as "in use"."""
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
                sock.listen(1)
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OSError("no free port")


def _env_line(name: str, value: object) -> str:
    """`NAME='value'`: read alike by `sh` (`set -a; . file`) and by dotenv."""
    text = str(value)
    if "\n" in text or "\r" in text or "'" in text:
        raise ValueError(f"{name} holds a quote or a line break; it cannot go into the env file")
    return f"{name}='{text}'"


def _write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write `text` to `path` atomically (readers, who poll for the file, never see half of
    it), created with `mode`."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _write_private(path: Path, text: str) -> None:
    """`_write_atomic` with mode 0600 (the env file holds secrets)."""
    _write_atomic(path, text, 0o600)


def load_command(env_file: Path) -> str:
    """The shell line that loads `env_file` (relative to the current folder when inside it)."""
    try:
        shown = str(env_file.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        shown = str(env_file)
    return f"set -a; . {shown}; set +a"


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn that leaves signals to the dev stack: its own handler would re-raise SIGINT
    after serving and cut the other components' graceful shutdown short."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class DevStack:
    def __init__(self, settings: Settings, options: DevOptions | None = None) -> None:
        self.settings = settings
        self.options = options or DevOptions()
        self.data_dir = Path(settings.data_dir).resolve()
        self.ready_file = self.options.ready_file or self.data_dir / "dev-ready.json"
        self.env_file = self.data_dir / DEV_ENV_FILENAME
        self.ports_file = self.data_dir / PORTS_FILENAME
        self.info: dict[str, Any] = {}
        # One line per port that could not be the one wanted: which it took, and why.
        self.notices: list[str] = []
        self.ports: dict[str, int] = {}
        self.pids: dict[str, int] = {}
        # (part, check): a check returns None while its part runs, else how it stopped.
        self._checks: list[tuple[str, Callable[[], str | None]]] = []
        self._task_parts: dict[asyncio.Task[Any], str] = {}
        self._stop_timeout = 40.0
        self._owner = False
        self._stack = contextlib.AsyncExitStack()
        self._tasks: list[asyncio.Task[Any]] = []
        # Ask the long-running tasks to finish before the servers under them go away.
        self._stoppers: list[Callable[[], None]] = []

    async def __aenter__(self) -> DevStack:
        self._check_not_running()  # before anything: another stack's files are not ours
        self._owner = True
        self.ready_file.unlink(missing_ok=True)  # a killed run's, never to be waited on
        try:
            await self._start()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._owner:
            self.ready_file.unlink(missing_ok=True)
        if exc and isinstance(exc[1], PartDied):
            self._stop_timeout = 10.0  # what is left may wait on the dead part: don't linger
        for stop in self._stoppers:
            stop()
        for task in reversed(self._tasks):
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=self._stop_timeout)
        await self._stack.aclose()

    def _on_exit(self, what: str, stop: Callable[[], object]) -> None:
        """Stop `what` when the stack closes; a part that cannot stop (it died already) is
        logged, never allowed to keep the others running."""

        def close(*_: object) -> None:
            try:
                stop()
            except Exception as exc:  # noqa: BLE001
                log.warning("dev_part_stop_failed", part=what, error=str(exc))

        self._stack.push(close)

    # --- ports ---------------------------------------------------------------------------

    def _remembered_ports(self) -> dict[str, Any]:
        try:
            data = json.loads(self.ports_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _port(self, part: str) -> int:
        """The port `part` listens on: the one asked for, else last run's, else the default;
        when that one is taken, a free one, said in a warning and in `notices`."""
        given = self.options.given.get(part)
        remembered = self._remembered_ports().get("ports", {}).get(part)
        if given is not None:
            wanted, why = given, "asked for"
        elif isinstance(remembered, int) and remembered > 0:
            wanted, why = remembered, "used by the last run"
        else:
            wanted, why = DEFAULT_PORTS[part], "the default"
        port = _free_port(wanted)
        if wanted and port != wanted:
            notice = (
                f"{_PORT_LABELS[part]} port {wanted} ({why}) is in use{_port_holder(wanted)}; "
                f"took {port} instead"
            )
            log.warning("dev_port_taken", part=part, wanted=wanted, took=port, reason=why)
            self.notices.append(notice)
        self.ports[part] = port
        return port

    def _stop_orphaned_temporal(self) -> None:
        """A Temporal dev server a killed earlier run left behind on this data directory
        (it runs in its own session, so it outlives a SIGKILLed parent): stop it, so its
        ports and database are free again."""
        pid = self._remembered_ports().get("pids", {}).get("temporal")
        if not isinstance(pid, int):
            return
        try:
            import psutil

            proc = psutil.Process(pid)
            cmdline = proc.cmdline()
        except Exception:  # noqa: BLE001 - gone, or not ours to see
            return
        if "start-dev" in cmdline and str(self.data_dir / "temporal.db") in cmdline:
            log.warning("dev_orphaned_temporal_stopped", pid=pid)
            self.notices.append(f"stopped the Temporal dev server (pid {pid}) a killed run left")
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except psutil.TimeoutExpired:
                proc.kill()

    def _check_not_running(self) -> None:
        try:
            values = dotenv_values(self.env_file) if self.env_file.is_file() else {}
        except (OSError, UnicodeDecodeError):
            values = {}
        pid = values.get(DEV_PID_VARIABLE)
        if pid and pid.isdigit() and int(pid) != os.getpid() and _pid_state(int(pid)) is None:
            if dev_stack_alive(values):
                raise DevStackRunning(
                    f"a dev stack (pid {pid}) already runs on {self.data_dir}; stop it, or "
                    "set MAHAK_SYNC_DATA_DIR to another folder for a second one"
                )

    def _update(self, **values: Any) -> None:
        self.settings = self.settings.model_copy(update=values)

    async def _start(self) -> None:
        from mahak_simulator.config import SimulatorConfig
        from mahak_simulator.server import SimulatorServer
        from mahak_sync.launch import start_incoming, start_sweep
        from mahak_sync.runtime import run_worker
        from mahak_sync.temporal import DevServer, connect
        from mahak_sync.webhook import create_app
        from shopdb.embedded import start_embedded

        opts = self.options
        self.data_dir.mkdir(parents=True, exist_ok=True)

        if self.settings.database_url is None:
            embedded, dsn = await start_embedded(self.data_dir / "postgres")
            self._on_exit("PostgreSQL", embedded.stop)
            self._update(database_url=SecretStr(dsn))
            self.info["database"] = dsn
            pg_pid = _postgres_pid(embedded)
            if pg_pid is not None:
                self.pids["postgres"] = pg_pid
                self._checks.append(
                    (f"the embedded PostgreSQL (pid {pg_pid})", lambda: _pid_state(pg_pid))
                )
        else:
            self.info["database"] = "DATABASE_URL"

        if self.settings.temporal_address is None:
            self._stop_orphaned_temporal()
            server = DevServer(
                port=self._port("temporal"),
                ui_port=self._port("ui"),
                namespace=self.settings.temporal_namespace,
                db_filename=self.data_dir / "temporal.db",
            )
            await asyncio.to_thread(server.start)
            self._on_exit("Temporal", server.stop)
            self._update(temporal_address=server.address)
            self.info["temporal_ui"] = server.ui_url
            process = server._process  # noqa: SLF001 - the dev server's child, to watch it
            if process is not None:
                self.pids["temporal"] = process.pid
                self._checks.append(
                    (
                        f"the Temporal dev server (pid {process.pid})",
                        lambda: None if process.poll() is None else _exit_text(process.returncode),
                    )
                )
        self.info["temporal_address"] = self.settings.temporal_address
        self.info["temporal_namespace"] = self.settings.temporal_namespace
        self.info["task_queue"] = self.settings.temporal_task_queue

        if not self.settings.mahak_username:
            sim_config = SimulatorConfig(
                port=self._port("simulator"), seed_products=opts.seed_products
            )
            state_file = self.data_dir / SIMULATOR_STATE_FILENAME
            sim = SimulatorServer(
                sim_config, state_file=state_file if opts.persist_simulator else None
            )
            await asyncio.to_thread(sim.start)
            self._on_exit("the Mahak simulator", sim.stop)
            self._checks.append(("the Mahak simulator", lambda: None if sim.running else "stopped"))
            if opts.persist_simulator:
                self.info["simulator_state_file"] = str(state_file)
            self._update(
                mahak_base_url=sim.base_url,
                mahak_username=sim_config.username,
                mahak_password=sim_config.password,
                mahak_database_id=sim_config.database_id,
                mahak_package_no=sim_config.package_no,
                payment_gateway_url=self.settings.payment_gateway_url or f"{sim.root_url}/_gateway",
            )
            self.info["simulator"] = sim.root_url
        self.info["mahak_base_url"] = self.settings.mahak_base_url
        self.info["mahak_username"] = self.settings.mahak_username
        self.info["mahak_database_id"] = self.settings.mahak_database_id
        self.info["mahak_package_no"] = self.settings.mahak_package_no
        self.info["payment_gateway_url"] = self.settings.payment_gateway_url

        if not self.settings.webhook_secret.get_secret_value():
            secret_file = self.data_dir / "webhook-secret"
            if not secret_file.exists():
                secret_file.write_text(secrets.token_hex(24))
                os.chmod(secret_file, 0o600)
            self._update(webhook_secret=SecretStr(secret_file.read_text().strip()))
            self.info["webhook_secret_file"] = str(secret_file)
        register_secret(self.settings.webhook_secret.get_secret_value())

        stop_worker = asyncio.Event()
        self._stoppers.append(stop_worker.set)
        worker_task = asyncio.create_task(
            run_worker(self.settings, stop=stop_worker), name="worker"
        )
        self._tasks.append(worker_task)
        self._task_parts[worker_task] = "the worker"

        client = await connect(self.settings)
        webhook_port = self._port("webhook")
        webhook = _EmbeddedUvicorn(
            uvicorn.Config(
                create_app(self.settings, client=client),
                host="127.0.0.1",
                port=webhook_port,
                log_level="warning",
                access_log=False,
            )
        )
        webhook_task = asyncio.create_task(webhook.serve(), name="webhook")
        self._tasks.append(webhook_task)
        self._task_parts[webhook_task] = "the payment webhook"
        self._stoppers.append(lambda: setattr(webhook, "should_exit", True))
        self.info["webhook"] = f"http://127.0.0.1:{webhook_port}/payments/callback"

        await start_incoming(client, self.settings)
        await start_sweep(client, self.settings)
        while not webhook.started:
            if webhook_task.done():
                webhook_task.result()
                raise PartDied("the payment webhook", f"could not listen on port {webhook_port}")
            await asyncio.sleep(0.05)

        self.info["pid"] = os.getpid()
        self.info["pids"] = self.pids
        self.info["ports"] = self.ports
        self.info["env_file"] = str(self.env_file)
        self.info["load_env"] = load_command(self.env_file)
        if self.notices:
            self.info["port_notices"] = self.notices
        self._write_env_file()
        _write_atomic(
            self.ports_file, json.dumps({"ports": self.ports, "pids": self.pids}, indent=2) + "\n"
        )
        _write_atomic(self.ready_file, json.dumps(self.info, indent=2))
        log.info("dev_stack_ready", **self.info)

    def env_values(self) -> dict[str, object]:
        """What a second shell needs to drive this stack (secrets included)."""
        s = self.settings
        values: dict[str, object] = {
            DEV_PID_VARIABLE: os.getpid(),
            "MAHAK_SYNC_DATA_DIR": self.data_dir,
            "DATABASE_URL": s.database_url.get_secret_value() if s.database_url else None,
            "TEMPORAL_ADDRESS": s.temporal_address,
            "TEMPORAL_NAMESPACE": s.temporal_namespace,
            "TEMPORAL_TASK_QUEUE": s.temporal_task_queue,
            "WEBHOOK_URL": self.info.get("webhook"),
            "WEBHOOK_SECRET": s.webhook_secret.get_secret_value(),
            "MAHAK_BASE_URL": s.mahak_base_url,
            "MAHAK_USERNAME": s.mahak_username,
            "MAHAK_PASSWORD": s.mahak_password.get_secret_value(),
            "MAHAK_DATABASE_ID": s.mahak_database_id,
            "MAHAK_PACKAGE_NO": s.mahak_package_no,
            "PAYMENT_GATEWAY_URL": s.payment_gateway_url,
        }
        return {k: v for k, v in values.items() if v is not None and v != ""}

    def _write_env_file(self) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        lines = [
            f"# Written by `mahak-sync dev` (pid {os.getpid()}) at {stamp}. Holds secrets (mode 0600).",
            "# mahak-sync commands run from the project folder read it while that stack runs;",
            f"# to load it into a shell (for other tools): {load_command(self.env_file)}",
            *(_env_line(k, v) for k, v in self.env_values().items()),
        ]
        _write_private(self.env_file, "\n".join(lines) + "\n")

    async def wait(self) -> None:
        """Until a part stops (raises `PartDied` naming it) or the caller is cancelled."""
        while True:
            done, _ = await asyncio.wait(
                self._tasks,
                timeout=self.options.watch_interval,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in done:
                part = self._task_parts.get(task, task.get_name())
                if task.cancelled():
                    raise PartDied(part, "was cancelled")
                error = task.exception()
                if error is not None:
                    raise PartDied(part, f"failed: {error}") from error
                raise PartDied(part, "stopped")
            for part, check in self._checks:
                how = check()
                if how is not None:
                    raise PartDied(part, how)


def _postgres_pid(embedded: Any) -> int | None:
    try:
        pid = embedded._server.get_pid()  # noqa: SLF001 - the wheel's server, to watch it
    except Exception:  # noqa: BLE001
        return None
    return pid if isinstance(pid, int) else None
