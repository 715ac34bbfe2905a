"""Composition root of the auth service."""

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from pytake_auth.api.clients import router as clients_router
from pytake_auth.api.routes import Registrations, jwks_router, router
from pytake_auth.api.token import TokenRules
from pytake_auth.api.token import router as token_router
from pytake_auth.api.users import router as users_router
from pytake_auth.config import Settings
from pytake_auth.janitor import SessionJanitor
from pytake_auth.keys import KeyRing, LocalVerifier
from pytake_auth.logins import Logins
from pytake_auth.passwords import Passwords
from pytake_auth.throttle import Rules, Throttle
from pytake_common.db import Database
from pytake_common.outbox import OutboxRelay
from pytake_common.web import create_service_app

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    db = Database(settings.service_database_url(), app_role=settings.db_app_role)
    keys = KeyRing(settings, db)
    app = create_service_app(
        settings,
        title="PyTake auth",
        routers=[router, token_router, users_router, clients_router, jwks_router],
        db=db,
        # auth consumes no events yet: the relay and housekeeping only.
        workers=lambda: [OutboxRelay(settings, db).run, SessionJanitor(settings, db).run],
    )
    passwords = Passwords(settings)
    throttle = Throttle(db, enabled=settings.throttle_enabled)
    rules = Rules.from_settings(settings)
    app.state.keys = keys
    app.state.passwords = passwords
    app.state.registrations = Registrations(settings.secret)
    app.state.throttle = throttle
    app.state.throttle_rules = rules
    app.state.token_rules = TokenRules.from_settings(settings)
    app.state.logins = Logins(settings, db, keys, passwords, throttle, rules)
    # auth verifies its own tokens from its key table, not over HTTP to itself.
    app.state.verifier = LocalVerifier(settings, keys)

    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(application: FastAPI) -> AsyncIterator[None]:
        async with inner(application):
            # Have a signing key before the first request; if the database is not
            # reachable yet, the first request that needs one creates it instead.
            try:
                await keys.refresh()
            except Exception as exc:
                log.warning("signing keys not loaded at start-up", extra={"error": repr(exc)})
            yield

    app.router.lifespan_context = lifespan
    return app
