"""What a simulated Mahak account looks like: credentials, ids and protocol knobs.

Defaults are the ones the project's tests and docs use (see `shared/mahak-api.md` §9).
"""

from __future__ import annotations

import secrets
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

Boundary = Literal["inclusive", "exclusive"]
PageOrder = Literal["row_version", "id"]
# One answer per open question of shared/mahak-api.md §11 (first value = the default); see
# README.md "Simulator modes" for what each one does and which test covers it.
DatedOffset = Literal["drop", "honour", "refuse"]  # §11.4
EditAfterImport = Literal["refuse", "allow"]  # §11.5
LineFields = Literal["lenient", "strict"]  # §11.6
TaxZeroMeans = Literal["zero", "default"]  # §11.6
PersonWithoutGroup = Literal["refuse", "default_group"]  # §11.7
LoginFailure = Literal["result_false", "http_401"]  # §11.8
TokenForms = Literal["bearer_only", "lenient"]  # §11.8
DisputeAnswer = Literal["detailed", "bare_list", "envelope_only", "refused"]  # §11.9
AnswerCasing = Literal["pascal", "camel"]  # §1: LIVE answers PascalCase, Swagger shows camelCase


class ProtocolModes(BaseModel):
    """The protocol knobs a test may change on a running simulator (`SimControl.configure`)."""

    # JWT `exp - iat`; LIVE tokens live 7 days.
    token_lifetime_seconds: int = Field(604_800, ge=1)
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

    # --- open questions of §11 (defaults: §9's answers, i.e. what the simulator always did) ---
    # §11.3 late commits: a row written while this is > 0 keeps its (already assigned, lower)
    # RowVersion but stays invisible to the next N GetAllData requests, as an uncommitted
    # transaction would; a row written after it (with the lag back at 0) overtakes it. 0: off.
    late_commit_lag: int = Field(0, ge=0)
    # §11.4 a request date with an offset (`Z`, `+00:00`, `+03:30`): "drop" keeps the wall
    # clock sent, "honour" converts it to Tehran local time, "refuse" fails the record on it.
    dated_offset: DatedOffset = "drop"
    # §11.5 an order (its lines, its receipt) edited or deleted after Mahak desktop imported
    # it: "refuse" fails it on `OrderId` ("already registered"), "allow" takes it.
    edit_after_import: EditAfterImport = "refuse"
    # §11.6 "strict": a line without `storeId`, `itemType`, `taxPercent` or `chargePercent`
    # fails on that property; "lenient" defaults them (store of the visitor, item type 1).
    line_fields: LineFields = "lenient"
    # §11.6 a line's `taxPercent`/`chargePercent` of 0: "zero" stores 0 %, "default" stores
    # the setting (14001 tax, 14000 charge).
    tax_zero_means: TaxZeroMeans = "zero"
    # §11.7 a new person without `personGroupId` (or 0): "refuse" fails it on PersonGroupId,
    # "default_group" files it under the first live person group.
    person_without_group: PersonWithoutGroup = "refuse"
    # §11.8 bad credentials: "result_false" is 200 `Result:false`, "http_401" the 401 body.
    login_failure: LoginFailure = "result_false"
    # §11.8 `Authorization` forms: "bearer_only" takes `Bearer <t>` (any case); "lenient"
    # also `bearer : <t>` (BZ) and a bare `<t>` (MO, NG).
    token_forms: TokenForms = "bearer_only"
    # §11.9 SolveDispute/SolveOrderDispute answers: "detailed" (see disputes.py), "bare_list"
    # (a list right under `Data`, other key names), "envelope_only" (`Data: null`),
    # "refused" (`Result:false`, nothing done).
    dispute_answer: DisputeAnswer = "detailed"
    # Key casing of every Sync answer: "pascal" (LIVE) or "camel" (as Swagger shows).
    answer_casing: AnswerCasing = "pascal"


class SimulatorConfig(ProtocolModes):
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

    # HS256 key; random per process unless pinned (a restart then invalidates tokens, as a
    # key rotation on Mahak's side would).
    jwt_secret: SecretStr = Field(default_factory=lambda: SecretStr(secrets.token_hex(32)))

    # Products seeded by every reset (0 = an empty catalog; tests seed what they need).
    seed_products: int = Field(0, ge=0)
    # Seed for the fault injector's error-rate dice, so flaky runs can be replayed.
    fault_seed: int = 20251004
    # LIVE RowVersions are around 4.03e9, above int32: start there so int64 handling is exercised.
    row_version_start: int = 4_028_000_000
