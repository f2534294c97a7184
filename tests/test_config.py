import io
import json

import pytest
import structlog

from mahak_sync import logging as mlog
from mahak_sync.config import DEFAULT_MAHAK_BASE_URL, Settings


def test_defaults_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MAHAK_BASE_URL", "TEMPORAL_TASK_QUEUE", "DATABASE_URL", "TEMPORAL_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    s = Settings(_env_file=None)
    assert s.mahak_base_url == DEFAULT_MAHAK_BASE_URL == "https://mahakacc.mahaksoft.com/API/v3"
    assert s.temporal_task_queue == "mahak-sync"
    assert s.incoming_sync_interval.total_seconds() == 300
    assert s.outgoing_sweep_interval.total_seconds() == 60
    assert s.database_url is None and s.temporal_address is None


def test_environment_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "MAHAK_BASE_URL": "http://127.0.0.1:9/API/v3/",
        "MAHAK_USERNAME": "shop",
        "MAHAK_PASSWORD": "s3cret-pass",
        "MAHAK_DATABASE_ID": "1234567",
        "MAHAK_PACKAGE_NO": "7654321",
        "MAHAK_PAGE_SIZE": "250",
        "DATABASE_URL": "postgresql://u:p@db/shop",
        "TEMPORAL_ADDRESS": "temporal:7233",
        "TEMPORAL_NAMESPACE": "shop",
        "TEMPORAL_TASK_QUEUE": "mahak-sync-b",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = Settings(_env_file=None)
    assert s.mahak_base_url == "http://127.0.0.1:9/API/v3"
    assert s.mahak_username == "shop"
    assert s.mahak_password.get_secret_value() == "s3cret-pass"
    assert s.mahak_database_id == 1234567
    assert s.mahak_package_no == "7654321"
    assert s.mahak_page_size == 250
    assert s.database_url is not None and s.database_url.get_secret_value().endswith("/shop")
    assert (s.temporal_address, s.temporal_namespace, s.temporal_task_queue) == (
        "temporal:7233",
        "shop",
        "mahak-sync-b",
    )
    # Secrets never show in the settings' repr (which ends up in tracebacks and logs).
    assert "s3cret-pass" not in repr(s) and "u:p@db" not in repr(s)


def test_logs_never_carry_secrets() -> None:
    buf = io.StringIO()
    mlog.configure_logging("json")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=buf))
    mlog.register_secret("hunter2-password")
    log = mlog.get_logger("t", order_id=42)
    log.info("login", password="plain", user_token="abc.def.ghi", note="sent hunter2-password")
    line = json.loads(buf.getvalue().strip().splitlines()[-1])
    assert line["order_id"] == 42
    assert line["password"] == "***" and line["user_token"] == "***"
    assert "hunter2-password" not in buf.getvalue()


def test_the_incoming_workflow_gets_its_settings_from_the_environment(monkeypatch) -> None:
    from mahak_sync.launch import incoming_config

    monkeypatch.setenv("INCOMING_RECONCILE_EVERY_SECONDS", "3600")
    monkeypatch.setenv("MAHAK_PAGE_SIZE", "250")
    config = incoming_config(Settings())
    assert config.reconcile_every_seconds == 3600 and config.page_size == 250
    assert incoming_config(Settings(), page_size=7).page_size == 7
