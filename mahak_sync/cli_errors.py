"""What `mahak-sync` says when a command cannot do its work: one line on stderr, naming the
problem and the fix, and an exit code (`mahak_sync.cli.main` applies this table to every
command; `--debug` prints the traceback as well).

Exit codes (documented in the README, "Command line"):

- 0: done.
- 1: the command ran but was refused or found a problem (`CommandFailed`): no such order, an
  unpaid order, the incoming sync not running, an update refused, pending migrations, ...
- 2: usage (argparse), and `mahak check`'s own codes 2-5 (see `cli_mahak`).
- 69 (EX_UNAVAILABLE): a part does not answer: PostgreSQL, Temporal, Mahak. Retry later.
- 70 (EX_SOFTWARE): an unexpected error; rerun with `--debug` for the traceback.
- 78 (EX_CONFIG): bad configuration that waiting cannot fix: an invalid setting or
  `DATABASE_URL`, credentials refused (PostgreSQL, Mahak, Temporal), a database or Temporal
  namespace that does not exist, a database not migrated.
- 130: interrupted (Ctrl-C).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

from .config import DEFAULT_MAHAK_BASE_URL, Settings
from .logging import _mask
from .startup import describe_error

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69
EXIT_SOFTWARE = 70
EXIT_CONFIG = 78
EXIT_INTERRUPTED = 130

DEFAULT_TEMPORAL_ADDRESS = "localhost:7233"


class CommandFailed(Exception):
    """A command's expected refusal: `message` is the whole line shown, `code` the exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def one_line(text: str) -> str:
    """Whitespace collapsed, secrets masked, no dangling punctuation."""
    return _mask(" ".join(str(text).split())).rstrip(" :;,-")


def _short(exc: BaseException) -> str:
    """`Type: message`, one line, bounded, passwords masked."""
    return _mask(describe_error(exc))


