"""Composition root of the API gateway: the only public entry of the platform.

Routing table in :mod:`pytake_api_gateway.routing`, the ASGI entry in
:mod:`pytake_api_gateway.edge`, forwarding in :mod:`pytake_api_gateway.proxy`,
tokens and revocation in :mod:`pytake_api_gateway.tokens`, rate limits in
:mod:`pytake_api_gateway.ratelimit`, merged OpenAPI in :mod:`pytake_api_gateway.openapi`,
what only the platform may ask (``/metrics``, ``/readyz``) in
:mod:`pytake_api_gateway.internal`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from pytake_api_gateway.api import gateway_router
from pytake_api_gateway.config import Settings
from pytake_api_gateway.edge import EdgeDispatcher, EdgeObservability
from pytake_api_gateway.headers import RequestIdMiddleware
from pytake_api_gateway.internal import InternalOnly, internal_listener
from pytake_api_gateway.openapi import OpenAPIAggregator
from pytake_api_gateway.proxy import Proxy, UpstreamClient
from pytake_api_gateway.ratelimit import EdgeRateLimits
from pytake_api_gateway.routing import RoutingTable
from pytake_api_gateway.tokens import TokenGate
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

    # Revocations and organizations are read from app.state on every request:
    # pytake_common's replicas (revocations, organizations) are set there.
    gate = TokenGate(verifier, settings.token_cache_size, app.state)
    limits = EdgeRateLimits(settings, app.state)
    app.include_router(gateway_router(settings, table, client, aggregator))
    routes = app.router.routes
    own = routes.pop()  # the router just included: /readyz, /openapi.json, /docs
    # The gateway's own endpoints shadow pytake_common's /readyz; FastAPI's
    # default /openapi.json and /docs are dropped.
    routes[:] = [own, *(r for r in routes if getattr(r, "path", None) not in REPLACED_PATHS)]
    mark_changed = getattr(app.router, "_mark_routes_changed", None)
    if callable(mark_changed):
        mark_changed()

    # Both sides get the same request id rule, span, metrics and CORS: the
    # proxied paths in one lean layer (edge.py), the gateway's own endpoints
    # through FastAPI (added last = outermost: the request id is settled
    # before pytake_common's ObservabilityMiddleware logs it).
    proxy = Proxy(settings, table, client, gate, limits)
    proxied: ASGIApp = EdgeObservability(
        proxy,
        service=settings.service_name,
        record_spans=settings.otel_exporter != "none",
    )
    app.add_middleware(RequestIdMiddleware)
    if settings.cors_allowed_origins:
        proxied = CORSMiddleware(proxied, **_cors_options(settings))
        app.add_middleware(CORSMiddleware, **_cors_options(settings))

    # Proxied paths bypass FastAPI entirely (see edge.py): Starlette builds its
    # middleware stack lazily through this method, so the dispatcher goes around it.
    build_stack = app.build_middleware_stack

    def build_edge_stack() -> ASGIApp:
        return InternalOnly(EdgeDispatcher(table, proxied, build_stack()), settings.internal_port)

    app.build_middleware_stack = build_edge_stack  # type: ignore[method-assign]

    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        await client.open()
        try:
            async with (
                inner(application) as state,
                internal_listener(app, settings.host, settings.internal_port),
            ):
                yield state
        finally:
            await client.close()

    app.router.lifespan_context = lifespan
    app.state.upstreams = client
    app.state.proxy = proxy
    app.state.routing = table
    app.state.token_gate = gate
    app.state.rate_limits = limits
    return app


def _cors_options(settings: Settings) -> dict[str, Any]:
    return {
        "allow_origins": settings.cors_allowed_origins,
        "allow_methods": ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        "allow_headers": ["Authorization", "Content-Type", "Idempotency-Key", "X-Request-Id"],
        "expose_headers": [
            "X-Request-Id",
            "Retry-After",
            "Location",
            "RateLimit-Limit",
            "RateLimit-Remaining",
            "RateLimit-Reset",
            "RateLimit-Policy",
        ],
        "allow_credentials": False,
        "max_age": 600,
    }
