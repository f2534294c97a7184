"""`mahak-sync dead-letters`: the Mahak rows the incoming sync could not store.

    mahak-sync dead-letters list [--entity E] [--limit N] [--json]
    mahak-sync dead-letters show ID [--json]
    mahak-sync dead-letters retry ID | --all [--entity E]
    mahak-sync dead-letters drop ID

`retry` applies the stored row again through the same path as a sync page
(`shopdb.catalog.apply_page`: parsed by the entity's model, newer-only upsert, the entity's
cursor never moved back). A row that is stored now (or that the shop already holds in this or
a newer version) resolves its letter; a row refused again stays open with the new reason and
its `seen_count` raised. Fixing the data in Mahak also works: the next sync brings a newer
version and resolves the letter itself. `drop` resolves a letter without storing its row.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pydantic import ValidationError

from mahak_client.models import ENTITIES, EntityBatch, RejectedRow, entity_name
from shopdb import dead_letters
from shopdb.models import DeadLetter
from shopdb.pool import Executor, open_database

from .cli_errors import CommandFailed
from .cli_output import add_json_flag, echo, fields, print_json, table, when
from .config import get_settings

RETRIED = "retried by operator: stored"
ALREADY_STORED = "retried by operator: the shop holds this version or a newer one"
DROPPED = "dropped by operator"


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser(
        "dead-letters", help="Mahak rows the incoming sync could not store: list, retry, drop"
    )
    sub = group.add_subparsers(dest="dead_letters_command", metavar="ACTION", required=True)

    p = sub.add_parser("list", help="open dead letters, most recently seen first")
    p.add_argument("--entity", type=_entity, help="only this entity (e.g. products)")
    p.add_argument("--limit", type=int, default=100, help="at most N (default 100)")
    add_json_flag(p)
    p.set_defaults(func=_list)

    p = sub.add_parser("show", help="one dead letter with the row Mahak sent")
    p.add_argument("id", type=int)
    add_json_flag(p)
    p.set_defaults(func=_show)

    p = sub.add_parser("retry", help="store a dead letter's row again; resolved when it is")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("id", type=int, nargs="?")
    which.add_argument("--all", action="store_true", help="every open dead letter")
    p.add_argument("--entity", type=_entity, help="with --all: only this entity")
    p.set_defaults(func=_retry)

    p = sub.add_parser("drop", help="resolve a dead letter without storing its row")
    p.add_argument("id", type=int)
    p.set_defaults(func=_drop)


def _entity(name: str) -> str:
    try:
        return entity_name(name)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _label(letter: DeadLetter) -> str:
    parts = [letter.entity]
    if letter.mahak_id is not None:
        parts.append(f"id {letter.mahak_id}")
    if letter.row_version is not None:
        parts.append(f"RowVersion {letter.row_version}")
    return f"dead letter {letter.id} ({', '.join(parts)})"


async def _list(args: argparse.Namespace) -> int:
    async with open_database(get_settings(), migrate=False) as pool:
        letters = await dead_letters.list_open(pool, entity=args.entity, limit=args.limit)
    if args.json:
        print_json([letter.model_dump(mode="json") for letter in letters])
        return 0
    if not letters:
        print("no open dead letters" + (f" for {args.entity}" if args.entity else ""))
        return 0
    echo(
        table(
            ["id", "entity", "Mahak id", "RowVersion", "seen", "last seen", "reason"],
            [
                [d.id, d.entity, d.mahak_id, d.row_version, d.seen_count, d.last_seen, d.reason]
                for d in letters
            ],
        )
    )
    return 0


async def _require(db: Executor, letter_id: int) -> DeadLetter:
    letter = await dead_letters.get(db, letter_id)
    if letter is None:
        raise CommandFailed(f"no such dead letter {letter_id}")
    return letter


async def _show(args: argparse.Namespace) -> int:
    async with open_database(get_settings(), migrate=False) as pool:
        letter = await _require(pool, args.id)
    if args.json:
        print_json(letter.model_dump(mode="json"))
        return 0
    echo(
        fields(
            [
                ("dead letter", letter.id),
                ("entity", letter.entity),
                ("Mahak id", letter.mahak_id),
                ("RowVersion", letter.row_version),
                ("reason", letter.reason),
                ("first seen", when(letter.first_seen)),
                ("last seen", when(letter.last_seen)),
                ("seen", f"{letter.seen_count} time(s)"),
                ("last run", letter.last_run_id),
                (
                    "state",
                    f"resolved {when(letter.resolved_at)}: {letter.resolution}"
                    if letter.resolved and letter.resolution
                    else ("resolved" if letter.resolved else "open"),
                ),
            ]
        )
    )
    print("payload:")
    echo(
        "  " + line
        for line in json.dumps(letter.payload, indent=2, ensure_ascii=False).splitlines()
    )
    return 0


async def _retry(args: argparse.Namespace) -> int:
    settings = get_settings()
    async with open_database(settings, migrate=False) as pool:
        if not args.all:
            letter = await _require(pool, args.id)
            if letter.resolved:
                raise CommandFailed(
                    f"{_label(letter)} is already resolved ({letter.resolution or 'no note'})"
                )
            stored, message = await retry_letter(pool, letter, settings.shop_price_level)
            print(message)
            return 0 if stored else 1
        ids = await dead_letters.open_ids(pool, entity=args.entity)
        if not ids:
            print("no open dead letters" + (f" for {args.entity}" if args.entity else ""))
            return 0
        refused = 0
        for letter_id in ids:
            letter = await dead_letters.get(pool, letter_id)
            if letter is None or letter.resolved:  # resolved meanwhile (by a sync, or above)
                continue
            stored, message = await retry_letter(pool, letter, settings.shop_price_level)
            refused += not stored
            print(message)
    print(f"retried {len(ids)}: {len(ids) - refused} stored, {refused} refused again")
    return 1 if refused else 0


async def retry_letter(db: Any, letter: DeadLetter, price_level: int) -> tuple[bool, str]:
    """Apply the letter's row again as a one-row sync page; (stored, what happened)."""
    from shopdb.catalog import apply_page, get_cursor
    from shopdb.mirror import mirror

    spec = ENTITIES.get(letter.entity)
    if spec is None:
        return False, f"{_label(letter)}: entity {letter.entity!r} cannot be retried"
    try:
        row = spec.model.model_validate(letter.payload)
        batch = EntityBatch(entity=letter.entity, rows=[row])
    except ValidationError as exc:
        reject = RejectedRow(
            entity=letter.entity,
            raw=letter.payload,
            error=" ".join(str(exc).split()),
            mahak_id=letter.mahak_id,
            row_version=letter.row_version,
        )
        batch = EntityBatch(entity=letter.entity, rejected=[reject])
    # The cursor stays where it is (apply_page never moves it back).
    counts = await apply_page(
        db,
        batch,
        new_cursor=await get_cursor(db, letter.entity),
        run_id=f"cli-retry-{letter.id}",
        price_level=price_level,
    )
    after = await dead_letters.get(db, letter.id)
    if counts.dead_lettered:
        reason = after.reason if after is not None else "refused"
        return False, f"{_label(letter)}: refused again ({reason}); still open"
    if after is not None and after.resolved:  # a newer version was stored: superseded
        return True, f"{_label(letter)}: already resolved ({after.resolution})"
    applied = counts.inserted + counts.updated + counts.deleted
    version = (
        await dead_letters.stored_version(db, mirror(letter.entity).table, letter.mahak_id)
        if letter.mahak_id is not None
        else None
    )
    resolution = RETRIED if applied else ALREADY_STORED
    await dead_letters.resolve(db, letter.id, resolution)
    what = "stored" if applied else "the shop already holds this version or a newer one"
    held = f" (the shop now holds RowVersion {version})" if version is not None else ""
    return True, f"{_label(letter)}: {what}{held}; resolved"


async def _drop(args: argparse.Namespace) -> int:
    async with open_database(get_settings(), migrate=False) as pool:
        letter = await _require(pool, args.id)
        if not await dead_letters.resolve(pool, letter.id, DROPPED):
            raise CommandFailed(
                f"{_label(letter)} is already resolved ({letter.resolution or 'no note'})"
            )
    print(f"{_label(letter)}: dropped; resolved without storing its row")
    return 0