def _raised_in(exc: BaseException, package: str) -> bool:
    """Whether any frame of the traceback (or of a cause) is in `package`."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        tb: TracebackType | None = current.__traceback__
        while tb is not None:
            name = tb.tb_frame.f_globals.get("__name__", "")
            if name == package or name.startswith(package + "."):
                return True
            tb = tb.tb_next
        current = current.__cause__ or current.__context__
    return False


def database_target(settings: Settings | None) -> str:
    """Where `DATABASE_URL` points, without its password: `host:port/database`."""
    if settings is None or settings.database_url is None:
        data_dir = settings.data_dir if settings else ".data"
        return f"the embedded server under {data_dir}/postgres (DATABASE_URL unset)"
    url = settings.database_url.get_secret_value()
    try:
        parts = urlsplit(url)
        database = parts.path.lstrip("/") or "?"
        host = parts.hostname or parse_qs(parts.query).get("host", ["localhost"])[0]
        if host.startswith("/"):
            return f"database {database} via socket {host} (DATABASE_URL)"
        return f"{host}:{parts.port or 5432}/{database} (DATABASE_URL)"
    except ValueError:
        return "DATABASE_URL"


def temporal_target(settings: Settings | None) -> str:
    address = (settings.temporal_address if settings else None) or DEFAULT_TEMPORAL_ADDRESS
    return address


def _mahak_target(settings: Settings | None) -> str:
    return settings.mahak_base_url if settings else DEFAULT_MAHAK_BASE_URL


# --- the table ---------------------------------------------------------------------------

Explain = Callable[[BaseException, Settings | None], str]


@dataclass(frozen=True)
class Rule:
    applies: Callable[[BaseException], bool]
    code: int
    message: Explain


def _is(*types: type[BaseException]) -> Callable[[BaseException], bool]:
    return lambda exc: isinstance(exc, types)


def _rules() -> list[Rule]:
    # Imported here: the table names types from every layer; the CLI loads it only on error.
    import asyncpg
    import httpx
    from pydantic import ValidationError
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.service import RPCError, RPCStatusCode

    from mahak_client.errors import MahakAuthError, MahakError, MahakTransientError
    from shopdb.migrate import MigrationError
    from shopdb.pool import NoDatabaseConfigured

    def settings_error(exc: BaseException, _: Settings | None) -> str:
        assert isinstance(exc, ValidationError)
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error.get("loc", ())) or "?"
            problems.append(f"{name.upper()}: {error.get('msg', 'invalid')}")
        return f"bad configuration: {'; '.join(problems)}; fix the environment or .env"

    def rpc(*statuses: RPCStatusCode, text: str = "") -> Callable[[BaseException], bool]:
        return lambda exc: (
            isinstance(exc, RPCError)
            and exc.status in statuses
            and text.lower() in (exc.message or "").lower()
        )

    def pg_unreachable(exc: BaseException) -> bool:
        return isinstance(
            exc,
            asyncpg.PostgresConnectionError
            | asyncpg.CannotConnectNowError
            | asyncpg.ConnectionDoesNotExistError,
        ) or (isinstance(exc, OSError) and _raised_in(exc, "asyncpg"))

    def temporal_unreachable(exc: BaseException) -> bool:
        return isinstance(exc, RuntimeError) and str(exc).startswith("Failed client connect")

    def temporal_bad_address(exc: BaseException) -> bool:
        return isinstance(exc, ValueError) and _raised_in(exc, "temporalio")

    def temporal_fix(settings: Settings | None) -> str:
        return (
            "start it (`mahak-sync dev`, or `temporal server start-dev`) "
            "or set TEMPORAL_ADDRESS to where it runs"
        )

    return [
        Rule(
            lambda exc: isinstance(exc, ValidationError) and exc.title == "Settings",
            EXIT_CONFIG,
            settings_error,
        ),
        # --- PostgreSQL ---
        Rule(_is(NoDatabaseConfigured), EXIT_CONFIG, lambda exc, s: str(exc)),
        Rule(
            _is(asyncpg.ClientConfigurationError),
            EXIT_CONFIG,
            lambda exc, s: (
                f"DATABASE_URL is not a valid PostgreSQL URL ({one_line(str(exc))}); "
                "set it as postgresql://USER:PASSWORD@HOST:5432/DATABASE"
            ),
        ),
        Rule(
            _is(asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError),
            EXIT_CONFIG,
            lambda exc, s: (
                f"PostgreSQL at {database_target(s)} refused the credentials "
                f"({one_line(str(exc))}); fix the user and password in DATABASE_URL"
            ),
        ),
        Rule(
            _is(asyncpg.InvalidCatalogNameError),
            EXIT_CONFIG,
            lambda exc, s: (
                f"PostgreSQL at {database_target(s)}: {one_line(str(exc))}; "
                "create the database (createdb NAME) or fix DATABASE_URL"
            ),
        ),
        Rule(
            _is(asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError),
            EXIT_CONFIG,
            lambda exc, s: (
                f"the shop database at {database_target(s)} is not migrated "
                f"({one_line(str(exc))}); run `mahak-sync db migrate`"
            ),
        ),
        Rule(
            _is(MigrationError),
            EXIT_CONFIG,
            lambda exc, s: (
                f"migrating the shop database failed: {one_line(str(exc))}; "
                "see `mahak-sync db status`"
            ),
        ),
        Rule(
            pg_unreachable,
            EXIT_UNAVAILABLE,
            lambda exc, s: (
                f"cannot reach PostgreSQL at {database_target(s)} ({_short(exc)}); "
                "start it or fix DATABASE_URL"
            ),
        ),
        # --- Temporal ---
        Rule(
            temporal_unreachable,
            EXIT_UNAVAILABLE,
            lambda exc, s: (
                f"cannot reach Temporal at {temporal_target(s)} (TEMPORAL_ADDRESS); "
                + temporal_fix(s)
            ),
        ),
        Rule(
            temporal_bad_address,
            EXIT_CONFIG,
            lambda exc, s: (
                f"TEMPORAL_ADDRESS {temporal_target(s)!r} is not a valid "
                f"HOST:PORT ({one_line(str(exc))}); set it like localhost:7233"
            ),
        ),
        Rule(
            rpc(RPCStatusCode.UNAVAILABLE),
            EXIT_UNAVAILABLE,
            lambda exc, s: (
                f"Temporal at {temporal_target(s)} (TEMPORAL_ADDRESS) does not "
                f"answer ({_short(exc)}); " + temporal_fix(s)
            ),
        ),
        Rule(
            rpc(RPCStatusCode.NOT_FOUND, text="namespace"),
            EXIT_CONFIG,
            lambda exc, s: (
                f"Temporal at {temporal_target(s)} has no namespace "
                f"{s.temporal_namespace if s else 'default'!r}; set TEMPORAL_NAMESPACE or create it "
                "(temporal operator namespace create)"
            ),
        ),
        Rule(
            rpc(RPCStatusCode.UNAUTHENTICATED, RPCStatusCode.PERMISSION_DENIED),
            EXIT_CONFIG,
            lambda exc, s: (
                f"Temporal at {temporal_target(s)} refused this client "
                f"({_short(exc)}); check the namespace's credentials and permissions"
            ),
        ),
        Rule(
            rpc(RPCStatusCode.DEADLINE_EXCEEDED),
            EXIT_UNAVAILABLE,
            lambda exc, s: (
                "Temporal did not answer in time; is the worker running "
                f"(python worker.py, task queue {s.temporal_task_queue if s else 'mahak-sync'!r})?"
            ),
        ),
        Rule(
            _is(WorkflowUpdateFailedError),
            EXIT_FAILED,
            lambda exc, s: (
                "refused: " + one_line(str(getattr(exc, "cause", None) or exc) or "no reason given")
            ),
        ),
        Rule(
            _is(RPCError),
            EXIT_FAILED,
            lambda exc, s: f"Temporal refused the request: {_short(exc)}",
        ),
        # --- Mahak ---
        Rule(
            _is(MahakAuthError),
            EXIT_CONFIG,
            lambda exc, s: (
                f"Mahak at {_mahak_target(s)} refused the credentials of "
                f"{s.mahak_username if s else ''!r} ({one_line(str(exc))}); fix MAHAK_USERNAME, "
                "MAHAK_PASSWORD, MAHAK_DATABASE_ID and MAHAK_PACKAGE_NO"
            ),
        ),
        Rule(
            lambda exc: isinstance(exc, MahakTransientError | httpx.TransportError),
            EXIT_UNAVAILABLE,
            lambda exc, s: (
                f"cannot reach Mahak at {_mahak_target(s)} ({_short(exc)}); "
                "try again later or fix MAHAK_BASE_URL"
            ),
        ),
        Rule(
            _is(MahakError),
            EXIT_FAILED,
            lambda exc, s: f"Mahak refused the request: {one_line(str(exc))}",
        ),
        Rule(
            _is(KeyboardInterrupt),
            EXIT_INTERRUPTED,
            lambda exc, s: "interrupted",
        ),
    ]


def explain(exc: BaseException, settings: Settings | None) -> tuple[int, str]:
    """The exit code and the one line to print for `exc`."""
    if isinstance(exc, CommandFailed):
        return exc.code, one_line(exc.message)
    for rule in _rules():
        if rule.applies(exc):
            return rule.code, one_line(rule.message(exc, settings))
    return EXIT_SOFTWARE, one_line(
        f"unexpected error: {_short(exc)}; rerun with --debug for the traceback"
    )
