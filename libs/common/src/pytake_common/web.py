"""The FastAPI application factory every service uses.

Wires problem+json handlers, request id / tracing / metrics middleware,
``/healthz``, ``/readyz`` and ``/metrics``, and runs the service's background
workers (outbox relay, consumers) for the app's lifetime.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.routing import APIRoute
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pytake_common.context import organization_id_var, request_id_var
from pytake_common.db import Database
from pytake_common.errors import install_problem_handlers, problem
from pytake_common.kafka import broker_reachable
from pytake_common.logging import configure_logging
from pytake_common.metrics import BROKER_UP, HTTP_LATENCY, HTTP_REQUESTS
from pytake_common.pgtenant import read_timeout_var
from pytake_common.replica import BroadcastReplica, ReplicaFeed
from pytake_common.retention import Retention, RetentionWorker
from pytake_common.revocation import RevocationList
from pytake_common.security import JWKSVerifier
from pytake_common.settings import ServiceSettings
from pytake_common.tenancy import OrganizationDirectory
from pytake_common.tracing import configure_tracing, tracer, unrecorded_span

log = logging.getLogger(__name__)

Worker = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
UNTRACKED = frozenset({"/metrics", "/healthz", "/readyz"})
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
#: (method, route, status) metric children kept per app; past this, looked up each time
MAX_METRIC_CHILDREN = 1024
EMPTY_CONTEXT = otel_context.Context()


class ObservabilityMiddleware:
    """Request id, W3C trace context, Prometheus RED metrics; pure ASGI (no body buffering).

    Per request it reads only the headers it needs (``x-request-id`` and the fields
    of the installed trace propagators) and reuses each route's metric children.
    GET and HEAD requests are API reads: their transactions are bound with
    ``read_timeout_ms`` as ``statement_timeout`` (:func:`pytake_common.pgtenant.api_read_timeout`).
    """

    def __init__(
        self,
        app: ASGIApp,
        service: str,
        record_spans: bool = True,
        read_timeout_ms: int | None = None,
    ) -> None:
        self.app = app
        self.service = service
        self.read_timeout_ms = read_timeout_ms or None
        #: Without a span exporter (``PYTAKE_OTEL_EXPORTER=none``) a recorded span goes
        #: nowhere: only its context is made (:func:`pytake_common.tracing.unrecorded_span`).
        self.record_spans = record_spans
        self._fields: frozenset[bytes] | None = None
        self._metrics: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def trace_fields(self) -> frozenset[bytes]:
        """The header names the propagators read (``traceparent``, ``tracestate``,
        ``baggage`` by default), as ASGI spells them."""
        if self._fields is None:
            names = propagate.get_global_textmap().fields
            self._fields = frozenset(name.lower().encode("latin-1") for name in names)
        return self._fields

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        key = (method, path, status)
        children = self._metrics.get(key)
        if children is None:
            children = (
                HTTP_REQUESTS.labels(self.service, method, path, str(status)),
                HTTP_LATENCY.labels(self.service, method, path),
            )
            if len(self._metrics) < MAX_METRIC_CHILDREN:
                self._metrics[key] = children
        children[0].inc()
        children[1].observe(seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        carrier: dict[str, str] = {}
        fields = self.trace_fields()
        for key, value in scope["headers"]:  # the last of repeated headers wins
            if key == b"x-request-id":
                request_id = value.decode("latin-1")
            elif key in fields:
                carrier[key.decode("latin-1")] = value.decode("latin-1")
        if not REQUEST_ID_RE.fullmatch(request_id):
            request_id = uuid.uuid4().hex  # never log or echo arbitrary client text
        rid_token = request_id_var.set(request_id)
        org_token = organization_id_var.set(None)
        read = scope["method"] in ("GET", "HEAD")
        timeout_token = read_timeout_var.set(self.read_timeout_ms if read else None)
        rid_header = (b"x-request-id", request_id.encode())
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        # no trace headers: a new trace, as extracting from an empty carrier gives
        ctx = propagate.extract(carrier) if carrier else EMPTY_CONTEXT
        try:
            if self.record_spans:
                with tracer().start_as_current_span(
                    f"{scope['method']} {scope['path']}", context=ctx, kind=trace.SpanKind.SERVER
                ) as span:
                    await self.app(scope, receive, send_wrapper)
                    span.set_attribute("http.status_code", status)
            else:
                attached = otel_context.attach(trace.set_span_in_context(unrecorded_span(ctx)))
                try:
                    await self.app(scope, receive, send_wrapper)
                finally:
                    otel_context.detach(attached)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            if path not in UNTRACKED:
                self.observe(scope["method"], path, status, time.perf_counter() - start)
            request_id_var.reset(rid_token)
            organization_id_var.reset(org_token)
            read_timeout_var.reset(timeout_token)


#: a route's fast path: the response, or None to let FastAPI handle the request
FastPath = Callable[[Request], Awaitable[Response | None]]


def fast_path(fast: FastPath) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give an endpoint of a :class:`FastPathRoute` router a fast path.

    FastAPI resolves an endpoint's dependencies and validates its parameters one by
    one, with introspection on every request: about 0.1-0.3 ms of CPU on the hot
    reads, as much as the rest of the request. A fast path reads the request itself,
    accepts only the plain spellings of valid parameters, and answers with what the
    endpoint would; for anything else it returns None and FastAPI handles the
    request as usual, so validation errors, defaults and the OpenAPI description
    stay FastAPI's. It must authenticate and authorize exactly as the endpoint's
    dependencies do (see :func:`pytake_common.security.authorize`).
    """

    def decorate(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        endpoint.fast_path = fast  # type: ignore[attr-defined]
        return endpoint

    return decorate


class FastPathRoute(APIRoute):
    """An APIRoute that first tries its endpoint's :func:`fast_path`, if it has one.

    ``app.state.fast_paths = False`` turns fast paths off (tests compare both ways); so
    do ``app.dependency_overrides`` (a fast path would not see them).
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        endpoint = self.endpoint
        if getattr(endpoint, "fast_path", None) is None:
            return handler

        async def route_handler(request: Request) -> Response:
            app = request.app
            if getattr(app.state, "fast_paths", True) and not app.dependency_overrides:
                fast: FastPath = endpoint.fast_path  # type: ignore[attr-defined]
                response = await fast(request)
                if response is not None:
                    return response
            return await handler(request)

        return route_handler


def schema_state(current: str | None, chain: tuple[str, ...]) -> str:
    """``ok`` when the database is at the head of this code's ``chain``, or at a revision
    the code does not know: a newer release's migration ran, and migrations are backward
    compatible (docs/operations.md, expand, deploy, contract). Otherwise why not."""
    if current == chain[-1] or (current is not None and current not in chain):
        return "ok"
    return f"behind: at {current or 'no revision'}, this code needs {chain[-1]}"


def health_router(settings: ServiceSettings, db: Database | None, check_broker: bool) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        checks: dict[str, str] = {}
        if db is not None:
            try:
                await asyncio.wait_for(db.ping(), 2.0)
                checks["database"] = "ok"
            except Exception as exc:
                checks["database"] = f"down: {type(exc).__name__}"
            # ``serve`` gives the app its migration chain: during a rollout the new pods
            # wait for their migration Job while the old ones keep serving.
            chain = getattr(request.app.state, "schema_chain", None)
            if chain and checks["database"] == "ok":
                try:
                    revision = await asyncio.wait_for(db.schema_revision(), 2.0)
                    checks["schema"] = schema_state(revision, chain)
                except Exception as exc:
                    checks["schema"] = f"unknown: {type(exc).__name__}"
        if check_broker:
            ok = await broker_reachable(settings.kafka_bootstrap)
            checks["broker"] = "ok" if ok else "down"
            BROKER_UP.labels(settings.service_name).set(1 if ok else 0)
        required = {
            k: v for k, v in checks.items() if k != "broker" or settings.ready_requires_broker
        }
        if all(v == "ok" for v in required.values()):
            return Response(
                content=_json({"status": "ok", "checks": checks}), media_type="application/json"
            )
        return problem(503, "not_ready", "Not ready", None, checks=checks)

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def _json(body: Any) -> str:
    import json

    return json.dumps(body)


def create_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    routers: Sequence[APIRouter],
    db: Database | None,
    workers: Callable[[], Sequence[Worker]] = lambda: (),
    check_broker: bool = True,
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
    retention: Sequence[Retention] = (),
    replica_views: Sequence[BroadcastReplica] = (),
) -> FastAPI:
    """``replica_views``: the service's own broadcast views; they share one consumer with
    the revocation list and the organization directory (:class:`ReplicaFeed`)."""
    configure_logging(settings.service_name, settings.log_level)
    configure_tracing(settings.service_name, settings.otel_exporter)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        if settings.run_workers:
            views = [app.state.revocations, app.state.organizations, *replica_views]
            replicas = [ReplicaFeed(settings, views).run]
            if db is not None:  # every service database carries the mechanics tables
                replicas.append(RetentionWorker(db, settings, retention).run)
            tasks = [asyncio.create_task(w(stop)) for w in [*replicas, *workers()]]
        # The OpenAPI document is built once now, not on its first request: a large one
        # (automation's flow definitions) takes seconds on a busy box, longer than the
        # gateway waits when it merges every service's document for /docs.
        app.openapi()
        if settings.gc_freeze:
            # What start-up made lives as long as the process: full collections skip it.
            gc.collect()
            gc.freeze()
        log.info("service started", extra={"workers": len(tasks)})
        try:
            yield
        finally:
            if settings.gc_freeze:
                gc.unfreeze()  # an app stopped inside a longer process (tests) can go
            stop.set()
            for task in tasks:
                try:
                    await asyncio.wait_for(task, 10)
                except (TimeoutError, asyncio.CancelledError):
                    task.cancel()
                except Exception:
                    log.exception("worker failed at shutdown")
            for hook in on_shutdown:
                await hook()
            verifier = getattr(app.state, "verifier", None)
            if isinstance(verifier, JWKSVerifier):
                await verifier.aclose()  # its one HTTP client
            if db is not None:
                await db.dispose()

    # One server span per request comes from ObservabilityMiddleware; FastAPI's native
    # telemetry would add four more (about half the per-request CPU of the gateway).
    app = FastAPI(
        title=title,
        version="0.1.0",
        lifespan=lifespan,
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.settings = settings
    app.state.db = db
    app.state.verifier = JWKSVerifier(
        settings.auth_jwks_url,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        cache_ttl_s=settings.jwks_cache_ttl_s,
    )
    app.state.revocations = RevocationList(settings)
    app.state.organizations = OrganizationDirectory(settings)
    install_problem_handlers(app)
    app.add_middleware(
        ObservabilityMiddleware,
        service=settings.service_name,
        record_spans=settings.otel_exporter != "none",
        read_timeout_ms=settings.api_read_statement_timeout_ms,
    )
    app.include_router(health_router(settings, db, check_broker))
    for router in routers:
        app.include_router(router)
    return app


async def request_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db
