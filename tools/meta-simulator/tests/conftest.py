"""Fixtures: the simulator behind ``httpx.ASGITransport`` and a real webhook receiver.

The receiver is a tiny ASGI app served by a real uvicorn server on a free
127.0.0.1 port, so the simulator's webhooks travel over real HTTP and the
tests see the exact bytes and headers that were put on the wire.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from pytake_meta_simulator import SimulatorSettings, create_app

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

NUMBER: dict[str, str] = {
    "phone_number_id": "106540352242922",
    "waba_id": "102290129340398",
    "display_phone_number": "15550783881",
    "access_token": "EAAsimulatedtoken123",
    "app_secret": "3f1c0ffee-app-secret",
}
AUTH = {"Authorization": f"Bearer {NUMBER['access_token']}"}
STATUS_DELAY_S = 0.01


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def signature_valid(self, secret: str) -> bool:
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("x-hub-signature-256", ""), expected)


@dataclass
class Receiver:
    """Records every request; answers ``status_code``."""

    url: str = ""
    status_code: int = 200
    received: list[Received] = field(default_factory=list)

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.received.append(Received(scope["path"], headers, body))
        await send(
            {
                "type": "http.response.start",
                "status": self.status_code,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                await asyncio.sleep(0.005)
        return list(self.received)

    def statuses(self) -> list[dict[str, Any]]:
        """Every status object received, in arrival order, across all entries/changes."""
        out: list[dict[str, Any]] = []
        for req in self.received:
            for entry in req.json()["entry"]:
                for change in entry["changes"]:
                    out.extend(change["value"].get("statuses", []))
        return out


@asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` with a real uvicorn server on a free port; yield the webhook URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    async with asyncio.timeout(5):
        while not server.started:
            await asyncio.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{port}/webhooks/whatsapp"
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    async with serve(rec) as url:
        rec.url = url
        yield rec


@pytest.fixture
async def other_receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    async with serve(rec) as url:
        rec.url = url
        yield rec


@pytest.fixture
async def sim(receiver: Receiver) -> AsyncIterator[httpx.AsyncClient]:
    """The simulator app (lifespan running) behind an in-process ASGI client."""
    app = create_app(SimulatorSettings(webhook_url=receiver.url, status_delay_s=STATUS_DELAY_S))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://sim.test"
        ) as client,
    ):
        yield client


@pytest.fixture
async def number(sim: httpx.AsyncClient) -> dict[str, str]:
    resp = await sim.post("/_sim/numbers", json=NUMBER)
    assert resp.status_code == 200, resp.text
    return NUMBER


@pytest.fixture
def auth() -> dict[str, str]:
    return dict(AUTH)
