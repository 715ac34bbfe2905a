"""The gateway's outermost ASGI app: proxied paths never enter FastAPI.

A request whose path is in the routing table goes straight to the proxy,
wrapped only in what it needs: CORS when configured, and
:class:`EdgeObservability`. Everything else (the gateway's own endpoints,
lifespan) goes to the FastAPI application with pytake_common's usual
middleware. Skipping FastAPI's middleware, exception handling and router on the
hot path saves a good part of the gateway's CPU per request.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pytake_api_gateway.headers import REQUEST_ID, TRACE_HEADERS
from pytake_api_gateway.routing import RouteEntry, RoutingTable
from pytake_common.context import request_id_var
from pytake_common.metrics import HTTP_LATENCY, HTTP_REQUESTS
from pytake_common.tracing import tracer, unrecorded_span

_SERVER = trace.SpanKind.SERVER
_NO_PARENT = otel_context.Context()


def _context_only(
    parent: otel_context.Context | None,
) -> tuple[otel_context.Context, list[tuple[bytes, bytes]]]:
    """The W3C context of a server span nobody records
    (:func:`pytake_common.tracing.unrecorded_span`, as every service makes it), and the
    ``traceparent`` (``tracestate``) headers the W3C propagator would write for it."""
    span = unrecorded_span(_NO_PARENT if parent is None else parent)
    ids = span.get_span_context()
    headers = [
        (b"traceparent", b"00-%032x-%016x-%02x" % (ids.trace_id, ids.span_id, ids.trace_flags))
    ]
    if ids.trace_state:
        headers.append((b"tracestate", ids.trace_state.to_header().encode("latin-1")))
    return trace.set_span_in_context(span), headers


class EdgeDispatcher:
    def __init__(self, table: RoutingTable, proxied: ASGIApp, application: ASGIApp) -> None:
        self.match = table.match
        self.proxied = proxied
        self.application = application

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            entry = self.match(scope["path"])
            if entry is not None:
                scope["route"] = entry
                await self.proxied(scope, receive, send)
                return
        await self.application(scope, receive, send)


class EdgeObservability:
    """pytake_common's ObservabilityMiddleware and the gateway's request-id rule,
    in one pass over the headers, for proxied HTTP requests.

    The same request id rule (:class:`pytake_api_gateway.headers.RequestIdMiddleware`:
    a well-formed client id is kept, the first of several, else a new one), the
    same server span (continuing the client's W3C trace context), the same
    ``pytake_http_*`` metrics labelled by route prefix. The proxy forwards the
    id from ``request_id_var`` and never the client's header, so the scope's
    headers are left as they are.
    """

    def __init__(self, app: ASGIApp, service: str, record_spans: bool = True) -> None:
        self.app = app
        self.service = service
        #: Without a span exporter (``PYTAKE_OTEL_EXPORTER=none``) a recorded span
        #: goes nowhere: only its context is made (the trace id continued, a new
        #: span id), for the upstream's ``traceparent`` and the logs. It costs
        #: about a quarter of the SDK span (4 vs 19 µs).
        self.record_spans = record_spans
        self._metrics: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = traceparent = tracestate = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                if request_id is None:
                    request_id = value
            elif name == b"traceparent":
                traceparent = value
            elif name == b"tracestate":
                tracestate = value
        if request_id is None or REQUEST_ID.fullmatch(request_id) is None:
            rid = uuid.uuid4().hex
            rid_bytes = rid.encode()
        else:
            rid, rid_bytes = request_id.decode("ascii"), request_id
        token = request_id_var.set(rid)
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid_bytes)]
            await send(message)

        context = None
        if traceparent is not None:
            carrier = {"traceparent": traceparent.decode("latin-1")}
            if tracestate is not None:
                carrier["tracestate"] = tracestate.decode("latin-1")
            context = propagate.extract(carrier)
        method: str = scope["method"]
        entry: RouteEntry = scope["route"]
        try:
            if self.record_spans:
                with tracer().start_as_current_span(
                    f"{method} {entry.path}", context=context, kind=_SERVER
                ) as span:
                    await self.app(scope, receive, send_with_id)
                    span.set_attribute("http.status_code", status)
            else:
                span_context, scope[TRACE_HEADERS] = _context_only(context)
                attached = otel_context.attach(span_context)
                try:
                    await self.app(scope, receive, send_with_id)
                finally:
                    otel_context.detach(attached)
        finally:
            key = (method, entry.path, status)
            children = self._metrics.get(key)
            if children is None:
                children = (
                    HTTP_REQUESTS.labels(self.service, method, entry.path, str(status)),
                    HTTP_LATENCY.labels(self.service, method, entry.path),
                )
                if len(self._metrics) < 4096:  # bounded: methods x prefixes x statuses
                    self._metrics[key] = children
            children[0].inc()
            children[1].observe(time.perf_counter() - start)
            request_id_var.reset(token)
