"""What a simulated Mahak account looks like: credentials, ids and protocol knobs.

Defaults are the ones the project's tests and docs use (see `shared/mahak-api.md` §9).
"""

from __future__ import annotations

import secrets
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

Boundary = Literal["inclusive", "exclusive"]
PageOrder = Literal["row_version", "id"]


class SimulatorConfig(BaseModel):
    host: str = "127.0.0.1"
    # 0 = an ephemeral port chosen by the OS (always, in tests).
    port: int = Field(0, ge=0, le=65535)

    username: str = "shop"
    password: SecretStr = SecretStr("secret")
    database_id: int = 1234567
    package_no: str = "7654321"
    visitor_id: int = 10101
    sync_id: int = 88001
    user_title: str = "فروشگاه اینترنتی"
    credit_day: int = 365

    # JWT `exp - iat`; LIVE tokens live 7 days.
    token_lifetime_seconds: int = Field(604_800, ge=1)
    # HS256 key; random per process unless pinned (a restart then invalidates tokens, as a
    # key rotation on Mahak's side would).
    jwt_secret: SecretStr = Field(default_factory=lambda: SecretStr(secrets.token_hex(32)))

    # `from…Version` semantics: "inclusive" returns RowVersion >= from, "exclusive" > from.
    boundary: Boundary = "inclusive"
    # Paging modes (open questions of shared/mahak-api.md §11 1-3; defaults are §9's answer):
    # `page_order` "row_version": a list holds the lowest RowVersions, ascending; "id": it is
    # sorted by server id and cut there (a capped page holds the lowest ids, in id order).
    page_order: PageOrder = "row_version"
    # A silent cap: at most this many rows per list, whatever `pageSize` asks (or without
    # one); None: only `pageSize` caps.
    server_cap: int | None = Field(None, ge=1)
    # The answer also holds the newest row the bound excludes (RowVersion below `from`, or at
    # it on an exclusive server), in its place in the order, taking a slot of the page.
    stray_row: bool = False
    # LIVE failures carry no `EntityClientId` (clients must map them by `Index`); tests of a
    # lenient client may switch the echo on.
    echo_client_id_on_failure: bool = False

    # Products seeded by every reset (0 = an empty catalog; tests seed what they need).
    seed_products: int = Field(0, ge=0)
    # Seed for the fault injector's error-rate dice, so flaky runs can be replayed.
    fault_seed: int = 20251004
    # LIVE RowVersions are around 4.03e9, above int32: start there so int64 handling is exercised.
    row_version_start: int = 4_028_000_000
