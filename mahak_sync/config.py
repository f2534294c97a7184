"""The one place configuration is read from.

Every setting comes from the environment (or a `.env` file); the environment names are a
public contract with operators and are documented in the README. Nothing else in the
project reads `os.environ` for configuration.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
import re
import socket
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MAHAK_BASE_URL = "https://mahakacc.mahaksoft.com/API/v3"
# Defaults that code below the entry points also uses when a caller passes no value.
DEFAULT_LOOKBACK_ROWVERSIONS = 1000
DEFAULT_SHOP_PRICE_LEVEL = 1
# MAHAK_PAGE_SIZE's default (issue 16, measured in bench/RESULTS.md "## initial_sync"). Why a
# page size at all: without one an entity comes back in ONE answer, held whole while it is
# parsed and stored (worker peak RSS 763 MB for 100 000 product details, uncapped; 173 MB at
# 5000 for 30 000, where uncapped took 278 MB), so memory grows with the catalogue. Why 5000:
# it is the one page size seen working against the live server (MX, shared/mahak-api.md §3:
# with 5000 every row arrived; the rows lost at 100 were ties cut at the cap, which the
# pager's tie rule hands on safely), and past ~1000 rows a page's round trip is a small part
# of its cost, so larger pages buy little speed and cost memory. The trust this puts in
# capped lists (the lowest RowVersions, ascending) is checked on every answer by the pager
# (ascending, nothing below the bound, no more rows than asked: else re-read without
# pageSize), can be tested against a server with `mahak-sync mahak check --paging`, and the
# periodic reconciliation, which never sends pageSize, repairs and counts what a wrong trust
# missed. MAHAK_PAGE_SIZE=0 sends no pageSize (§10 (a)'s preference) where memory allows.
DEFAULT_MAHAK_PAGE_SIZE = 5000


def _means_no_page_size(value: object) -> bool:
    return value == 0 or (isinstance(value, str) and value.strip().lower() in ("0", "none"))


def page_size_arg(text: str) -> int:
    """`--page-size` of the CLIs: a number of rows, 0 for "send no pageSize"."""
    if _means_no_page_size(text):
        return 0
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of rows: {text!r}") from None
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError("a page size is 1 to 10000 rows, or 0 for no pageSize")
    return value


# AES-GCM takes 128-, 192- or 256-bit keys.
PAYLOAD_KEY_SIZES = (16, 24, 32)
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_URLSAFE = str.maketrans("-_", "+/")


def parse_payload_keys(text: str) -> dict[str, bytes]:
    """`PAYLOAD_ENCRYPTION_KEYS` (`id1:base64key,id2:base64key`) as {key id: key bytes}.

    Raises ValueError naming the problem and the key id, never any key material."""
    keys: dict[str, bytes] = {}
    for n, entry in enumerate((part.strip() for part in text.split(",")), start=1):
        if not entry:
            continue
        key_id, sep, encoded = (piece.strip() for piece in entry.partition(":"))
        if not sep or not key_id or not encoded:
            raise ValueError(f"entry {n} is not KEY_ID:BASE64_KEY")
        if not _KEY_ID.fullmatch(key_id):
            raise ValueError(f"entry {n}: a key id is 1-64 letters, digits, '.', '_' or '-'")
        if key_id in keys:
            raise ValueError(f"key id {key_id!r} is listed twice")
        try:
            # standard or URL-safe alphabet
            key = base64.b64decode(encoded.translate(_URLSAFE), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"key {key_id!r} is not base64") from None
        if len(key) not in PAYLOAD_KEY_SIZES:
            raise ValueError(
                f"key {key_id!r} is {len(key)} bytes; AES-GCM needs 16, 24 or 32 (32 recommended)"
            )
        keys[key_id] = key
    if not keys:
        raise ValueError("no key listed")
    return keys


def chosen_page_size(arg: int | None, settings: Settings) -> int | None:
    """A `--page-size` given (0: no pageSize) over `MAHAK_PAGE_SIZE`."""
    return settings.mahak_page_size if arg is None else (arg or None)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        # An invalid setting's error names the problem, never the value (a key, a password).
        hide_input_in_errors=True,
    )

    # --- Mahak -----------------------------------------------------------------------
    mahak_base_url: str = Field(DEFAULT_MAHAK_BASE_URL, validation_alias="MAHAK_BASE_URL")
    mahak_username: str = Field("", validation_alias="MAHAK_USERNAME")
    mahak_password: SecretStr = Field(SecretStr(""), validation_alias="MAHAK_PASSWORD")
    mahak_database_id: int | None = Field(None, validation_alias="MAHAK_DATABASE_ID")
    mahak_package_no: str | None = Field(None, validation_alias="MAHAK_PACKAGE_NO")
    # Rows per entity per GetAllData request; unset (or empty): DEFAULT_MAHAK_PAGE_SIZE (see
    # there for the evidence and measurements behind it); 0: no `pageSize`. A page size makes
    # the pager trust that capped lists hold the lowest RowVersions, which no answer proves:
    # where `mahak-sync mahak check --paging` finds otherwise, set 0.
    mahak_page_size: int | None = Field(
        DEFAULT_MAHAK_PAGE_SIZE, ge=1, le=10_000, validation_alias="MAHAK_PAGE_SIZE"
    )
    # `LoginV2` sends the extended login body; `Login` only user name and password.
    mahak_login_endpoint: Literal["Login", "LoginV2"] = Field(
        "LoginV2", validation_alias="MAHAK_LOGIN_ENDPOINT"
    )
    # Mahak support has pointed some integrators at the non-V2 data paths; both are live.
    mahak_use_v2: bool = Field(True, validation_alias="MAHAK_USE_V2")
    mahak_timeout_seconds: float = Field(120.0, gt=0, validation_alias="MAHAK_TIMEOUT_SECONDS")
    # Tokens live 7 days; refresh this long before `exp` so a long sync never meets a 401.
    mahak_token_refresh_margin_seconds: float = Field(
        300.0, ge=0, validation_alias="MAHAK_TOKEN_REFRESH_MARGIN_SECONDS"
    )
    mahak_language: str = Field("fa", validation_alias="MAHAK_LANGUAGE")
    mahak_app_id: str = Field("mahak-sync", validation_alias="MAHAK_APP_ID")
    mahak_client_version: str = Field("0.1.0", validation_alias="MAHAK_CLIENT_VERSION")

    # --- Shop database -----------------------------------------------------------------
    # Unset: dev and tests start an embedded PostgreSQL under `data_dir`.
    database_url: SecretStr | None = Field(None, validation_alias="DATABASE_URL")
    database_pool_min_size: int = Field(1, ge=0, validation_alias="DATABASE_POOL_MIN_SIZE")
    database_pool_max_size: int = Field(10, ge=1, validation_alias="DATABASE_POOL_MAX_SIZE")
    migrate_on_start: bool = Field(True, validation_alias="MIGRATE_ON_START")
    # Which Price<n> of a product detail is the shop price (business configuration).
    shop_price_level: int = Field(
        DEFAULT_SHOP_PRICE_LEVEL, ge=1, le=10, validation_alias="SHOP_PRICE_LEVEL"
    )
    data_dir: str = Field(".data", validation_alias="MAHAK_SYNC_DATA_DIR")

    # --- Temporal ----------------------------------------------------------------------
    # Unset: dev starts the bundled `temporal server start-dev`.
    temporal_address: str | None = Field(None, validation_alias="TEMPORAL_ADDRESS")
    temporal_namespace: str = Field("default", validation_alias="TEMPORAL_NAMESPACE")
    temporal_task_queue: str = Field("mahak-sync", validation_alias="TEMPORAL_TASK_QUEUE")

    # --- Start-up ----------------------------------------------------------------------
    # The worker waits for PostgreSQL and Temporal with exponential backoff (1 s doubling)
    # up to this long between tries; it never gives up on its own.
    startup_retry_max_seconds: float = Field(
        30.0, gt=0, validation_alias="STARTUP_RETRY_MAX_SECONDS"
    )

    # --- Schedules ---------------------------------------------------------------------
    incoming_sync_interval_seconds: float = Field(
        300.0,
        gt=0,
        validation_alias=AliasChoices("INCOMING_SYNC_INTERVAL_SECONDS", "INCOMING_SYNC_INTERVAL"),
    )
    outgoing_sweep_interval_seconds: float = Field(
        60.0,
        gt=0,
        validation_alias=AliasChoices("OUTGOING_SWEEP_INTERVAL_SECONDS", "OUTGOING_SWEEP_INTERVAL"),
    )

    # --- Outgoing orders -----------------------------------------------------------------
    # Transient failures (Mahak down, 5xx, timeouts) are retried this long before an
    # operator is asked to decide; the order is never dropped.
    order_send_retry_seconds: float = Field(
        7 * 24 * 3600, gt=0, validation_alias="ORDER_SEND_RETRY_SECONDS"
    )
    # A dispute without an operator decision this long is escalated to staff.
    order_dispute_escalation_seconds: float = Field(
        24 * 3600, gt=0, validation_alias="ORDER_DISPUTE_ESCALATION_SECONDS"
    )
    # Stale references (unknown product detail, store, person): refresh and resend this often.
    order_max_stale_refreshes: int = Field(3, ge=0, validation_alias="ORDER_MAX_STALE_REFRESHES")
    # Late commits (shared/mahak-api.md §10 (f)): each incoming read of an entity starts this
    # many RowVersions below its cursor (0: from the cursor).
    incoming_lookback_rowversions: int = Field(
        DEFAULT_LOOKBACK_ROWVERSIONS, ge=0, validation_alias="INCOMING_LOOKBACK_ROWVERSIONS"
    )
    # A periodic full read from RowVersion 0 (shared/mahak-api.md §10 (a)): this long after
    # the last one (0: only when an operator asks, signal `reconcile_now`).
    incoming_reconcile_every_seconds: float = Field(
        86400.0, ge=0, validation_alias="INCOMING_RECONCILE_EVERY_SECONDS"
    )
    # What public clients send with an order (shared/mahak-api.md §4, §10 (b) (d)).
    # New customers' person group; unset: the first non-deleted PersonGroups row in Mahak.
    mahak_person_group_id: int | None = Field(None, gt=0, validation_alias="MAHAK_PERSON_GROUP_ID")
    # A line's tax/charge % when its product says 0; unset: Mahak's Settings 14001/14000 as
    # mirrored (0 when the mirror has none).
    mahak_tax_percent: float | None = Field(
        None, ge=0, le=100, validation_alias="MAHAK_TAX_PERCENT"
    )
    mahak_charge_percent: float | None = Field(
        None, ge=0, le=100, validation_alias="MAHAK_CHARGE_PERCENT"
    )
    # The receipt's cash box; unset: the bank below, else the login visitor's CashCode.
    mahak_cash_code: int | None = Field(None, gt=0, validation_alias="MAHAK_CASH_CODE")
    mahak_bank_id: int | None = Field(None, gt=0, validation_alias="MAHAK_BANK_ID")

    # --- Payment webhook ---------------------------------------------------------------
    webhook_secret: SecretStr = Field(SecretStr(""), validation_alias="WEBHOOK_SECRET")
    # The payment callback's full URL, as a gateway is configured with it: what
    # `mahak-sync demo order --pay` calls (the dev stack's env file sets its own).
    webhook_url: str = Field(
        "http://127.0.0.1:8080/payments/callback", validation_alias="WEBHOOK_URL"
    )
    webhook_max_skew_seconds: int = Field(300, ge=1, validation_alias="WEBHOOK_MAX_SKEW_SECONDS")
    payment_gateway_url: str | None = Field(None, validation_alias="PAYMENT_GATEWAY_URL")

    # --- Payload encryption --------------------------------------------------------------
    # `id1:base64key,id2:base64key` (AES-GCM, 16/24/32-byte keys). Unset: payloads go to
    # Temporal in clear (the dev stack's default). Payloads are encrypted with the key named
    # by PAYLOAD_ENCRYPTION_KEY_ID and decrypted with whichever listed key they name.
    payload_encryption_keys: SecretStr | None = Field(
        None, validation_alias="PAYLOAD_ENCRYPTION_KEYS"
    )
    payload_encryption_key_id: str | None = Field(
        None, validate_default=True, validation_alias="PAYLOAD_ENCRYPTION_KEY_ID"
    )
    # `mahak-sync codec-server`: the token its callers send as `Authorization`, and the
    # origins (comma-separated) of the Temporal Web UIs allowed to call it from a browser.
    codec_server_token: SecretStr = Field(SecretStr(""), validation_alias="CODEC_SERVER_TOKEN")
    codec_server_cors_origins: str = Field(
        "http://localhost:8233", validation_alias="CODEC_SERVER_CORS_ORIGINS"
    )

    # --- Logging -----------------------------------------------------------------------
    # --- Observability -------------------------------------------------------------------
    # Prometheus metrics (the SDK's and the project's) at http://METRICS_ADDRESS/metrics, e.g.
    # "0.0.0.0:9464"; unset: none. One endpoint per process (worker, webhook).
    metrics_address: str | None = Field(None, validation_alias="METRICS_ADDRESS")
    # The worker's /healthz and /readyz on this port (unset: none).
    health_port: int | None = Field(None, ge=1, le=65535, validation_alias="HEALTH_PORT")
    # /readyz fails when the last incoming cycle finished longer ago than this many intervals.
    ready_max_cycle_age_intervals: float = Field(
        3.0, gt=0, validation_alias="READY_MAX_CYCLE_AGE_INTERVALS"
    )

    log_format: Literal["json", "console"] = Field("console", validation_alias="LOG_FORMAT")
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")

    @field_validator("mahak_page_size", mode="before")
    @classmethod
    def _no_page_size(cls, v: object) -> object:
        if isinstance(v, str) and not v.strip():  # `MAHAK_PAGE_SIZE=` (compose passes it so)
            return DEFAULT_MAHAK_PAGE_SIZE
        return None if _means_no_page_size(v) else v

    @field_validator("mahak_base_url")
    @classmethod
    def _strip_trailing_slash(cls, v: str) -> str:
        return v.rstrip("/")

    @field_validator("payload_encryption_keys")
    @classmethod
    def _parse_payload_keys(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value().strip():
            return None
        parse_payload_keys(v.get_secret_value())  # raises with the problem, never the key
        return v

    @field_validator("payload_encryption_key_id")
    @classmethod
    def _current_key_is_listed(cls, v: str | None, info: ValidationInfo) -> str | None:
        v = (v or "").strip() or None
        if "payload_encryption_keys" not in info.data:
            return v  # the key list itself is invalid: that error is reported
        keys: SecretStr | None = info.data["payload_encryption_keys"]
        if keys is None:
            if v is not None:
                raise ValueError("set, but PAYLOAD_ENCRYPTION_KEYS is not")
            return None
        listed = parse_payload_keys(keys.get_secret_value())
        if v is None:
            raise ValueError(
                f"not set; name the key to encrypt with, one of {', '.join(sorted(listed))}"
            )
        if v not in listed:
            raise ValueError(
                f"{v!r} is not in PAYLOAD_ENCRYPTION_KEYS (listed: {', '.join(sorted(listed))})"
            )
        return v

    @property
    def payload_keys(self) -> dict[str, bytes]:
        """PAYLOAD_ENCRYPTION_KEYS parsed: {key id: key}; empty when encryption is off."""
        if self.payload_encryption_keys is None:
            return {}
        return parse_payload_keys(self.payload_encryption_keys.get_secret_value())

    @property
    def codec_server_cors_origin_list(self) -> list[str]:
        return [
            o.strip().rstrip("/") for o in self.codec_server_cors_origins.split(",") if o.strip()
        ]

    @property
    def incoming_sync_interval(self) -> timedelta:
        return timedelta(seconds=self.incoming_sync_interval_seconds)

    @property
    def outgoing_sweep_interval(self) -> timedelta:
        return timedelta(seconds=self.outgoing_sweep_interval_seconds)


# --- the running dev stack ---------------------------------------------------------------

# `mahak-sync dev` writes its endpoints and credentials here (under MAHAK_SYNC_DATA_DIR).
DEV_ENV_FILENAME = "dev.env"
DEV_PID_VARIABLE = "MAHAK_SYNC_DEV_PID"
# Settings of which the environment's value, when it differs from the dev stack's, means the
# command belongs to another system: then nothing of the dev stack's file is read.
_DEV_STACK_IDENTITY = ("TEMPORAL_ADDRESS", "DATABASE_URL")


def _data_dir() -> Path:
    value = os.environ.get("MAHAK_SYNC_DATA_DIR")
    if value is None and Path(".env").is_file():
        value = dotenv_values(".env").get("MAHAK_SYNC_DATA_DIR")
    return Path(value or ".data")


def dev_stack_alive(values: dict[str, str | None]) -> bool:
    """Whether the dev stack that wrote these env-file values still runs: its process exists
    and its Temporal frontend answers (a pid reused by another process has no such port)."""
    try:
        pid = int(values.get(DEV_PID_VARIABLE) or "")
        os.kill(pid, 0)
    except PermissionError:
        pass  # a process of another user: alive
    except (ValueError, OSError):
        return False
    address = values.get("TEMPORAL_ADDRESS") or ""
    parts = urlsplit(f"//{address}")
    try:
        port = parts.port
    except ValueError:
        return False
    if not parts.hostname or port is None:
        return False
    try:
        with socket.create_connection((parts.hostname, port), timeout=0.5):
            return True
    except OSError:
        return False


def running_dev_env_file() -> Path | None:
    """The env file of the dev stack running from this folder (`MAHAK_SYNC_DATA_DIR/dev.env`),
    or None: when there is none, when the stack that wrote it is gone, or when the
    environment names another Temporal or database (then the environment wins entirely,
    never a mix of two systems)."""
    path = _data_dir() / DEV_ENV_FILENAME
    if not path.is_file():
        return None
    try:
        values = dotenv_values(path)
    except (OSError, UnicodeDecodeError):
        return None
    if not dev_stack_alive(values):
        return None
    for name in _DEV_STACK_IDENTITY:
        given = os.environ.get(name)
        if given and given != values.get(name):
            return None
    return path


def load_settings(*, dev_stack: bool = True) -> Settings:
    """Settings from the environment, `.env` and, with `dev_stack`, the running dev stack's
    env file (read after `.env`; the environment still wins over both)."""
    dev_env = running_dev_env_file() if dev_stack else None
    if dev_env is None:
        return Settings()
    return Settings(_env_file=(".env", dev_env))  # type: ignore[call-arg]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
