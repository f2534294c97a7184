"""How every process connects to Temporal (issue 17): the `temporal` CLI's environment
configuration (TOML profile, `TEMPORAL_*` variables, API key, TLS), with the settings'
`TEMPORAL_ADDRESS`/`TEMPORAL_NAMESPACE` on top; and a TLS connection, tried against the
session's dev server behind a TLS-terminating proxy whose certificate a test CA signed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trustme
from temporalio.client import Client

from mahak_sync.config import Settings
from mahak_sync.runtime import run_worker
from mahak_sync.temporal import connect, connect_config, free_port

ROOT = Path(__file__).resolve().parent.parent


def _settings(**values: str) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in [n for n in os.environ if n.startswith("TEMPORAL_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def test_a_profile_and_the_environment_are_read_as_the_cli_reads_them(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config_file = tmp_path / "temporal.toml"
    config_file.write_text(
        '[profile.prod]\naddress = "prod.tmprl.cloud:7233"\nnamespace = "shop.a1b2c"\n'
        'api_key = "profile-key"\n'
    )
    clean_env.setenv("TEMPORAL_CONFIG_FILE", str(config_file))
    clean_env.setenv("TEMPORAL_PROFILE", "prod")
    config = connect_config(_settings())
    assert config["target_host"] == "prod.tmprl.cloud:7233"
    assert config["namespace"] == "shop.a1b2c" and config["api_key"] == "profile-key"
    assert config["tls"]  # an API key turns TLS on, as the CLI does

    # TEMPORAL_* variables override the profile; explicit settings override both.
    clean_env.setenv("TEMPORAL_NAMESPACE", "from-env")
    assert connect_config(_settings())["namespace"] == "from-env"
    explicit = _settings(TEMPORAL_ADDRESS="other:7233", TEMPORAL_NAMESPACE="mine")
    config = connect_config(explicit)
    assert (config["target_host"], config["namespace"]) == ("other:7233", "mine")


def test_without_configuration_the_local_dev_server_is_used(clean_env: pytest.MonkeyPatch) -> None:
    config = connect_config(_settings())
    assert (config["target_host"], config["namespace"]) == ("localhost:7233", "default")
    assert not config.get("tls") and not config.get("api_key")


@contextlib.asynccontextmanager
async def tls_proxy(upstream: str, cert: trustme.LeafCert) -> AsyncIterator[str]:
    """A TLS endpoint (ALPN h2, for gRPC) that forwards each connection to `upstream`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    context.set_alpn_protocols(["h2"])
    host, port = upstream.rsplit(":", 1)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(host, int(port))
        try:
            await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))
        except asyncio.CancelledError:  # the proxy is closing: end this connection quietly
            client_w.close()
            server_w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    async with server:
        yield f"localhost:{server.sockets[0].getsockname()[1]}"


async def test_tls_with_the_servers_ca_connects_and_a_wrong_ca_fails_clearly(
    temporal_client: Client, clean_env: pytest.MonkeyPatch, tmp_path: Path, db_dsn: str
) -> None:
    ca, stranger = trustme.CA(), trustme.CA()
    ca_file, wrong_file = tmp_path / "ca.pem", tmp_path / "wrong.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    stranger.cert_pem.write_to_path(str(wrong_file))
    upstream = temporal_client.service_client.config.target_host
    async with tls_proxy(upstream, ca.issue_cert("localhost")) as address:
        clean_env.setenv("TEMPORAL_ADDRESS", address)
        clean_env.setenv("TEMPORAL_NAMESPACE", temporal_client.namespace)
        clean_env.setenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH", str(ca_file))
        client = await connect(_settings())
        assert await client.count_workflows() is not None  # a real call, over TLS

        # The worker itself, configured by the same variables, polls over TLS.
        port = free_port()
        settings = _settings(
            DATABASE_URL=db_dsn,
            HEALTH_PORT=str(port),
            TEMPORAL_TASK_QUEUE=f"tls-{port}",
            MAHAK_BASE_URL="http://127.0.0.1:9/API/v3",
        )
        stop = asyncio.Event()
        worker = asyncio.create_task(run_worker(settings, stop=stop))
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                for _ in range(300):
                    with contextlib.suppress(httpx.TransportError):
                        ready = await http.get("/readyz")
                        if ready.status_code == 200:
                            break
                    await asyncio.sleep(0.05)
                checks = {c["name"]: c for c in ready.json()["checks"]}
            assert checks["temporal"]["ok"] and address in checks["temporal"]["detail"]
            assert checks["worker"]["ok"]
        finally:
            stop.set()
            await asyncio.wait_for(worker, 30)

        clean_env.setenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH", str(wrong_file))
        with pytest.raises(RuntimeError, match="(?i)connect"):
            await connect(_settings())

        # The worker does not wait for a server it can never trust: one line, exit 78 (in a
        # thread: the proxy runs on this loop).
        env = {**os.environ, "MAHAK_SYNC_DATA_DIR": str(tmp_path), "LOG_FORMAT": "json"}
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(ROOT / "worker.py")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 78, done.stderr
    [line] = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert "TLS connection to Temporal failed" in line and "UnknownIssuer" in line
    assert "Traceback" not in done.stderr
