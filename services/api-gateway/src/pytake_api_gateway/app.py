"""Composition root of the API gateway: the only public entry of the platform.

Routing table in :mod:`pytake_api_gateway.routing`, forwarding in
:mod:`pytake_api_gateway.proxy`, merged OpenAPI in :mod:`pytake_api_gateway.openapi`.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from pytake_api_gateway.api import gateway_router
from pytake_api_gateway.config import Settings
from pytake_api_gateway.openapi import OpenAPIAggregator
from pytake_api_gateway.proxy import ProxyRoute, RequestIdMiddleware, TokenGate, UpstreamClient
from pytake_api_gateway.routing import RoutingTable
from pytake_common.security import JWKSVerifier
from pytake_common.web import create_service_app

#: FastAPI's and pytake_common's defaults the gateway replaces with its own.
REPLACED_PATHS = frozenset({"/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    table = RoutingTable.from_settings(settings)
    client = UpstreamClient(settings)
    aggregator = OpenAPIAggregator(settings, table, client)

    app = create_service_app(
        settings, title="PyTake API gateway", routers=[], db=None, check_broker=False
    )

    def verifier() -> JWKSVerifier:
        current: JWKSVerifier = app.state.verifier
        return current

    gate = TokenGate(verifier, settings.token_cache_size)
    app.include_router(gateway_router(settings, table, client, aggregator))
    routes = app.router.routes
    own = routes.pop()  # the router just included: /readyz, /openapi.json, /docs
    # Order decides: the proxy first (the hot path is matched by one dictionary
    # lookup), then the gateway's own endpoints, which shadow pytake_common's
    # /readyz; FastAPI's default /openapi.json and /docs are dropped.
    routes[:] = [
        ProxyRoute(settings, table, client, gate),
        own,
        *(r for r in routes if getattr(r, "path", None) not in REPLACED_PATHS),
    ]
    mark_changed = getattr(app.router, "_mark_routes_changed", None)
    if callable(mark_changed):
        mark_changed()

    # Added last = outermost: the request id is settled before ObservabilityMiddleware logs it.
    app.add_middleware(RequestIdMiddleware)
    if settings.cors_allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allowed_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-Id"],
            expose_headers=["X-Request-Id", "Retry-After", "Location"],
            allow_credentials=False,
            max_age=600,
        )

    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        await client.open()
        try:
            async with inner(application) as state:
                if settings.gc_freeze:
                    gc.collect()
                    gc.freeze()
                yield state
        finally:
            await client.close()

    app.router.lifespan_context = lifespan
    app.state.upstreams = client
    app.state.routing = table
    app.state.token_gate = gate
    return app
