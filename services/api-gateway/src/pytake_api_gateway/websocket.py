"""WebSocket proxying (``/v1/stream``): admission, a cap per organization, expiry.

A handshake is admitted like an HTTP request (token in ``Authorization`` or
``?access_token=``, revocation, the organization's rate limit), then
counted against the organization's open streams on this replica: past
``ws_max_streams_per_organization`` it is refused with 429 ``too_many_streams``
(close code 1013, try again later, where the server cannot answer the
handshake with HTTP). An admitted stream is closed with 1008 (policy
violation, reason ``token_expired``) when its token's ``exp`` passes: the
client reconnects with a fresh token (and ``last_event_id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any
from urllib.parse import quote

import aiohttp
from starlette.types import Message, Receive, Scope, Send
from yarl import URL

from pytake_api_gateway.admission import Admission, Refused
from pytake_api_gateway.headers import DROP_REQUEST, DROP_WS_PREFIXES
from pytake_api_gateway.metrics import UPSTREAM_ERRORS
from pytake_api_gateway.routing import RouteEntry, has_dot_segment
from pytake_common.errors import problem
from pytake_common.tracing import inject_headers

_WS_MAX_MESSAGE = 4 * 1024 * 1024
POLICY_VIOLATION, TRY_AGAIN_LATER = 1008, 1013


class WebSocketProxy:
    def __init__(
        self,
        admission: Admission,
        session: Any,
        max_streams_per_organization: int,
    ) -> None:
        self.admission = admission
        #: ``() -> aiohttp.ClientSession`` (open only while the app runs).
        self._session = session
        self.max_streams = max_streams_per_organization
        #: Open streams per organization on this replica.
        self.open_streams: dict[str, int] = {}

    async def __call__(self, entry: RouteEntry, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        path: str = scope["path"]
        if has_dot_segment(path):
            await deny(scope, send, 400, "invalid_path", "dot segments are not allowed")
            return

        forward: list[tuple[str, str]] = []
        authorization = host = connection = None
        for name, value in scope["headers"]:
            if name in DROP_REQUEST or name.startswith(DROP_WS_PREFIXES):
                if name == b"host":
                    host = value
                elif name == b"connection":
                    connection = value
                continue
            if name == b"authorization":
                if authorization is not None:
                    await deny(
                        scope, send, 400, "duplicate_authorization", "one Authorization header only"
                    )
                    return
                authorization = value
            forward.append((name.decode("latin-1"), _text(value)))
        query: bytes = scope.get("query_string", b"")
        try:
            identity = await self.admission.websocket(authorization, query, path)
        except Refused as refused:
            await deny(scope, send, refused.status, refused.code, refused.detail, **refused.extra)
            return

        org = identity.organization_key
        streams = self.open_streams
        if self.max_streams > 0 and streams.get(org, 0) >= self.max_streams:
            await deny(
                scope,
                send,
                429,
                "too_many_streams",
                f"at most {self.max_streams} open streams per organization",
                close_code=TRY_AGAIN_LATER,
            )
            return
        streams[org] = streams.get(org, 0) + 1
        try:
            if connection is not None:
                forward = _drop_connection_tokens(forward, connection)
            client = scope.get("client")
            if client:
                forward.append(("x-forwarded-for", client[0]))
            forward.append(
                ("x-forwarded-proto", "https" if scope.get("scheme") == "wss" else "http")
            )
            if host is not None:
                forward.append(("x-forwarded-host", _text(host)))
            forward.append(("x-request-id", uuid.uuid4().hex))
            forward.extend(inject_headers().items())
            upstream = await self._connect(entry, scope, send, forward, query)
            if upstream is not None:
                await send({"type": "websocket.accept", "subprotocol": upstream.protocol})
                await relay(upstream, receive, send, identity.expires_at)
        finally:
            left = streams[org] - 1
            if left:
                streams[org] = left
            else:
                del streams[org]

    async def _connect(
        self,
        entry: RouteEntry,
        scope: Scope,
        send: Send,
        forward: list[tuple[str, str]],
        query: bytes,
    ) -> aiohttp.ClientWebSocketResponse | None:
        base = entry.upstream.base_url
        base = "ws" + base[4:] if base.startswith("http") else base
        target = base + _raw_path(scope) + ("?" + _text(query) if query else "")
        name = entry.upstream.name
        try:
            session: aiohttp.ClientSession = self._session()
            return await session.ws_connect(
                URL(target, encoded=True),
                headers=forward,
                protocols=scope.get("subprotocols") or (),
                autoping=True,
                max_msg_size=_WS_MAX_MESSAGE,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
            )
        except aiohttp.WSServerHandshakeError as exc:
            status = exc.status if 400 <= exc.status < 500 else 502
            await deny(scope, send, status, "upstream_refused", f"{name} answered {exc.status}")
        except TimeoutError:
            UPSTREAM_ERRORS.labels(name, "timeout").inc()
            await deny(scope, send, 504, "upstream_timeout", f"{name} did not answer in time")
        except aiohttp.ClientError:
            UPSTREAM_ERRORS.labels(name, "unavailable").inc()
            await deny(scope, send, 502, "upstream_unavailable", f"{name} could not be reached")
        return None


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


def _drop_connection_tokens(
    headers: list[tuple[str, str]], connection: bytes
) -> list[tuple[str, str]]:
    """Headers named by ``Connection`` are hop-by-hop too (RFC 9110 7.6.1)."""
    named = {t.strip().lower() for t in connection.decode("latin-1").split(",")}
    named -= {"close", "keep-alive", ""}
    if not named:
        return headers
    return [h for h in headers if h[0] not in named]


async def deny(
    scope: Scope,
    send: Send,
    status: int,
    code: str,
    detail: str,
    *,
    close_code: int | None = None,
    **extra: Any,
) -> None:
    """Refuse a WebSocket handshake: a problem+json answer when the server can send one,
    else a close (``close_code``, by default 1008 for 4xx and 1011 for 5xx)."""
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
        if close_code is None:
            close_code = POLICY_VIOLATION if status < 500 else 1011
        await send({"type": "websocket.close", "code": close_code, "reason": code})


def _close_code(code: int | None) -> int:
    if code is None or code == 1005:
        return 1000
    if code in (1006, 1015):
        return 1011
    return code


async def relay(
    upstream: aiohttp.ClientWebSocketResponse, receive: Receive, send: Send, expires_at: float
) -> None:
    """Both directions until either side closes, or the token expires."""

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
        done, _ = await asyncio.wait(
            tasks, timeout=max(0.0, expires_at - time.time()), return_when=asyncio.FIRST_COMPLETED
        )
        if not done:  # the token expired: the stream ends with it
            with contextlib.suppress(Exception):
                await send(
                    {"type": "websocket.close", "code": POLICY_VIOLATION, "reason": "token_expired"}
                )
            with contextlib.suppress(Exception):
                await upstream.close(code=POLICY_VIOLATION, message=b"token_expired")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await upstream.close()
