"""Header policy: what a forwarded request and its answer carry, and the request id.

Request headers sent upstream
    Everything the client sent, except: hop-by-hop headers (``connection`` and
    the headers it names, ``keep-alive``, ``te``, ``trailer``,
    ``transfer-encoding``, ``upgrade``, ``proxy-*``), ``host`` and
    ``content-length`` (written again by :mod:`pytake_api_gateway.upstream`
    from the origin and the exact body), ``expect``, and everything a client
    could use to impersonate the platform: ``x-pytake-*``, ``x-forwarded-*``,
    ``forwarded``, ``x-real-ip``, ``traceparent``/``tracestate``/``baggage``.
    Then the gateway sets ``x-forwarded-for`` (the client address as uvicorn
    resolved it, see ``FORWARDED_ALLOW_IPS``), ``x-forwarded-proto``,
    ``x-forwarded-host`` (the ``Host`` the client asked for), ``x-request-id``
    and the W3C trace context of the gateway's own span. ``authorization`` is
    kept (services verify tokens themselves), but a request with more than one
    is refused: the gateway and the services must agree on who is calling.

Request id
    A client's ``x-request-id`` is kept only when well formed (1-128
    characters of ``A-Z a-z 0-9 . _ : -``, starting with a letter or digit; the
    first of several), otherwise it is replaced by a fresh UUID4 hex. The same
    id is logged by the gateway, forwarded upstream and echoed in the response.
    Proxied paths get it from :class:`pytake_api_gateway.edge.EdgeObservability`,
    the gateway's own endpoints from :class:`RequestIdMiddleware`.
"""

from __future__ import annotations

import re
import uuid
from typing import NamedTuple

from starlette.types import ASGIApp, Receive, Scope, Send

from pytake_common.context import request_id_var
from pytake_common.tracing import inject_headers

Headers = list[tuple[bytes, bytes]]

#: Scope key of the trace headers to forward when
#: :class:`pytake_api_gateway.edge.EdgeObservability` made them (no SDK span).
TRACE_HEADERS = "pytake.trace_headers"

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
#: Request headers never forwarded as the client sent them.
DROP_REQUEST = HOP_BY_HOP | {
    b"host",
    b"content-length",
    b"expect",
    b"forwarded",
    b"x-real-ip",
    b"x-request-id",
    b"traceparent",
    b"tracestate",
    b"baggage",
}
DROP_REQUEST_PREFIXES = (b"proxy-", b"x-pytake-", b"x-forwarded-")
#: WebSocket handshake headers: the client library makes its own.
DROP_WS_PREFIXES = (*DROP_REQUEST_PREFIXES, b"sec-websocket-")
#: Response headers not relayed: hop-by-hop, and those the gateway's server or
#: middleware set themselves (they would be duplicated).
_DROP_RESPONSE = HOP_BY_HOP | {b"date", b"server", b"x-request-id"}

REQUEST_ID = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")


class DuplicateAuthorization(Exception):
    """More than one ``Authorization`` header (-> 400): the gateway would check one
    token and a service might act on the other."""


class RequestHead(NamedTuple):
    """The client's headers, split into what is forwarded and what the proxy reads."""

    forward: Headers
    authorization: bytes | None
    host: bytes | None
    content_length: bytes | None
    chunked: bool
    connection: bytes | None


def split_request(headers: Headers) -> RequestHead:
    """One pass over the request headers (see the module doc for the policy)."""
    forward: Headers = []
    append = forward.append
    authorization = host = content_length = connection = None
    chunked = False
    for header in headers:
        name = header[0]
        if name in DROP_REQUEST or name.startswith(DROP_REQUEST_PREFIXES):
            if name == b"host":
                host = header[1]
            elif name == b"content-length":
                content_length = header[1]
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"connection":
                connection = header[1]
            continue
        if name == b"authorization":
            if authorization is not None:
                raise DuplicateAuthorization
            authorization = header[1]
        append(header)
    if connection is not None:
        forward = drop_named_by_connection(forward, connection)
    return RequestHead(forward, authorization, host, content_length, chunked, connection)


def add_platform_headers(
    forward: Headers, scope: Scope, address: str | None, host: bytes | None
) -> None:
    """What the gateway says about the request: client address, scheme, host, id, trace."""
    append = forward.append
    if address:
        append((b"x-forwarded-for", address.encode("latin-1")))
    append((b"x-forwarded-proto", scope.get("scheme", "http").encode("latin-1")))
    if host is not None:
        append((b"x-forwarded-host", host))
    append((b"x-request-id", (request_id_var.get() or uuid.uuid4().hex).encode("latin-1")))
    trace_headers = scope.get(TRACE_HEADERS)
    if trace_headers is not None:
        forward.extend(trace_headers)
    else:
        for key, text in inject_headers().items():
            append((key.encode("latin-1"), text.encode("latin-1")))


def relayed_response(headers: Headers) -> tuple[Headers, int | None]:
    """The upstream's answer headers to relay (lower-cased), and its Content-Length."""
    relayed: Headers = []
    size: int | None = None
    for name, value in headers:
        lname = name.lower()
        if lname in _DROP_RESPONSE or lname.startswith(b"proxy-"):
            continue
        if lname == b"content-length":
            size = int(value) if value.isdigit() else None
        relayed.append((lname, value))
    return relayed, size


def drop_named_by_connection(headers: Headers, connection: bytes) -> Headers:
    """Headers named by ``Connection`` are hop-by-hop too (RFC 9110 7.6.1)."""
    named = {t.strip().lower() for t in connection.split(b",")}
    named -= {b"close", b"keep-alive", b""}
    if not named:
        return headers
    return [h for h in headers if h[0] not in named]


class RequestIdMiddleware:
    """Keep a well-formed client ``x-request-id``, replace any other (see module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers: Headers = scope["headers"]
            for i, (name, value) in enumerate(headers):
                if name == b"x-request-id":
                    if REQUEST_ID.fullmatch(value) is None:
                        headers = [h for h in headers if h[0] != b"x-request-id"]
                        headers.append((b"x-request-id", uuid.uuid4().hex.encode()))
                        scope["headers"] = headers
                    elif any(h[0] == b"x-request-id" for h in headers[i + 1 :]):
                        # Several ids: keep the first, so everyone agrees on one.
                        scope["headers"] = [
                            h for j, h in enumerate(headers) if j <= i or h[0] != b"x-request-id"
                        ]
                    break
            else:
                scope["headers"] = [*headers, (b"x-request-id", uuid.uuid4().hex.encode())]
        await self.app(scope, receive, send)
