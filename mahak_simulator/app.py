"""The simulator's ASGI application and the `Simulation` it serves."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from . import api, control, gateway
from .auth import bearer_token, issue_token, verify_token
from .config import SimulatorConfig
from .faults import FaultInjector, FaultMiddleware
from .log import get_logger
from .seed import SeedRequest, seed_base, seed_catalog
from .state import SimState
from .wire import password_digest


class Simulation:
    """One simulated Mahak account: its data, tokens, injected faults and the fake gateway.

    `config` is the live configuration (the control API may change the boundary and the
    token lifetime); a reset restores the one the simulator was started with.

    With a `state_file` the data persists: loaded at start when the file exists (instead of
    seeding), written by `save()` (the server saves on change and at shutdown). Without one
    (tests, `mahak-sync simulator`) everything lives in memory.
    """

    def __init__(self, config: SimulatorConfig, *, state_file: Path | None = None) -> None:
        self.base_config = config
        self.config = config.model_copy()
        self.state = SimState(config)
        self.faults = FaultInjector(config.fault_seed)
        self.gateway = gateway.RefundLedger()
        self.state_file = state_file
        self._saved_changes = -1
        # OrderClientId -> wall-clock time (epoch seconds) SaveAllData first stored it: what a
        # latency benchmark compares with the payment callback's arrival. Not persisted.
        self.received_at: dict[int, float] = {}
        if state_file is not None and state_file.exists():
            self.reconfigure(self.base_config.model_copy())
            self.state.load(state_file)
            self._saved_changes = self.state.changes
            get_logger("mahak_simulator").info(
                "simulator state loaded",
                file=str(state_file),
                row_version=self.state.row_version,
            )
        else:
            self.reset()

    # --- persistence -------------------------------------------------------------------------

    def save(self) -> None:
        """Write the state file (when persistent) if anything changed since the last save."""
        if self.state_file is None:
            return
        with self.state.lock:
            changes = self.state.changes
            if changes == self._saved_changes:
                return
            self.state.save(self.state_file)
            self._saved_changes = changes

    def reconfigure(self, config: SimulatorConfig) -> None:
        """Switch to `config` (the control API's `/config`); the state follows its modes."""
        with self.state.lock:
            self.config = config
            self.state.hold_writes_for = config.late_commit_lag

    def reset(self) -> None:
        with self.state.lock:
            self.reconfigure(self.base_config.model_copy())
            self.state.clear()
            self.faults.clear()
            self.gateway.clear()
            self.received_at.clear()
            seed_base(self.state, self.config)
            if self.config.seed_products:
                seed_catalog(
                    self.state,
                    self.config,
                    SeedRequest(
                        products=self.config.seed_products, stores=2, categories=3, people=3
                    ),
                )

    # --- credentials -----------------------------------------------------------------------

    @property
    def _password_md5(self) -> str:
        return hashlib.md5(self.config.password.get_secret_value().encode("utf-8")).hexdigest()

    def check_password(self, given: str) -> bool:
        """Clients send the MD5 of the password, a few the password itself (§2 ASSUMPTION)."""
        return hmac.compare_digest(password_digest(given), self._password_md5)

    def issue_token(self, client_ip: str) -> tuple[str, dict[str, Any]]:
        cfg = self.config
        token, claims = issue_token(
            cfg.jwt_secret.get_secret_value(),
            username=cfg.username,
            password_md5_hex=self._password_md5,
            database_id=cfg.database_id,
            visitor_id=cfg.visitor_id,
            sync_id=cfg.sync_id,
            package_no=cfg.package_no,
            credit_day=cfg.credit_day,
            client_ip=client_ip,
            lifetime_seconds=cfg.token_lifetime_seconds,
        )
        with self.state.lock:
            self.state.issued_tokens.add(token)
        return token, claims

    def authorize(self, authorization: str | None) -> dict[str, Any] | None:
        token = bearer_token(authorization, lenient=self.config.token_forms == "lenient")
        if token is None or token in self.state.revoked_tokens:
            return None
        return verify_token(self.config.jwt_secret.get_secret_value(), token)

    def expire_tokens(self) -> int:
        """Every token issued so far stops working now (expiry in the middle of a run)."""
        with self.state.lock:
            expired = self.state.issued_tokens - self.state.revoked_tokens
            self.state.revoked_tokens |= expired
            return len(expired)


def create_app(config: SimulatorConfig | None = None, *, sim: Simulation | None = None) -> Any:
    """The ASGI app: Sync API, control API and fake gateway, behind the fault injector."""
    sim = sim or Simulation(config or SimulatorConfig())
    app = Starlette(routes=[*api.routes(), *control.routes(), *gateway.routes()])
    app.state.sim = sim
    return FaultMiddleware(app, sim.state, sim.faults, endpoint_of=_endpoint_of)


def _endpoint_of(path: str) -> tuple[str, str, bool] | None:
    sync = api.canonical_sync_path(path)
    if sync is not None:
        return sync, sync.rsplit("/", 1)[-1], True
    if path.startswith(gateway.PREFIX):
        return path, path.lstrip("/"), False
    return None
