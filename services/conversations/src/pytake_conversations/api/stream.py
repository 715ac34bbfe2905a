"""``WebSocket /v1/stream``: the organization's realtime events.

Authenticated with the same access token as the API (``Authorization: Bearer`` or
``?access_token=`` for browsers); every role may listen, only to its own organization.
Each frame is ``{"id", "type", "data"}``; ``id`` grows per organization, and a client
reconnecting with ``?last_event_id=N`` first gets every event after N still kept (24 h).
The stream is read-only: a ``{"type": "ping"}`` from the client is answered with a
``pong``; anything else is ignored. The stream lives no longer than its token: at the
token's ``exp`` it is closed with 1008 (policy violation), reason ``token_expired``;
the client reconnects with a fresh token and ``last_event_id``. A client that fell
behind, or whose replica stopped listening to PostgreSQL for a while (a restart), is
closed with 1013 (try again later), reason ``resume with last_event_id``: reconnecting
with it misses nothing.
"""

import asyncio
import contextlib
import json
import logging
import time
import uuid

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from pytake_common.errors import (
    DomainError,
    InvalidInput,
    Unauthorized,
    problem,
)
from pytake_common.scopes import check_scope
from pytake_common.security import Principal, enforce_policies
from pytake_conversations.stream import REPLAY_LIMIT, StreamHub, Subscription, dumps, replay

log = logging.getLogger(__name__)
router = APIRouter(tags=["stream"])
POLICY_VIOLATION, TRY_AGAIN_LATER = 1008, 1013


class DuplicateAccessToken(DomainError):
    status, code, title = 400, "duplicate_access_token", "Bad request"


def _token(websocket: WebSocket) -> str | None:
    # Two access_tokens could be read differently by the gateway and here
    # (first or last): refused, like two Authorization headers.
    tokens = websocket.query_params.getlist("access_token")
    if len(tokens) > 1:
        raise DuplicateAccessToken("more than one access_token in the query")
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return tokens[0] if tokens and tokens[0] else None


async def _deny(websocket: WebSocket, error: DomainError) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(
            problem(error.status, error.code, error.title, error.detail)
        )
    else:
        await websocket.close(code=POLICY_VIOLATION, reason=error.code)


async def _authenticate(websocket: WebSocket) -> Principal:
    token = _token(websocket)
    if token is None:
        raise Unauthorized("a bearer token is required")
    claims = await websocket.app.state.verifier.verify(token)
    principal = Principal.from_claims(claims)
    enforce_policies(websocket.app.state, claims, principal)
    check_scope(principal.scopes, "GET", "/v1/stream")  # an API client's narrower scopes
    websocket.state.claims = claims
    return principal


@router.websocket("/v1/stream")
async def stream(websocket: WebSocket) -> None:
    try:
        principal = await _authenticate(websocket)
        raw = websocket.query_params.get("last_event_id")
        last_event_id = int(raw) if raw not in (None, "") else None
        if last_event_id is not None and last_event_id < 0:
            raise ValueError("negative")
    except DomainError as exc:
        await _deny(websocket, exc)
        return
    except ValueError:
        await _deny(websocket, InvalidInput("last_event_id must be a non-negative integer"))
        return
    hub: StreamHub = websocket.app.state.stream_hub
    org = principal.organization_id
    await hub.start()
    sub = hub.subscribe(org)  # before the replay, so nothing falls between the two
    try:
        await websocket.accept()
        sent = 0
        if last_event_id is not None:
            sent = await _replay(websocket, org, last_event_id)
        await _pump(websocket, sub, sent, principal)
    except WebSocketDisconnect:
        pass
    finally:
        hub.unsubscribe(sub)
        if websocket.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close()


async def _replay(websocket: WebSocket, org: uuid.UUID, after: int) -> int:
    last = after
    while True:
        frames = await replay(websocket.app.state.db, org, last)
        for item in frames:
            await websocket.send_text(dumps(item))
            last = item["id"]
        if len(frames) < REPLAY_LIMIT:
            return last


async def _pump(websocket: WebSocket, sub: Subscription, sent: int, principal: Principal) -> None:
    async def outgoing() -> None:
        while True:
            item = await sub.queue.get()
            if item is None:  # this client fell behind (or the hub stops): resume later
                await websocket.close(code=TRY_AGAIN_LATER, reason="resume with last_event_id")
                return
            if item["id"] <= sent:
                continue  # already replayed
            try:  # a session revoked (or an organization suspended) mid-stream ends it
                enforce_policies(websocket.app.state, websocket.state.claims, principal)
            except DomainError as exc:
                await websocket.close(code=POLICY_VIOLATION, reason=exc.code)
                return
            await websocket.send_text(dumps(item))

    async def incoming() -> None:
        while True:
            text = await websocket.receive_text()
            with contextlib.suppress(ValueError, AttributeError):
                if json.loads(text).get("type") == "ping":
                    await websocket.send_text(dumps({"id": None, "type": "pong", "data": {}}))

    async def expiry() -> None:
        await asyncio.sleep(max(0.0, float(websocket.state.claims["exp"]) - time.time()))
        await websocket.close(code=POLICY_VIOLATION, reason="token_expired")

    tasks = [
        asyncio.create_task(outgoing()),
        asyncio.create_task(incoming()),
        asyncio.create_task(expiry()),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception()
            if exc is not None and not isinstance(exc, WebSocketDisconnect):
                log.warning("stream connection ended", extra={"error": repr(exc)})
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
