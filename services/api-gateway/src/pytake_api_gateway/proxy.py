"""The hot path: verify, then forward a request to its upstream and stream the answer back.

One shared ``aiohttp.ClientSession`` (pooled keep-alive connections, no
decompression, no cookie jar, no redirects) carries every request. The proxy is
a plain ASGI app in front of FastAPI (see :mod:`pytake_api_gateway.edge`): no
FastAPI routing, request parsing, dependency injection or body rewriting.

Request headers sent upstream
    Everything the client sent, except: hop-by-hop headers (``connection`` and
    the headers it names, ``keep-alive``, ``te``, ``trailer``,
    ``transfer-encoding``, ``upgrade``, ``proxy-*``), ``host`` and
    ``content-length`` (set again by the client library from the URL and the
    exact body), ``expect``, and everything a client could use to impersonate
    the platform: ``x-pytake-*``, ``x-forwarded-*``, ``forwarded``,
    ``x-real-ip``, ``traceparent``/``tracestate``/``baggage``. Then the gateway
    sets ``x-forwarded-for`` (the client address as uvicorn resolved it, see
    ``FORWARDED_ALLOW_IPS``), ``x-forwarded-proto``, ``x-forwarded-host`` (the
    ``Host`` the client asked for), ``x-request-id`` and the W3C trace context
    of the gateway's own span. ``authorization`` is kept: services verify
    tokens themselves.

Request id
    A client's ``x-request-id`` is kept only when well formed (1-128
    characters of ``A-Z a-z 0-9 . _ : -``, starting with a letter or digit; the
    first of several), otherwise it is replaced by a fresh UUID4 hex. The same
    id is logged by the gateway, forwarded upstream and echoed in the response.
    Proxied paths get it from :class:`pytake_api_gateway.edge.EdgeObservability`,
    the gateway's own endpoints from :class:`RequestIdMiddleware`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from typing import Any
from urllib.parse import parse_qs, quote

import aiohttp
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from yarl import URL

from pytake_api_gateway.config import Settings
from pytake_api_gateway.metrics import UPSTREAM_ERRORS
from pytake_api_gateway.ratelimit import Decision, EdgeRateLimits
from pytake_api_gateway.routing import (
    PUBLIC_ROUTES,
    WEBHOOK_PATH,
    RouteEntry,
    RoutingTable,
    has_dot_segment,
)
from pytake_api_gateway.tokens import Refusal, TokenGate
from pytake_api_gateway.upstream import Origin, UpstreamError, UpstreamPool, UpstreamResponse
from pytake_common.context import request_id_var
from pytake_common.errors import problem
from pytake_common.tracing import inject_headers

log = logging.getLogger(__name__)

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
_DROP_REQUEST = HOP_BY_HOP | {
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
_DROP_REQUEST_PREFIXES = (b"proxy-", b"x-pytake-", b"x-forwarded-")
#: WebSocket handshake headers: the client library makes its own.
_DROP_WS_PREFIXES = (*_DROP_REQUEST_PREFIXES, b"sec-websocket-")
#: Response headers not relayed: hop-by-hop, and those the gateway's server or
#: middleware set themselves (they would be duplicated).
_DROP_RESPONSE = HOP_BY_HOP | {b"date", b"server", b"x-request-id"}

#: Upstream answers up to this size (with a Content-Length) are read whole and
#: sent in one ASGI message; larger or unsized ones are streamed as they arrive.
_BUFFER_LIMIT = 256 * 1024
_WS_MAX_MESSAGE = 4 * 1024 * 1024

REQUEST_ID = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")


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


def bearer(value: bytes | None) -> str | None:
    if value is None:
        return None
    scheme, _, token = value.partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    return token.strip().decode("latin-1") or None


class RequestIdMiddleware:
    """Keep a well-formed client ``x-request-id``, replace any other (see module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers: list[tuple[bytes, bytes]] = scope["headers"]
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


class _Disconnected(Exception):
    pass


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


def _drop_named_by_connection(
    headers: list[tuple[bytes, bytes]], connection: bytes
) -> list[tuple[bytes, bytes]]:
    """Headers named by ``Connection`` are hop-by-hop too (RFC 9110 7.6.1)."""
    named = {t.strip().lower() for t in connection.split(b",")}
    named -= {b"close", b"keep-alive", b""}
    if not named:
        return headers
    return [h for h in headers if h[0] not in named]


def _drop_connection_tokens(
    headers: list[tuple[str, str]], connection: bytes
) -> list[tuple[str, str]]:
    """Headers named by ``Connection`` are hop-by-hop too (RFC 9110 7.6.1)."""
    named = {t.strip().lower() for t in connection.decode("latin-1").split(",")}
    named -= {"close", "keep-alive", ""}
    if not named:
        return headers
    return [h for h in headers if h[0] not in named]


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
        self.gate = gate
        self.limits = limits
        self.origins = {u.name: Origin.parse(u.base_url) for u in table.upstreams}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        entry: RouteEntry = scope["route"]
        if scope["type"] == "websocket":
            await self._websocket(entry, scope, receive, send)
        else:
            await self._http(entry, scope, receive, send)

    # -- HTTP --------------------------------------------------------------------

    async def _http(self, entry: RouteEntry, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        if "/." in path and has_dot_segment(path):
            await problem(400, "invalid_path", "Invalid path", "dot segments are not allowed")(
                scope, receive, send
            )
            return

        forward: list[tuple[bytes, bytes]] = []
        append = forward.append
        authorization = host = content_length = connection = None
        chunked = False
        for header in scope["headers"]:
            name = header[0]
            if name in _DROP_REQUEST or name.startswith(_DROP_REQUEST_PREFIXES):
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
                authorization = header[1]
            append(header)

        client = scope.get("client")
        address: str | None = client[0] if client else None
        decision: Decision | None
        if (method, path) in PUBLIC_ROUTES:
            limits = self.limits
            decision = limits.webhook(address) if path == WEBHOOK_PATH else limits.client(address)
        else:
            gate = self.gate
            token = bearer(authorization)
            identity = gate.cached(token) if token is not None else None
            if identity is None:
                verified = await gate.verify(token)
                if isinstance(verified, Refusal):
                    await _refuse(verified, scope, receive, send)
                    return
                identity = verified
            refusal = gate.revoked(identity)
            if refusal is not None:
                await _refuse(refusal, scope, receive, send)
                return
            decision = self.limits.organization(identity.organization_id, identity.organization_key)
        if decision is not None and not decision.allowed:
            await _rate_limited(decision, scope, receive, send)
            return

        limit = entry.body_limit
        if content_length is not None:
            try:
                declared = int(content_length)
            except ValueError:
                declared = -1
            if declared < 0:
                await problem(400, "bad_request", "Bad request", "invalid Content-Length")(
                    scope, receive, send
                )
                return
            if declared > limit:
                await self._too_large(entry, scope, receive, send)
                return
        body: bytes | None = b""
        if content_length is not None or chunked:
            try:
                body = await _read_body(receive, limit)
            except _Disconnected:
                return
            if body is None:
                await self._too_large(entry, scope, receive, send)
                return

        if connection is not None:
            forward = _drop_named_by_connection(forward, connection)
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

        target: bytes = scope.get("raw_path") or quote(path).encode("ascii")
        query: bytes = scope.get("query_string", b"")
        if query:
            target += b"?" + query

        origin = self.origins[entry.upstream.name]
        try:
            response = await self.client.pool.request(origin, method, target, forward, body or b"")
        except TimeoutError:
            await self._upstream_failed(entry, "timeout", scope, receive, send)
            return
        except UpstreamError as exc:
            await self._upstream_failed(entry, "unavailable", scope, receive, send, exc)
            return
        except ValueError as exc:  # a line break in a header: refused, never sent
            await problem(400, "bad_request", "Bad request", str(exc))(scope, receive, send)
            return

        try:
            headers: list[tuple[bytes, bytes]] = []
            size: int | None = None
            for name, value in response.headers:
                lname = name.lower()
                if lname in _DROP_RESPONSE or lname.startswith(b"proxy-"):
                    continue
                if lname == b"content-length":
                    size = int(value) if value.isdigit() else None
                headers.append((lname, value))
            if decision is not None:
                headers.extend(decision.headers())
            if response.complete or (size is not None and size <= _BUFFER_LIMIT):
                try:
                    data = await response.read()
                except TimeoutError:
                    await self._upstream_failed(entry, "timeout", scope, receive, send)
                    return
                except UpstreamError as exc:
                    await self._upstream_failed(entry, "unavailable", scope, receive, send, exc)
                    return
                await send(
                    {"type": "http.response.start", "status": response.status, "headers": headers}
                )
                await send({"type": "http.response.body", "body": data})
            else:
                await send(
                    {"type": "http.response.start", "status": response.status, "headers": headers}
                )
                await self._stream(entry, response, receive, send)
        finally:
            response.release()

    async def _stream(
        self, entry: RouteEntry, response: UpstreamResponse, receive: Receive, send: Send
    ) -> None:
        """Relay the body as it arrives; stop pulling from upstream if the client goes."""

        async def pump() -> None:
            try:
                while chunk := await response.next_chunk():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except (TimeoutError, UpstreamError) as exc:
                # Too late for a problem response: cut the connection so the
                # client sees a truncated body, not a complete one.
                kind = "timeout" if isinstance(exc, TimeoutError) else "unavailable"
                UPSTREAM_ERRORS.labels(entry.upstream.name, kind).inc()
                log.warning(
                    "upstream body interrupted",
                    extra={"upstream": entry.upstream.name, "error": type(exc).__name__},
                )
                raise
            await send({"type": "http.response.body", "body": b""})

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        pumping = asyncio.ensure_future(pump())
        watching = asyncio.ensure_future(watch())
        try:
            await asyncio.wait((pumping, watching), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pumping, watching):
                task.cancel()
            await asyncio.gather(pumping, watching, return_exceptions=True)
        if pumping.done() and not pumping.cancelled() and pumping.exception() is not None:
            raise UpstreamBodyError(entry.upstream.name)

    async def _too_large(
        self, entry: RouteEntry, scope: Scope, receive: Receive, send: Send
    ) -> None:
        await problem(
            413,
            "payload_too_large",
            "Payload too large",
            f"the request body is larger than {entry.body_limit} bytes",
            limit=entry.body_limit,
        )(scope, receive, send)

    async def _upstream_failed(
        self,
        entry: RouteEntry,
        kind: str,
        scope: Scope,
        receive: Receive,
        send: Send,
        exc: BaseException | None = None,
    ) -> None:
        name = entry.upstream.name
        UPSTREAM_ERRORS.labels(name, kind).inc()
        log.warning(
            "upstream %s",
            kind,
            extra={"upstream": name, "error": type(exc).__name__ if exc else kind},
        )
        if kind == "timeout":
            response = problem(
                504,
                "upstream_timeout",
                "Upstream timeout",
                f"{name} did not answer in time",
                upstream=name,
            )
        else:
            response = problem(
                502,
                "upstream_unavailable",
                "Upstream unavailable",
                f"{name} could not be reached",
                upstream=name,
            )
        await response(scope, receive, send)

    # -- WebSocket ---------------------------------------------------------------

    async def _websocket(
        self, entry: RouteEntry, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        path: str = scope["path"]
        if has_dot_segment(path):
            await _ws_deny(scope, send, 400, "invalid_path", "dot segments are not allowed")
            return

        forward: list[tuple[str, str]] = []
        authorization = host = connection = None
        for name, value in scope["headers"]:
            if name in _DROP_REQUEST or name.startswith(_DROP_WS_PREFIXES):
                if name == b"host":
                    host = value
                elif name == b"connection":
                    connection = value
                continue
            if name == b"authorization":
                authorization = value
            forward.append((name.decode("latin-1"), _text(value)))
        query: bytes = scope.get("query_string", b"")

        # Browsers cannot set headers on a WebSocket: ``?access_token=`` is accepted
        # too (and forwarded untouched with the query string).
        token = bearer(authorization)
        if token is None and query:
            tokens = parse_qs(query.decode("latin-1")).get("access_token")
            token = tokens[0] if tokens else None
        verified = await self.gate.admit(token)
        if isinstance(verified, Refusal):
            await _ws_deny(scope, send, verified.status, verified.code, verified.detail)
            return
        decision = self.limits.organization(verified.organization_id, verified.organization_key)
        if decision is not None and not decision.allowed:
            await _ws_deny(
                scope,
                send,
                429,
                "rate_limited",
                "too many requests",
                retry_after=decision.retry_after_s,
            )
            return

        if connection is not None:
            forward = _drop_connection_tokens(forward, connection)
        client = scope.get("client")
        if client:
            forward.append(("x-forwarded-for", client[0]))
        forward.append(("x-forwarded-proto", "https" if scope.get("scheme") == "wss" else "http"))
        if host is not None:
            forward.append(("x-forwarded-host", _text(host)))
        forward.append(("x-request-id", uuid.uuid4().hex))
        forward.extend(inject_headers().items())

        base = entry.upstream.base_url
        base = "ws" + base[4:] if base.startswith("http") else base
        target = base + _raw_path(scope) + ("?" + _text(query) if query else "")
        name = entry.upstream.name
        try:
            upstream = await self.client.session.ws_connect(
                URL(target, encoded=True),
                headers=forward,
                protocols=scope.get("subprotocols") or (),
                autoping=True,
                max_msg_size=_WS_MAX_MESSAGE,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
            )
        except aiohttp.WSServerHandshakeError as exc:
            status = exc.status if 400 <= exc.status < 500 else 502
            await _ws_deny(scope, send, status, "upstream_refused", f"{name} answered {exc.status}")
            return
        except TimeoutError:
            UPSTREAM_ERRORS.labels(name, "timeout").inc()
            await _ws_deny(scope, send, 504, "upstream_timeout", f"{name} did not answer in time")
            return
        except aiohttp.ClientError:
            UPSTREAM_ERRORS.labels(name, "unavailable").inc()
            await _ws_deny(scope, send, 502, "upstream_unavailable", f"{name} could not be reached")
            return

        await send({"type": "websocket.accept", "subprotocol": upstream.protocol})
        await _ws_relay(upstream, receive, send)


def _text(value: bytes) -> str:
    """Header bytes as the str aiohttp will encode back to the same bytes (UTF-8)."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:  # not UTF-8: cannot be relayed byte for byte
        return value.decode("latin-1")


def _raw_path(scope: Scope) -> str:
    raw: bytes | None = scope.get("raw_path")
    if raw:
        return _text(raw)
    return quote(scope["path"])


class UpstreamBodyError(Exception):
    """The upstream connection broke while its body was being relayed."""


async def _refuse(refusal: Refusal, scope: Scope, receive: Receive, send: Send) -> None:
    r = refusal
    await problem(r.status, r.code, r.title, r.detail)(scope, receive, send)


async def _rate_limited(decision: Decision, scope: Scope, receive: Receive, send: Send) -> None:
    response = problem(
        429,
        "rate_limited",
        "Too many requests",
        f"rate limit exceeded; retry in {decision.retry_after_s} s",
        retry_after=decision.retry_after_s,
    )
    response.raw_headers.extend(decision.headers())
    await response(scope, receive, send)


async def _ws_deny(
    scope: Scope, send: Send, status: int, code: str, detail: str, **extra: Any
) -> None:
    """Refuse a WebSocket handshake: a problem+json answer when the server can send one."""
    if "websocket.http.response" in scope.get("extensions", {}):
        response = problem(status, code, detail.capitalize(), detail, **extra)
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": response.raw_headers,
            }
        )
        await send({"type": "websocket.http.response.body", "body": response.body})
    else:
        await send({"type": "websocket.close", "code": 1008 if status < 500 else 1011})


def _close_code(code: int | None) -> int:
    if code is None or code == 1005:
        return 1000
    if code in (1006, 1015):
        return 1011
    return code


async def _ws_relay(
    upstream: aiohttp.ClientWebSocketResponse, receive: Receive, send: Send
) -> None:
    async def client_to_upstream() -> None:
        while True:
            message: Message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                text = message.get("text")
                if text is not None:
                    await upstream.send_str(text)
                else:
                    await upstream.send_bytes(message.get("bytes") or b"")
            elif kind == "websocket.disconnect":
                await upstream.close(code=_close_code(message.get("code")))
                return

    async def upstream_to_client() -> None:
        async for msg in upstream:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await send({"type": "websocket.send", "text": msg.data})
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await send({"type": "websocket.send", "bytes": msg.data})
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": _close_code(upstream.close_code)})

    tasks = (
        asyncio.ensure_future(client_to_upstream()),
        asyncio.ensure_future(upstream_to_client()),
    )
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await upstream.close()
