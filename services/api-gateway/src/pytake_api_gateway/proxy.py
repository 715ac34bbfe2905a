"""The hot path: admit a request, then forward it to its upstream and stream the answer back.

A plain ASGI app in front of FastAPI (see :mod:`pytake_api_gateway.edge`): no
FastAPI routing, request parsing, dependency injection or body rewriting. Each
HTTP request goes through three steps, each in its own module:

* :mod:`pytake_api_gateway.headers` (header policy): one pass over the
  client's headers, what is forwarded, what the gateway adds;
* :mod:`pytake_api_gateway.admission`: token, revocation, rate limit;
* :mod:`pytake_api_gateway.relay`: the request through
  :class:`pytake_api_gateway.upstream.UpstreamPool` (pooled keep-alive
  HTTP/1.1 connections, llhttp), the answer back.

Between admission and relay this module reads the body, within the route's
limit. WebSockets are proxied by :mod:`pytake_api_gateway.websocket` over an
``aiohttp.ClientSession``, which also serves ``/readyz`` and the OpenAPI
aggregation.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
from starlette.types import Receive, Scope, Send

from pytake_api_gateway.admission import Admission, Refused
from pytake_api_gateway.config import Settings
from pytake_api_gateway.headers import (
    DuplicateAuthorization,
    RequestHead,
    RequestIdMiddleware,
    add_platform_headers,
    split_request,
)
from pytake_api_gateway.ratelimit import EdgeRateLimits
from pytake_api_gateway.relay import Pace, Relay, StreamedBodies, StreamsBusy, streams_busy
from pytake_api_gateway.routing import RouteEntry, RoutingTable, has_dot_segment
from pytake_api_gateway.tokens import TokenGate
from pytake_api_gateway.upstream import BodyStream, Origin, UpstreamPool
from pytake_api_gateway.websocket import WebSocketProxy
from pytake_common.errors import problem

__all__ = ["Proxy", "RequestIdMiddleware", "UpstreamClient"]


class UpstreamClient:
    """The connections to the upstreams: :class:`UpstreamPool` for forwarded HTTP
    requests (the hot path), one ``aiohttp.ClientSession`` for WebSockets, the
    readiness probes and the OpenAPI aggregation."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None
        self.pool = UpstreamPool(
            limit=settings.upstream_pool_size,
            keepalive_s=settings.upstream_keepalive_s,
            connect_timeout_s=settings.upstream_connect_timeout_s,
            read_timeout_s=settings.upstream_timeout_s,
            wait_timeout_s=settings.upstream_pool_wait_s,
        )

    async def open(self) -> None:
        if self._session is not None and not self._session.closed:
            return
        s = self.settings
        connector = aiohttp.TCPConnector(
            limit=s.upstream_pool_size,
            limit_per_host=0,
            keepalive_timeout=s.upstream_keepalive_s,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # No total deadline (bodies may stream for long); the response must
            # start, and the body keep flowing, within upstream_timeout_s.
            timeout=aiohttp.ClientTimeout(
                total=None, connect=s.upstream_connect_timeout_s, sock_read=s.upstream_timeout_s
            ),
            auto_decompress=False,
            # A proxy must never keep one client's cookies for the next one.
            cookie_jar=aiohttp.DummyCookieJar(),
            # Send the client's headers, not aiohttp's defaults (an invented
            # Accept-Encoding would get a compressed answer the client never asked for).
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            trust_env=False,
            raise_for_status=False,
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            raise RuntimeError("the upstream session is not open (app lifespan not started)")
        return session

    async def close(self) -> None:
        self.pool.close()
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Disconnected(Exception):
    """The client went away before its request body was read."""


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or ``None`` as soon as it grows past ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk: bytes = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if len(chunks) == 1:
        return chunks[0]
    return b"".join(chunks)


@dataclass(frozen=True, slots=True)
class _Upload:
    """A request body forwarded as it arrives."""

    stream: BodyStream
    length: int | None
    limit: int


class _TooLarge(Exception):
    """The request body grew past its route's limit."""


class _ClientStalled(Exception):
    """The client stopped sending the body, or sends it slower than the pace."""


def _body_stream(receive: Receive, limit: int, timeout_s: float, pace: Pace) -> BodyStream:
    """The request body piece by piece, for :meth:`UpstreamPool.request`: raises
    :class:`_TooLarge` past ``limit``, :class:`_ClientStalled` when the client
    sends nothing for ``timeout_s`` or falls below ``pace`` (only the time spent
    waiting on the client counts, not the upstream's flow control),
    :class:`_Disconnected` when it goes away."""
    size = 0
    more = True
    loop = asyncio.get_running_loop()

    async def pull() -> bytes:
        nonlocal size, more
        while more:
            allowance = pace.allowance()
            started = loop.time()
            try:
                async with asyncio.timeout(min(timeout_s, allowance)):
                    message = await receive()
            except TimeoutError:
                if allowance < timeout_s:
                    raise _ClientStalled(
                        f"the request body arrived slower than {pace.min_bytes_per_s} bytes/s"
                    ) from None
                raise _ClientStalled(
                    f"the request body stopped arriving for {timeout_s} s"
                ) from None
            pace.waited += loop.time() - started
            if message["type"] == "http.disconnect":
                raise _Disconnected
            more = message.get("more_body", False)
            chunk: bytes = message.get("body", b"")
            if chunk:
                size += len(chunk)
                pace.moved += len(chunk)
                if size > limit:
                    raise _TooLarge
                return chunk
        return b""

    return pull


class Proxy:
    """The ASGI app of every proxied path (HTTP and WebSocket).

    Reached through :class:`pytake_api_gateway.edge.EdgeDispatcher`, which has
    already matched the path and put its :class:`RouteEntry` in ``scope["route"]``.
    """

    def __init__(
        self,
        settings: Settings,
        table: RoutingTable,
        client: UpstreamClient,
        gate: TokenGate,
        limits: EdgeRateLimits,
    ) -> None:
        self.settings = settings
        self.table = table
        self.client = client
        self.admission = Admission(gate, limits)
        self.streams = StreamedBodies(
            settings.streamed_bodies_max, settings.streamed_bodies_per_organization
        )
        self.relay = Relay(
            client.pool,
            settings.client_write_timeout_s,
            self.streams,
            settings.streamed_body_min_bytes_per_s,
            settings.streamed_body_grace_s,
        )
        self.websocket = WebSocketProxy(
            self.admission,
            lambda: client.session,
            settings.ws_max_streams_per_organization,
        )
        self.origins = {u.name: Origin.parse(u.base_url) for u in table.upstreams}
        #: A streamed request body must keep arriving (the upstream connection waits).
        self.client_read_timeout_s = settings.upstream_timeout_s
        #: (method, exact path) -> body limit, where a route differs from its prefix.
        self.body_limits = table.body_limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        entry: RouteEntry = scope["route"]
        if scope["type"] == "websocket":
            await self.websocket(entry, scope, receive, send)
        else:
            await self._http(entry, scope, receive, send)

    async def _http(self, entry: RouteEntry, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        if "/." in path and has_dot_segment(path):
            await problem(400, "invalid_path", "Invalid path", "dot segments are not allowed")(
                scope, receive, send
            )
            return
        try:
            head = split_request(scope["headers"])
        except DuplicateAuthorization:
            await problem(
                400,
                "duplicate_authorization",
                "Bad request",
                "more than one Authorization header",
            )(scope, receive, send)
            return
        client = scope.get("client")
        address: str | None = client[0] if client else None
        try:
            decision, organization = await self.admission.http(
                method, path, head.authorization, address
            )
        except Refused as refused:
            response = problem(
                refused.status, refused.code, refused.title, refused.detail, **refused.extra
            )
            if refused.decision is not None:
                response.raw_headers.extend(refused.decision.headers())
            await response(scope, receive, send)
            return

        body = await self._body(entry, method, path, head, scope, receive, send)
        if body is None:
            return  # answered already (400, 413), or the client went away

        forward = head.forward
        add_platform_headers(forward, scope, address, head.host)
        target: bytes = scope.get("raw_path") or quote(path).encode("ascii")
        query: bytes = scope.get("query_string", b"")
        if query:
            target += b"?" + query
        origin = self.origins[entry.upstream.name]
        if isinstance(body, bytes):
            await self.relay(
                entry,
                origin,
                method,
                target,
                forward,
                body,
                decision,
                scope,
                receive,
                send,
                organization=organization,
            )
            return
        # An upload holds an upstream connection as long as the client takes:
        # counted before that connection is taken.
        try:
            self.streams.take(organization)
        except StreamsBusy as busy:
            await streams_busy(busy, scope, receive, send)
            return
        try:
            await self.relay(
                entry,
                origin,
                method,
                target,
                forward,
                b"",
                decision,
                scope,
                receive,
                send,
                stream=body.stream,
                length=body.length,
                organization=organization,
                holds_stream=True,
            )
        except _Disconnected:
            return
        except _TooLarge:
            await _too_large(body.limit, scope, receive, send)
        except _ClientStalled as stalled:
            await problem(408, "request_timeout", "Request timeout", str(stalled))(
                scope, receive, send
            )
        finally:
            self.streams.give_back(organization)

    async def _body(
        self,
        entry: RouteEntry,
        method: str,
        path: str,
        head: RequestHead,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> bytes | _Upload | None:
        """The request body within the route's limit: read whole, or, on a
        large-body route, an :class:`_Upload` streamed while it is forwarded.
        ``None`` once a refusal was sent or the client went away."""
        if head.content_length is None and not head.chunked:
            return b""
        limit = self.body_limits.get((method, path), entry.body_limit)
        declared: int | None = None
        if head.content_length is not None:
            try:
                declared = int(head.content_length)
            except ValueError:
                declared = -1
            if declared < 0:
                await problem(400, "bad_request", "Bad request", "invalid Content-Length")(
                    scope, receive, send
                )
                return None
            if declared > limit:
                await _too_large(limit, scope, receive, send)
                return None
        if limit > entry.body_limit:  # a large-body route: streamed, never held whole
            stream = _body_stream(receive, limit, self.client_read_timeout_s, self.relay.pace())
            return _Upload(stream, declared, limit)
        try:
            body = await _read_body(receive, limit)
        except _Disconnected:
            return None
        if body is None:
            await _too_large(limit, scope, receive, send)
        return body


async def _too_large(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
    await problem(
        413,
        "payload_too_large",
        "Payload too large",
        f"the request body is larger than {limit} bytes",
        limit=limit,
    )(scope, receive, send)
