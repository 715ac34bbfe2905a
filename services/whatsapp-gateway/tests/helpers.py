"""Test helpers: a tiny real Graph API server, webhook payloads, row counts."""

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pytake_common.mechanics import outbox
from pytake_meta_simulator.testing import provision
from pytake_whatsapp_gateway.tables import (
    inbound_messages,
    numbers,
    send_log,
    status_updates,
    webhook_deliveries,
)
from pytake_whatsapp_gateway.webhooks.signature import sign

PLATFORM_SECRET = "platform-app-secret-0123456789"
SIM_APP_SECRET = "sim-app-secret-0123456789"
SIM_TOKEN = "EAAG-token"


class FakeGraph:
    """Plays Meta's ``POST /{version}/{phone_number_id}/messages`` on a free local port.

    ``script`` holds the next answers as (status, body); when empty it accepts.
    The ownership checks of a registration (``GET /{version}/{id}``, ``GET
    /{version}/{waba_id}/phone_numbers``) pass for any token: every number it was
    asked about is in every WABA (``read_status`` set: every read answers that status
    instead; ``read_delay_s``: the number's profile comes that late). The proof
    itself is tested against the simulator (test_ownership.py).
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[tuple[int, dict[str, Any]]] = []
        self.read_status: int | None = None
        self.read_delay_s = 0.0
        #: the numbers' messaging limit, answered to ``?fields=messaging_limit_tier``
        self.tier: str | None = "TIER_2K"
        self._asked: dict[str, None] = {}
        self.delay_s = 0.0
        #: Awaited with each message's body as it arrives (a test's look at that moment).
        self.on_request: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.base_url = ""

    async def _messages(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append(
            {
                "path": request.url.path,
                "headers": dict(request.headers),
                "json": body,
                "time": time.monotonic(),
            }
        )
        if self.on_request is not None:
            await self.on_request(body)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.script:
            status, answer = self.script.pop(0)
            return JSONResponse(answer, status_code=status)
        wamid = f"wamid.{uuid.uuid4().hex}"
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body.get("to"), "wa_id": body.get("to")}],
                "messages": [{"id": wamid}],
            }
        )

    async def _number(self, request: Request) -> JSONResponse:
        await asyncio.sleep(self.read_delay_s)
        if self.read_status is not None:
            return JSONResponse(meta_error(1, "unavailable"), status_code=self.read_status)
        pnid = request.path_params["pnid"]
        self._asked[pnid] = None
        if "messaging_limit_tier" in request.query_params.get("fields", ""):
            return JSONResponse({"id": pnid, "messaging_limit_tier": self.tier})
        return JSONResponse({"id": pnid, "display_phone_number": "+1 555 0100"})

    async def _waba_numbers(self, request: Request) -> JSONResponse:
        if self.read_status is not None:
            return JSONResponse(meta_error(1, "unavailable"), status_code=self.read_status)
        return JSONResponse({"data": [{"id": pnid} for pnid in self._asked]})

    async def start(self) -> None:
        app = Starlette(
            routes=[
                Route("/{version}/{pnid}/messages", self._messages, methods=["POST"]),
                Route("/{version}/{pnid}", self._number, methods=["GET"]),
                Route("/{version}/{waba}/phone_numbers", self._waba_numbers, methods=["GET"]),
            ]
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.listen(128)  # connections queue from now on, before uvicorn's loop accepts them
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        assert self._server is not None and self._task is not None
        self._server.should_exit = True
        await self._task


def meta_error(code: int, message: str = "error", details: str = "details") -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details},
            "fbtrace_id": "AbCdEf",
        }
    }


def text_message(
    wamid: str,
    wa_id: str = "5511999990000",
    body: str = "hello",
    timestamp: int = 1_764_000_000,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "from": wa_id,
        "id": wamid,
        "timestamp": str(timestamp),
        "type": "text",
        "text": {"body": body},
        **extra,
    }


def change(
    phone_number_id: str,
    *,
    messages: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    contacts: list[dict[str, Any]] | None = None,
    display: str = "+55 11 4000-0000",
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": display, "phone_number_id": phone_number_id},
    }
    if messages is not None:
        value["contacts"] = (
            contacts
            if contacts is not None
            else [
                {"profile": {"name": "Maria"}, "wa_id": m["from"]} for m in messages if "from" in m
            ]
        )
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    return {"field": "messages", "value": value}


def envelope(*entries: list[dict[str, Any]], waba_id: str = "WABA1") -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": changes} for changes in entries],
    }


def raw(payload: dict[str, Any]) -> bytes:
    # Meta's style: compact, non-ASCII and "/" escaped (re-serialising would not match).
    return json.dumps(payload, separators=(",", ":")).replace("/", "\\/").encode()


def signed(body: bytes, secret: str) -> dict[str, str]:
    return {"X-Hub-Signature-256": sign(secret, body), "Content-Type": "application/json"}


async def eventually(check, timeout: float = 10.0) -> None:
    """Wait until ``check()`` is true (at most ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def counts(app) -> dict[str, int]:
    async with app.state.db.transaction(bypass_rls=True) as s:
        return {
            t.name: int(await s.scalar(select(func.count()).select_from(t)) or 0)
            for t in (
                numbers,
                webhook_deliveries,
                inbound_messages,
                status_updates,
                send_log,
                outbox,
            )
        }


async def events(app, event_type: str | None = None) -> list[dict[str, Any]]:
    async with app.state.db.transaction(bypass_rls=True) as s:
        rows = (await s.execute(select(outbox.c.event).order_by(outbox.c.id))).scalars().all()
    return [e for e in rows if event_type is None or e["type"] == event_type]


async def register(
    client,
    tokens,
    org: uuid.UUID,
    phone_number_id: str,
    *,
    app_secret: str | None = None,
    verify_token: str = "verify-me",
    access_token: str = "EAAG-token",
    waba_id: str | None = None,
) -> dict[str, Any]:
    body = {
        "phone_number_id": phone_number_id,
        "waba_id": waba_id or f"WABA{phone_number_id}",
        "display_phone_number": "+55 11 4000-0000",
        "access_token": access_token,
        "verify_token": verify_token,
    }
    if app_secret is not None:
        body["app_secret"] = app_secret
    r = await client.post(
        "/v1/whatsapp/numbers", json=body, headers=tokens.headers(organization_id=org)
    )
    assert r.status_code == 201, r.text
    return r.json()


async def connect(api, gtokens, sim, gateway, org: uuid.UUID, pnid: str) -> dict[str, Any]:
    """A number of the real simulator (its owner's token), then registered in the gateway
    (which asks the simulator whether that token controls it)."""
    await provision(
        sim, pnid, f"WABA{pnid}", SIM_TOKEN, app_secret=SIM_APP_SECRET, webhook_url=gateway[1]
    )
    return await register(
        api, gtokens, org, pnid, app_secret=SIM_APP_SECRET, access_token=SIM_TOKEN
    )


async def status_webhook(
    client, phone_number_id: str, secret: str, message_id: str, wamid: str, **envelope_kw: Any
) -> None:
    """Meta's ``sent`` status of our message ``message_id`` (echoed in
    ``biz_opaque_callback_data``), posted signed to the gateway's webhook."""
    body = raw(
        envelope(
            [
                change(
                    phone_number_id,
                    statuses=[
                        {
                            "id": wamid,
                            "status": "sent",
                            "timestamp": "1764000000",
                            "recipient_id": "5511999990000",
                            "biz_opaque_callback_data": message_id,
                        }
                    ],
                )
            ],
            **envelope_kw,
        )
    )
    r = await client.post("/webhooks/whatsapp", content=body, headers=signed(body, secret))
    assert r.status_code == 200, r.text
