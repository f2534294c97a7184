"""`mahak-sync mahak …`: look at the Mahak account from an operator's terminal.

- `check`: log in, show the account's ids and clock, and probe every core entity;
  `--paging` also tells whether a page size is safe against this server.
- `pull ENTITY`: stream one entity's parsed rows as JSON lines (snake_case) for debugging.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from mahak_client import (
    ENTITIES,
    MahakAuthError,
    MahakClient,
    MahakError,
    iter_pages,
    probe_paging,
)
from mahak_client.auth import jwt_claims
from mahak_client.lean import LeanWhenUncapped
from mahak_client.models import entity_name

from .config import Settings, chosen_page_size, get_settings, page_size_arg

CORE_ENTITIES = (
    "stores",
    "product_categories",
    "products",
    "product_details",
    "product_detail_store_assets",
    "visitor_products",
    "pictures",
    "photo_galleries",
    "orders",
    "order_details",
    "people",
)

EXIT_BAD_CREDENTIALS = 2
EXIT_UNREACHABLE = 3
EXIT_ENTITY_FAILED = 4
EXIT_PAGING_UNSAFE = 5
PROBE_PAGE_SIZE = 20


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("mahak", help="inspect the Mahak account (login, entities)")
    commands = group.add_subparsers(dest="mahak_command", metavar="SUBCOMMAND", required=True)

    check = commands.add_parser("check", help="log in and probe every core entity")
    check.add_argument(
        "--paging",
        type=int,
        nargs="?",
        const=PROBE_PAGE_SIZE,
        default=None,
        metavar="N",
        help="also read each entity from 0 with pageSize N (default "
        f"{PROBE_PAGE_SIZE}) and without, and say whether capped lists "
        "hold the lowest RowVersions (reads every entity whole)",
    )
    check.set_defaults(func=_check)

    pull = commands.add_parser("pull", help="stream one entity's rows as JSON lines")
    pull.add_argument(
        "entity",
        type=_entity,
        metavar="ENTITY",
        help=f"one of: {', '.join(sorted(ENTITIES))} (or as Mahak spells it, e.g. ProductDetails)",
    )
    pull.add_argument(
        "--from",
        dest="from_version",
        type=int,
        default=0,
        help="RowVersion cursor: rows newer than this (default 0: all)",
    )
    pull.add_argument(
        "--page-size",
        type=page_size_arg,
        default=None,
        help="rows per request, 0 for none (default MAHAK_PAGE_SIZE)",
    )
    pull.set_defaults(func=_pull)


def _entity(name: str) -> str:
    """`ProductDetails` and `product_details` alike; an unknown name lists the valid ones."""
    try:
        return entity_name(name)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _login_failure(exc: MahakError, settings: Settings) -> int:
    if isinstance(exc, MahakAuthError):
        return _fail(
            f"Mahak refused the credentials of {settings.mahak_username!r}: "
            f"{exc.mahak_message or exc}; fix MAHAK_USERNAME, MAHAK_PASSWORD, "
            "MAHAK_DATABASE_ID and MAHAK_PACKAGE_NO",
            EXIT_BAD_CREDENTIALS,
        )
    return _fail(
        f"cannot reach Mahak at {settings.mahak_base_url}: {exc}; try again later or fix "
        "MAHAK_BASE_URL",
        EXIT_UNREACHABLE,
    )


async def _check(args: argparse.Namespace, settings: Settings | None = None) -> int:
    settings = settings or get_settings()
    async with MahakClient.from_settings(settings) as client:
        try:
            login = await client.login()
        except MahakError as exc:
            return _login_failure(exc, settings)
        print(f"Mahak      {settings.mahak_base_url}")
        print(f"user       {settings.mahak_username} ({login.user_title or '-'})")
        print(f"database   {login.database_id if login.database_id is not None else '-'}")
        print(f"visitor    {login.visitor_id if login.visitor_id is not None else '-'}")
        print(f"server     {_server_clock(login.server_time)}")
        data = "GetAllDataV2/SaveAllDataV2" if settings.mahak_use_v2 else "GetAllData/SaveAllData"
        print(
            f"api        {settings.mahak_login_endpoint} + {data} (MAHAK_LOGIN_ENDPOINT, "
            f"MAHAK_USE_V2), app id {settings.mahak_app_id!r} (MAHAK_APP_ID)"
        )
        print(f"token      {_token_expiry(login.user_token, settings)}")
        failed = 0
        for name in CORE_ENTITIES:
            try:
                batch = (await client.get_all_data({name: 0}, page_size=1))[name]
            except MahakError as exc:
                failed += 1
                print(f"  {name:<28} FAILED  {exc}")
                continue
            sample = "has rows" if batch.rows or batch.rejected else "empty"
            print(f"  {name:<28} ok      {sample}")
        if failed:
            return _fail(
                f"{failed} of {len(CORE_ENTITIES)} entities unreachable", EXIT_ENTITY_FAILED
            )
        if getattr(args, "paging", None):
            return await _check_paging(client, args.paging, settings)
        return 0


_VERDICTS = {
    "lowest": "capped list = the lowest RowVersions, ascending",
    "not-lowest": "capped list is NOT the lowest RowVersions (e.g. ordered by id)",
    "unordered": "capped list is not in RowVersion order",
    "server-cap": "capped list shorter than asked: the server caps lists itself",
    "too-few-rows": "too few rows to tell",
}


async def _check_paging(client: MahakClient, size: int, settings: Settings) -> int:
    """Whether `MAHAK_PAGE_SIZE` may be set: the pager trusts capped lists to be the lowest
    RowVersions (mahak_client.pager), which only the server's behaviour can show."""
    if size < 1:
        return _fail("--paging N: N must be at least 1", 1)
    print(f"paging     pageSize {size} against no pageSize, from RowVersion 0:")
    probes = []
    for name in CORE_ENTITIES:
        try:
            # The read without pageSize is a whole entity: read leanly (keys alone matter).
            probe = await probe_paging(LeanWhenUncapped(client), name, size)
        except MahakError as exc:
            return _fail(f"paging probe of {name} failed: {exc}", EXIT_ENTITY_FAILED)
        probes.append(probe)
        print(f"  {name:<28} {probe.capped:>6} of {probe.whole:<8} {_VERDICTS[probe.verdict]}")
    current = (
        f"MAHAK_PAGE_SIZE={settings.mahak_page_size}"
        if settings.mahak_page_size
        else "MAHAK_PAGE_SIZE=0 (no pageSize)"
    )
    if any(p.trusted is False for p in probes):
        print(f"verdict    set MAHAK_PAGE_SIZE=0: a page size would skip rows ({current})")
        return EXIT_PAGING_UNSAFE if settings.mahak_page_size else 0
    if any(p.trusted for p in probes):
        print(
            f"verdict    capped lists held the lowest RowVersions: a page size is safe on "
            f"this evidence ({current})"
        )
    else:
        print(f"verdict    no entity had enough rows to tell ({current})")
    return 0


