"""Encrypted payloads (issue 17): the AES-GCM payload codec, its settings, its wiring into the one
Temporal connection, the codec server the Web UI and the `temporal` CLI call, and replay of
plain (recorded before encryption) and encrypted histories through the codec."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, SecretStr, ValidationError
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, Worker

from activities.orders import OrderActivities
from activities.payments import PaymentActivities
from mahak_client.client import MahakClient
from mahak_simulator.control import SimControl
from mahak_simulator.server import SimulatorServer
from mahak_sync import logging as mlog
from mahak_sync.cli_errors import EXIT_CONFIG, explain
from mahak_sync.codec import (
    ENCODING,
    KEY_ID_METADATA,
    EncryptionCodec,
    PayloadDecryptionError,
    data_converter,
)
from mahak_sync.codec_server import create_app
from mahak_sync.config import Settings
from mahak_sync.health import serving
from mahak_sync.orders_api import start_order_sync
from mahak_sync.runtime import INTERCEPTORS, WORKFLOWS
from mahak_sync.temporal import connect, free_port, temporal_cli_path
from shopdb import orders
from tests.order_helpers import make_order
from workflows.order_sync import OrderSyncWorkflow
from workflows.order_types import OrderSyncResult

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
KEY_OLD = base64.b64encode(b"o" * 32).decode()
KEY_NEW = base64.b64encode(b"n" * 32).decode()
TOKEN = "codec-token-7f3c9a1e"
UI_ORIGIN = "http://localhost:8233"
# A value that must never appear in clear in an encrypted history.
DISTINCTIVE = "Golnar Farahzad-Qx7"


def _settings(**values: str) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def keyed(current: str = "k2", keys: str = f"k1:{KEY_OLD},k2:{KEY_NEW}", **more: str) -> Settings:
    return _settings(PAYLOAD_ENCRYPTION_KEYS=keys, PAYLOAD_ENCRYPTION_KEY_ID=current, **more)


def _codec(settings: Settings) -> EncryptionCodec:
    codec = EncryptionCodec.from_settings(settings)
    assert codec is not None
    return codec


def _plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


# --- the codec ---------------------------------------------------------------------------


async def test_round_trip_encrypts_with_the_current_key_and_restores_the_payload() -> None:
    codec = _codec(keyed())
    original = [_plain(DISTINCTIVE), _plain("second"), Payload()]
    encoded = await codec.encode(original)
    for payload in encoded:
        assert payload.metadata["encoding"] == ENCODING == b"binary/encrypted"
        assert payload.metadata[KEY_ID_METADATA] == b"k2"
        assert DISTINCTIVE.encode() not in payload.SerializeToString()
    # A fresh nonce each time: the same payload never encrypts to the same bytes.
    assert (await codec.encode(original[:1]))[0].data != encoded[0].data
    assert await codec.decode(encoded) == original


async def test_rotation_encrypts_with_the_new_key_and_decrypts_old_and_new() -> None:
    before = _codec(keyed(current="k1", keys=f"k1:{KEY_OLD}"))
    old = await before.encode([_plain("written under k1")])
    after = _codec(keyed(current="k2"))  # k2 added and made current, k1 still listed
    new = await after.encode([_plain("written under k2")])
    assert new[0].metadata[KEY_ID_METADATA] == b"k2"
    assert await after.decode([*old, *new]) == [
        _plain("written under k1"),
        _plain("written under k2"),
    ]
    # Until k1 is dropped from the list, nothing it encrypted becomes unreadable; once it is:
    with pytest.raises(PayloadDecryptionError, match="'k1'.*not list"):
        await _codec(keyed(keys=f"k2:{KEY_NEW}")).decode(old)


async def test_tampered_ciphertext_and_a_relabelled_key_id_are_refused() -> None:
    codec = _codec(keyed())
    [sealed] = await codec.encode([_plain(DISTINCTIVE)])
    tampered = Payload()
    tampered.CopyFrom(sealed)
    tampered.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(PayloadDecryptionError, match="failed authentication"):
        await codec.decode([tampered])
    # The key id is authenticated too: a payload relabelled with another listed id fails.
    relabelled = Payload()
    relabelled.CopyFrom(sealed)
    relabelled.metadata[KEY_ID_METADATA] = b"k1"
    with pytest.raises(PayloadDecryptionError, match="failed authentication"):
        await codec.decode([relabelled])


async def test_an_unknown_key_id_is_refused_with_a_clear_error() -> None:
    [sealed] = await _codec(keyed(current="k1", keys=f"k1:{KEY_OLD}")).encode([_plain("x")])
    sealed.metadata[KEY_ID_METADATA] = b"retired-2023"
    with pytest.raises(PayloadDecryptionError) as caught:
        await _codec(keyed()).decode([sealed])
    assert str(caught.value) == (
        "payload encrypted with key id 'retired-2023', which PAYLOAD_ENCRYPTION_KEYS does not "
        "list (listed: k1, k2); add that key to the list"
    )


async def test_plain_payloads_pass_through_decode_unchanged() -> None:
    codec = _codec(keyed())
    plain = [_plain("recorded before encryption"), Payload(metadata={"encoding": b"binary/null"})]
    assert await codec.decode(plain) == plain
    [sealed] = await codec.encode([_plain("new")])
    assert await codec.decode([plain[0], sealed]) == [plain[0], _plain("new")]


# --- settings ----------------------------------------------------------------------------


def test_encryption_is_off_unless_keys_are_set() -> None:
    settings = _settings()
    assert settings.payload_encryption_keys is None and settings.payload_keys == {}
    assert EncryptionCodec.from_settings(settings) is None
    assert data_converter(settings) is pydantic_data_converter
    converter = data_converter(keyed())
    assert isinstance(converter.payload_codec, EncryptionCodec)
    assert converter.payload_converter_class is pydantic_data_converter.payload_converter_class
    assert settings.codec_server_cors_origin_list == [UI_ORIGIN]


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        (
            {"PAYLOAD_ENCRYPTION_KEYS": KEY_NEW, "PAYLOAD_ENCRYPTION_KEY_ID": "k"},
            "not KEY_ID:BASE64",
        ),
        (
            {"PAYLOAD_ENCRYPTION_KEYS": "k1:not base64!", "PAYLOAD_ENCRYPTION_KEY_ID": "k1"},
            "base64",
        ),
        (
            {"PAYLOAD_ENCRYPTION_KEYS": f"k1:{base64.b64encode(b'x' * 20).decode()}"},
            "20 bytes; AES-GCM needs 16, 24 or 32",
        ),
        ({"PAYLOAD_ENCRYPTION_KEYS": f"k1:{KEY_OLD},k1:{KEY_NEW}"}, "listed twice"),
        (
            {"PAYLOAD_ENCRYPTION_KEYS": f"k1:{KEY_OLD}"},
            "PAYLOAD_ENCRYPTION_KEY_ID: Value error, not set",
        ),
        (
            {"PAYLOAD_ENCRYPTION_KEYS": f"k1:{KEY_OLD}", "PAYLOAD_ENCRYPTION_KEY_ID": "k9"},
            "'k9' is not in PAYLOAD_ENCRYPTION_KEYS (listed: k1)",
        ),
        ({"PAYLOAD_ENCRYPTION_KEY_ID": "k1"}, "set, but PAYLOAD_ENCRYPTION_KEYS is not"),
    ],
)
def test_a_malformed_key_list_or_unlisted_current_key_is_a_clear_configuration_error(
    env: dict[str, str], problem: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        _settings(**env)
    # What the CLI prints (exit 78), and the exception's own text: the problem, never a key.
    code, message = explain(caught.value, None)
    assert code == EXIT_CONFIG and problem in message, message
    for text in (message, str(caught.value)):
        assert KEY_OLD not in text and KEY_NEW not in text


def test_url_safe_keys_and_spaces_are_accepted() -> None:
    url_safe = base64.urlsafe_b64encode(b"\xfb" * 32).decode()
    settings = keyed(current="b", keys=f" a:{KEY_OLD} , b:{url_safe} ,")
    assert settings.payload_keys == {"a": b"o" * 32, "b": b"\xfb" * 32}


async def test_connect_registers_the_keys_as_secrets(
    temporal_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await connect(_codec_settings(temporal_client, monkeypatch))
    assert isinstance(client.data_converter.payload_codec, EncryptionCodec)
    assert mlog.redact_secrets(None, "info", {"note": f"k1:{KEY_OLD} / {KEY_NEW}"}) == {
        "note": "k1:*** / ***"
    }


# --- end to end on the dev server ----------------------------------------------------------


class Customer(BaseModel):
    name: str
    mobile: str


class Greeting(BaseModel):
    text: str


@activity.defn(name="codec_test_greet")
async def greet(customer: Customer) -> Greeting:
    return Greeting(text=f"salam {customer.name}")


@workflow.defn(name="CodecTestWorkflow", sandboxed=False)
class CodecTestWorkflow:
    @workflow.run
    async def run(self, customer: Customer) -> Greeting:
        return await workflow.execute_activity(
            greet, customer, start_to_close_timeout=timedelta(seconds=30)
        )


def _codec_settings(temporal_client: Client, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in [n for n in os.environ if n.startswith("TEMPORAL_")]:
        monkeypatch.delenv(name)
    return keyed(
        TEMPORAL_ADDRESS=temporal_client.service_client.config.target_host,
        TEMPORAL_NAMESPACE=temporal_client.namespace,
        CODEC_SERVER_TOKEN=TOKEN,
    )


def _texts(node: Any) -> Iterator[str]:
    """Every string of an exported history, and what each base64 string decodes to."""
    if isinstance(node, dict):
        for value in node.values():
            yield from _texts(value)
    elif isinstance(node, list):
        for value in node:
            yield from _texts(value)
    elif isinstance(node, str):
        yield node
        try:
            yield base64.b64decode(node, validate=True).decode("utf-8", errors="replace")
        except (binascii.Error, ValueError):
            pass


def _history_payloads(raw: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "payloads" in node and isinstance(node["payloads"], list):
                found.extend(node["payloads"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(raw)
    return found


@pytest.fixture
async def encrypted_run(
    temporal_client: Client, task_queue: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Settings, Client, str]]:
    """A finished CodecTestWorkflow run whose client and worker encrypt (`connect` with keys)."""
    settings = _codec_settings(temporal_client, monkeypatch)
    client = await connect(settings)
    workflow_id = f"codec-{uuid.uuid4().hex[:12]}"
    async with Worker(
        client, task_queue=task_queue, workflows=[CodecTestWorkflow], activities=[greet]
    ):
        result = await client.execute_workflow(
            CodecTestWorkflow.run,
            Customer(name=DISTINCTIVE, mobile="09129998877"),
            id=workflow_id,
            task_queue=task_queue,
            result_type=Greeting,
        )
    assert result == Greeting(text=f"salam {DISTINCTIVE}")
    yield settings, client, workflow_id


async def test_an_encrypted_run_keeps_no_plaintext_in_history_and_reads_with_the_codec(
    temporal_client: Client, encrypted_run: tuple[Settings, Client, str]
) -> None:
    settings, client, workflow_id = encrypted_run
    # Read by a client WITHOUT the codec (the session fixture's): ciphertext only.
    plain_handle = temporal_client.get_workflow_handle(workflow_id)
    raw = (await plain_handle.fetch_history()).to_json_dict()
    assert not [text for text in _texts(raw) if DISTINCTIVE in text or "09129998877" in text]
    payloads = _history_payloads(raw)
    assert len(payloads) >= 4  # workflow input, activity input, activity result, workflow result
    for payload in payloads:
        assert base64.b64decode(payload["metadata"]["encoding"]) == ENCODING
        assert base64.b64decode(payload["metadata"][KEY_ID_METADATA]) == b"k2"
    with pytest.raises(Exception, match="(?i)encoding"):
        await plain_handle.result()

    # A client WITH the codec reads the result and the history's input normally.
    handle = client.get_workflow_handle(workflow_id, result_type=Greeting)
    assert await handle.result() == Greeting(text=f"salam {DISTINCTIVE}")
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    [customer] = await client.data_converter.decode(started.input.payloads, [Customer])
    assert customer == Customer(name=DISTINCTIVE, mobile="09129998877")

    # The encrypted history replays with the codec-enabled converter, and not without it.
    with_codec = Replayer(workflows=[CodecTestWorkflow], data_converter=data_converter(settings))
    assert (
        await with_codec.replay_workflow(history, raise_on_replay_failure=False)
    ).replay_failure is None
    without = Replayer(workflows=[CodecTestWorkflow], data_converter=pydantic_data_converter)
    result = await without.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None


@contextlib.asynccontextmanager
async def codec_server(settings: Settings) -> AsyncIterator[str]:
    """The codec server (`mahak-sync codec-server`'s app) on a free port; yields its URL."""
    port = free_port()
    async with serving(create_app(settings), port, host="127.0.0.1"):
        yield f"http://127.0.0.1:{port}"


async def temporal_show(
    temporal_client: Client, workflow_id: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """`temporal workflow show --output json` as an operator runs it (in a thread: the codec
    server answers on this loop)."""
    cmd = [
        temporal_cli_path(),
        "workflow",
        "show",
        "--workflow-id",
        workflow_id,
        "--output",
        "json",
        "--address",
        temporal_client.service_client.config.target_host,
        "--namespace",
        temporal_client.namespace,
        *extra,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    return await asyncio.to_thread(
        subprocess.run, cmd, capture_output=True, text=True, timeout=60, env=env
    )


async def test_temporal_workflow_show_through_the_codec_server(
    temporal_client: Client, encrypted_run: tuple[Settings, Client, str]
) -> None:
    """What an operator runs: `temporal workflow show` decodes through the codec server with
    the token, shows ciphertext without the codec server, and fails with a wrong token."""
    settings, _, workflow_id = encrypted_run
    async with codec_server(settings) as endpoint:
        decoded = await temporal_show(
            temporal_client,
            workflow_id,
            "--codec-endpoint",
            endpoint,
            "--codec-auth",
            f"Bearer {TOKEN}",
        )
        assert decoded.returncode == 0, decoded.stderr
        assert any(DISTINCTIVE in text for text in _texts(json.loads(decoded.stdout)))

        encrypted = await temporal_show(temporal_client, workflow_id)
        assert encrypted.returncode == 0, encrypted.stderr
        assert not [t for t in _texts(json.loads(encrypted.stdout)) if DISTINCTIVE in t]

        # A wrong token: the server answers 401, the CLI retries, then fails (no payload shown).
        refused = await temporal_show(
            temporal_client,
            workflow_id,
            "--codec-endpoint",
            endpoint,
            "--codec-auth",
            "Bearer wrong",
        )
        assert refused.returncode != 0 and DISTINCTIVE not in refused.stdout, refused.stdout


async def test_an_order_synced_with_the_codec_on_is_ciphertext_without_it(
    temporal_client: Client,
    task_queue: str,
    db_pool: Any,
    simulator: SimulatorServer,
    sim: SimControl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 17's case: a real order, synced to the simulator by the production activities
    with payloads encrypted; `temporal workflow show` reads it through the codec server and,
    without it, sees ciphertext only (and the customer's name nowhere)."""
    settings = _codec_settings(temporal_client, monkeypatch).model_copy(
        update={
            "temporal_task_queue": task_queue,
            "mahak_base_url": simulator.base_url,
            "mahak_username": "shop",
            "mahak_password": SecretStr("secret"),
        }
    )
    client = await connect(settings)
    seeded = await sim.seed(2)
    order = await make_order(db_pool, [(seeded.product_details[0], seeded.stores[0], 1, 1000)])
    await db_pool.execute(
        "UPDATE shop_customers SET first_name = $1 WHERE id = $2", DISTINCTIVE, order.customer_id
    )
    await orders.mark_paid(db_pool, order.id, order.amount, f"PAY-{order.id}")
    async with (
        MahakClient.from_settings(settings) as mahak,
        httpx.AsyncClient() as gateway,
        Worker(
            client,
            task_queue=task_queue,
            workflows=[OrderSyncWorkflow],
            activities=[
                *OrderActivities(db_pool, mahak, settings).all(),
                *PaymentActivities(db_pool, gateway, "http://127.0.0.1:9").all(),
            ],
            interceptors=INTERCEPTORS,
        ),
    ):
        workflow_id = await start_order_sync(client, order.id, settings)
        result = await client.get_workflow_handle(workflow_id, result_type=OrderSyncResult).result()
    assert result.outcome == "synced"
    assert [o for o in await sim.orders() if o.order_client_id == order.order_client_id]

    async with codec_server(settings) as endpoint:
        decoded = await temporal_show(
            temporal_client,
            workflow_id,
            "--codec-endpoint",
            endpoint,
            "--codec-auth",
            f"Bearer {TOKEN}",
        )
        plain = await temporal_show(temporal_client, workflow_id)
    assert decoded.returncode == 0 and plain.returncode == 0, decoded.stderr + plain.stderr
    readable = list(_texts(json.loads(decoded.stdout)))
    assert any('"outcome":"synced"' in t.replace(" ", "") for t in readable), decoded.stdout[:2000]
    hidden = list(_texts(json.loads(plain.stdout)))
    assert not [t for t in hidden if "synced" in t and "outcome" in t]
    assert not [t for t in [*readable, *hidden] if DISTINCTIVE in t]
    history = (
        await temporal_client.get_workflow_handle(workflow_id).fetch_history()
    ).to_json_dict()

    # Every payload is ciphertext, but the SDK's own patch markers (`workflow.patched` ids);
    # local activities' markers (the order loaded) carry the order's data: ciphertext too.
    def marker(e: dict[str, Any]) -> str | None:
        return e.get("markerRecordedEventAttributes", {}).get("markerName")

    events = [e for e in history["events"] if marker(e) != "core_patch"]
    for e in events:
        if marker(e) == "core_local_activity":  # its `data` detail is the SDK's bookkeeping
            e["markerRecordedEventAttributes"]["details"].pop("data")
    local = [e for e in events if marker(e) == "core_local_activity"]
    assert local and _history_payloads({"events": local}), "the order's load is a local activity"
    payloads = _history_payloads({"events": events})
    # Input, the local load's result, the send's input and result, the workflow's result.
    assert len(payloads) >= 5
    for payload in payloads:
        assert base64.b64decode(payload["metadata"]["encoding"]) == ENCODING, payload


# --- the codec server ----------------------------------------------------------------------


def _client_for(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(settings)), base_url="http://codec"
    )


def _wire(payloads: list[Payload]) -> dict[str, Any]:
    """The protobuf JSON shape the Web UI and the CLI send."""
    return {
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                "data": base64.b64encode(p.data).decode(),
            }
            for p in payloads
        ]
    }


def _unwire(body: dict[str, Any]) -> list[Payload]:
    return [
        Payload(
            metadata={k: base64.b64decode(v) for k, v in p.get("metadata", {}).items()},
            data=base64.b64decode(p.get("data", "")),
        )
        for p in body["payloads"]
    ]


async def test_codec_server_encodes_and_decodes_with_the_token() -> None:
    settings = keyed(CODEC_SERVER_TOKEN=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}", "X-Namespace": "default"}
    async with _client_for(settings) as http:
        encoded = await http.post("/encode", json=_wire([_plain(DISTINCTIVE)]), headers=auth)
        assert encoded.status_code == 200, encoded.text
        assert DISTINCTIVE not in encoded.text
        [sealed] = _unwire(encoded.json())
        assert sealed.metadata["encoding"] == ENCODING
        assert await _codec(settings).decode([sealed]) == [_plain(DISTINCTIVE)]

        # What the workers wrote decodes; plain payloads come back as they are.
        written = await _codec(settings).encode([_plain("from a worker")])
        body = _wire([*written, _plain("recorded before encryption")])
        decoded = await http.post("/decode", json=body, headers=auth)
        assert decoded.status_code == 200, decoded.text
        assert decoded.headers["content-type"] == "application/json"
        assert _unwire(decoded.json()) == [
            _plain("from a worker"),
            _plain("recorded before encryption"),
        ]
        # The bare token (as `--codec-auth <token>` sends it) is accepted too.
        bare = await http.post("/decode", json=body, headers={"Authorization": TOKEN})
        assert bare.status_code == 200

        # Undecryptable payloads and malformed bodies: 400 with the reason.
        written[0].metadata[KEY_ID_METADATA] = b"gone"
        bad = await http.post("/decode", json=_wire(written), headers=auth)
        assert bad.status_code == 400 and "'gone'" in bad.json()["error"]
        junk = await http.post("/decode", content=b"not json", headers=auth)
        assert junk.status_code == 400 and "malformed body" in junk.json()["error"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Basic {TOKEN}"},
    ],
    ids=["none", "wrong", "empty", "other-scheme"],
)
async def test_codec_server_refuses_requests_without_the_token(headers: dict[str, str]) -> None:
    settings = keyed(CODEC_SERVER_TOKEN=TOKEN)
    [sealed] = await _codec(settings).encode([_plain(DISTINCTIVE)])
    async with _client_for(settings) as http:
        for path in ("/decode", "/encode"):
            answer = await http.post(path, json=_wire([sealed]), headers=headers)
            assert answer.status_code == 401 and answer.json() == {"error": "unauthorized"}
            assert DISTINCTIVE not in answer.text


async def test_codec_server_answers_the_web_uis_cors_preflight() -> None:
    settings = keyed(CODEC_SERVER_TOKEN=TOKEN)
    preflight = {
        "Origin": UI_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
    }
    async with _client_for(settings) as http:
        answer = await http.options("/decode", headers=preflight)  # no token: preflights have none
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == UI_ORIGIN
        assert "POST" in answer.headers["access-control-allow-methods"]
        allowed = answer.headers["access-control-allow-headers"].lower()
        assert {"authorization", "content-type", "x-namespace"} <= {
            h.strip() for h in allowed.split(",")
        }
        assert answer.headers["access-control-allow-credentials"] == "true"
        # The actual call from the UI carries the CORS headers too (401 included, so the UI
        # can show why).
        call = await http.post(
            "/decode",
            json={"payloads": []},
            headers={"Origin": UI_ORIGIN, "Authorization": f"Bearer {TOKEN}"},
        )
        assert call.status_code == 200 and call.json() == {"payloads": []}
        assert call.headers["access-control-allow-origin"] == UI_ORIGIN
        unauth = await http.post("/decode", json={"payloads": []}, headers={"Origin": UI_ORIGIN})
        assert unauth.status_code == 401
        assert unauth.headers["access-control-allow-origin"] == UI_ORIGIN

        # Another origin gets no CORS permission.
        stranger = await http.options(
            "/decode", headers={**preflight, "Origin": "http://evil.test"}
        )
        assert stranger.status_code == 400
        assert "access-control-allow-origin" not in stranger.headers

    other = keyed(
        CODEC_SERVER_TOKEN=TOKEN,
        CODEC_SERVER_CORS_ORIGINS="https://temporal.shop.ir, http://localhost:8233",
    )
    assert other.codec_server_cors_origin_list == ["https://temporal.shop.ir", UI_ORIGIN]
    async with _client_for(other) as http:
        answer = await http.options(
            "/decode", headers={**preflight, "Origin": "https://temporal.shop.ir"}
        )
        assert answer.headers["access-control-allow-origin"] == "https://temporal.shop.ir"


def test_codec_server_will_not_start_without_keys_or_token() -> None:
    with pytest.raises(SystemExit, match="PAYLOAD_ENCRYPTION_KEYS is not set"):
        create_app(_settings(CODEC_SERVER_TOKEN=TOKEN))
    with pytest.raises(SystemExit, match="CODEC_SERVER_TOKEN is not set"):
        create_app(keyed())


def test_the_codec_server_command_parses() -> None:
    import argparse

    from mahak_sync import cli_codec

    parser = argparse.ArgumentParser()
    cli_codec.register(parser.add_subparsers())
    args = parser.parse_args(["codec-server", "--host", "0.0.0.0", "--port", "9999"])
    assert (args.host, args.port, args.func.__name__) == ("0.0.0.0", 9999, "_codec_server")
    assert parser.parse_args(["codec-server"]).port == 8081


# --- replay with the codec -----------------------------------------------------------------


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_histories_replay_with_the_codec_enabled_converter(path: Path) -> None:
    """Histories recorded before encryption (plain payloads) replay on a worker with the codec
    on: its decode passes them through. (`test_replay.py` replays them without the codec.)"""
    raw = json.loads(path.read_text())
    history = WorkflowHistory.from_json(f"replay-codec-{path.stem}", raw)
    replayer = Replayer(workflows=WORKFLOWS, data_converter=data_converter(keyed()))
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name} no longer replays: {result.replay_failure}"
