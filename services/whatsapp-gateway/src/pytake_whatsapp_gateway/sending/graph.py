"""Meta's Graph API: sending, mark-as-read, media, templates; answers parsed once here."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import aiohttp
import httpx
from aiohttp.abc import AbstractStreamWriter

from pytake_whatsapp_gateway.sending.errors import (
    SendError,
    from_aiohttp_error,
    from_network_error,
    from_response,
)


@dataclass(frozen=True, slots=True)
class GraphResult:
    wamid: str | None
    error: SendError | None


@dataclass(frozen=True, slots=True)
class GraphAnswer:
    """A JSON answer (``body``) or the mapped error."""

    body: dict[str, Any]
    error: SendError | None
    #: The HTTP status of Meta's answer (0 when none arrived).
    status: int = 0


class GraphClient:
    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        version: str,
        *,
        messages: aiohttp.ClientSession | None = None,
    ) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.version = version
        #: Sends (``POST /messages``, one per message sent) go through this aiohttp
        #: session when set: httpx's request and pool bookkeeping was a third of the
        #: send path's CPU. Everything else uses ``client``.
        self.messages = messages

    def url(self, *parts: str) -> str:
        return "/".join([self.base_url, self.version, *(quote(p, safe="") for p in parts)])

    def messages_url(self, phone_number_id: str) -> str:
        return self.url(phone_number_id, "messages")

    async def send(
        self,
        phone_number_id: str,
        access_token: str,
        payload: dict[str, Any],
        gate: Gate | None = None,
    ) -> GraphResult:
        """Send one message. ``gate`` is awaited once the request is under way (its
        connection taken, nothing written), and its bytes are written as soon as it
        returns, with nothing in between that could let another task run (see
        :class:`GatedBody`). What it raises comes out of here as it is: nothing was sent."""
        url = self.messages_url(phone_number_id)
        if self.messages is not None:
            answer = await self._post(self.messages, url, access_token, payload, gate)
        else:
            if gate is not None:  # httpx has no such moment: as close as it gets
                await gate(False)
            answer = await self.call("POST", url, access_token, json=payload)
        if answer.error is not None:
            return GraphResult(None, answer.error)
        wamid = _wamid(answer.body)
        if wamid is not None:
            return GraphResult(wamid, None)
        return GraphResult(
            None,
            SendError(
                None,
                "unexpected answer",
                "WhatsApp accepted the request without a message id; not resent",
                transient=False,
            ),
        )

    async def mark_read(self, phone_number_id: str, access_token: str, wamid: str) -> GraphAnswer:
        body = {"messaging_product": "whatsapp", "status": "read", "message_id": wamid}
        return await self.call("POST", self.messages_url(phone_number_id), access_token, json=body)

    async def call(
        self,
        method: str,
        url: str,
        access_token: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> GraphAnswer:
        try:
            response = await self.client.request(
                method,
                url,
                json=json,
                params=params,
                headers={"Authorization": f"Bearer {access_token}"},
            )
        except httpx.HTTPError as exc:
            return GraphAnswer({}, from_network_error(exc))
        try:
            body = response.json()
        except ValueError:
            body = None
        return _answer(response.status_code, body)

    @staticmethod
    async def _post(
        session: aiohttp.ClientSession,
        url: str,
        access_token: str,
        payload: dict[str, Any],
        gate: Gate | None = None,
    ) -> GraphAnswer:
        data = json.dumps(payload).encode()
        connection = _Connection()
        try:
            async with session.post(
                url,
                data=data if gate is None else GatedBody(data, gate, connection),
                trace_request_ctx=connection,
                headers={
                    "Authorization": f"Bearer {access_token}",
                    "Content-Type": "application/json",
                },
                allow_redirects=False,
            ) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            if isinstance(exc.__cause__, HeldBack):  # nothing sent: the gate's own error
                raise exc.__cause__.error from None
            return GraphAnswer({}, from_aiohttp_error(exc))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        return _answer(status, body)


#: Awaited right before a send's bytes are written; its argument: the request's connection
#: is new (not kept alive from an earlier request).
Gate = Callable[[bool], Awaitable[None]]


class _Connection:
    """What a request learned of its connection (from the session's trace hooks)."""

    __slots__ = ("fresh",)

    def __init__(self) -> None:
        self.fresh = False


async def _connection_created(
    _session: aiohttp.ClientSession,
    ctx: SimpleNamespace,
    _params: aiohttp.TraceConnectionCreateEndParams,
) -> None:
    if isinstance(ctx.trace_request_ctx, _Connection):
        ctx.trace_request_ctx.fresh = True


class HeldBack(Exception):
    """What a :class:`GatedBody`'s gate raised (``error``): nothing of the request was sent."""

    def __init__(self, error: Exception) -> None:
        super().__init__(repr(error))
        self.error = error


class GatedBody(aiohttp.BytesPayload):
    """A request body that awaits ``gate`` before its bytes go.

    aiohttp keeps a request's headers until its body's first write and writes both
    together, from a task of its own (on Python 3.11 one that runs only after whatever
    else was ready): that write is the request's real departure. The pacer's check
    there (its gate returning without suspending when the call is on time) has no task
    switch between it and the write, where a check before the call had one of unknown
    length. A gate that fails sends nothing: aiohttp reports it as the cause of its
    ``ClientConnectionError`` (wrapped in :class:`HeldBack`) and closes the connection.
    """

    def __init__(self, value: bytes, gate: Gate, connection: _Connection) -> None:
        super().__init__(value, content_type="application/json")
        self._gate = gate
        self._connection = connection

    async def _pass(self) -> None:
        try:
            await self._gate(self._connection.fresh)
        except Exception as exc:
            raise HeldBack(exc) from exc

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self._pass()
        await super().write(writer)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        await self._pass()
        await super().write_with_length(writer, content_length)


#: How long an idle connection of the sends' session is kept: httpx's default, which the
#: sends had before. A send on a kept connection the server is closing at that moment fails
#: as ``ServerDisconnectedError`` and cannot be resent (it may have left): keeping them
#: longer than the server does (aiohttp's own default is 15 s) would make that likelier.
KEEPALIVE_S = 5.0


def messages_session(timeout_s: float, user_agent: str) -> aiohttp.ClientSession:
    """The pooled keep-alive aiohttp session of a process's sends (:class:`GraphClient`):
    ``timeout_s`` to connect (a pooled connection or a new one) and between reads."""
    # A request learns whether its connection is new (GatedBody's gate may wait on it).
    tracing = aiohttp.TraceConfig()
    tracing.on_connection_create_end.append(_connection_created)
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_read=timeout_s),
        connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=KEEPALIVE_S),
        headers={"User-Agent": user_agent},
        trace_configs=[tracing],
    )


def _answer(status: int, body: Any) -> GraphAnswer:
    if 200 <= status < 300:
        return GraphAnswer(body if isinstance(body, dict) else {}, None, status)
    return GraphAnswer({}, from_response(status, body), status)


def _wamid(body: Any) -> str | None:
    messages = body.get("messages") if isinstance(body, dict) else None
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        wamid = messages[0].get("id")
        return wamid if isinstance(wamid, str) and wamid else None
    return None