def _server_clock(server_time: datetime | None) -> str:
    """The server's time and how far it is from ours: a large offset means dates are read in
    another zone somewhere (shared/mahak-api.md §1.1)."""
    if server_time is None:
        return "- (login reported no server time)"
    offset = (server_time - datetime.now(UTC)).total_seconds()
    return f"{server_time.isoformat()} (offset from this machine's clock: {offset:+.0f} s)"


def _token_expiry(token: str, settings: Settings) -> str:
    """How the token's end is known: its JWT `exp` (renewed before it), else only a 401."""
    exp = (jwt_claims(token) or {}).get("exp")
    if not isinstance(exp, (int, float)):
        return "no readable expiry: renewed when Mahak answers 401"
    when = datetime.fromtimestamp(exp, UTC).isoformat(timespec="seconds")
    return (
        f"expires {when} (JWT exp), renewed "
        f"{settings.mahak_token_refresh_margin_seconds:g} s before "
        "(MAHAK_TOKEN_REFRESH_MARGIN_SECONDS) or on a 401"
    )


def _json_line(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


async def _pull(args: argparse.Namespace, settings: Settings | None = None) -> int:
    settings = settings or get_settings()
    page_size = chosen_page_size(args.page_size, settings)
    async with MahakClient.from_settings(settings) as client:
        try:
            await client.login()
        except MahakError as exc:
            return _login_failure(exc, settings)
        rows = rejected = 0
        try:
            async for batch in iter_pages(client, args.entity, args.from_version, page_size):
                for row in batch.rows:
                    print(_json_line(row.model_dump(mode="json")))
                    rows += 1
                for bad in batch.rejected:
                    # Quarantined rows go to stderr so stdout stays a clean stream of records.
                    print(_json_line({"rejected": bad.model_dump(mode="json")}), file=sys.stderr)
                    rejected += 1
                sys.stdout.flush()
        except MahakError as exc:
            return _fail(f"pull {args.entity} stopped after {rows} rows: {exc}", EXIT_UNREACHABLE)
        print(f"{args.entity}: {rows} rows, {rejected} rejected", file=sys.stderr)
        return 0
