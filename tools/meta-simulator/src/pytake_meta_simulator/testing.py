"""Test helpers: a real webhook receiver that records what the simulator posts.

:class:`Receiver` is a minimal ASGI app; :func:`serve` runs any ASGI app with a
real uvicorn server on a free ``127.0.0.1`` port, so webhooks travel over real
HTTP and tests see the exact bytes and headers that were on the wire.
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

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
WAIT_S = 5.0
SHUTDOWN_S = 1  # uvicorn takes whole seconds


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def signature_valid(self, app_secret: str) -> bool:
        """True when ``X-Hub-Signature-256`` is the HMAC of ``app_secret`` over the raw body."""
        digest = hmac.new(app_secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("x-hub-signature-256", ""), f"sha256={digest}")


@dataclass
class Receiver:
    """An ASGI app recording every request; it answers ``status_code``."""

    url: str = ""
    status_code: int = 200
    received: list[Received] = field(default_factory=list)
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition, repr=False)

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        async with self._arrived:
            self.received.append(Received(scope["path"], headers, body))
            self._arrived.notify_all()
        await send(
            {
                "type": "http.response.start",
                "status": self.status_code,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})

    async def wait_for(self, count: int) -> list[Received]:
        """Wait (up to ``WAIT_S``) until ``count`` requests arrived; return them all."""
        async with asyncio.timeout(WAIT_S), self._arrived:
            await self._arrived.wait_for(lambda: len(self.received) >= count)
        return list(self.received)

    def reset(self) -> Receiver:
        self.status_code = 200
        self.received.clear()
        return self

    def statuses(self) -> list[dict[str, Any]]:
        """Every status object received, in arrival order, across all entries and changes."""
        out: list[dict[str, Any]] = []
        for request in self.received:
            for entry in request.json()["entry"]:
                for change in entry["changes"]:
                    out.extend(change["value"].get("statuses", []))
        return out


@asynccontextmanager
async def serve(app: Any, path: str = "/webhooks/whatsapp") -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port; yield ``http://127.0.0.1:<port><path>``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            # at the end of a test, a request still held (a slow answer the test set
            # up) is cancelled instead of waited for
            timeout_graceful_shutdown=SHUTDOWN_S,
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: _true(server.started))
        yield f"http://127.0.0.1:{port}{path}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def _true(value: bool) -> bool:
    return value


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``check`` every 10 ms until it is true; fail after ``WAIT_S``."""
    for _ in range(int(WAIT_S / 0.01)):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def provision(
    sim: Any, phone_number_id: str, waba_id: str, access_token: str, **extra: Any
) -> None:
    """Create (or replace) a number at the simulator, owned by ``access_token``.

    ``sim`` is an HTTP client on the simulator (``httpx.AsyncClient``); ``extra`` sets
    the other fields of ``POST /_sim/numbers`` (``app_secret``, ``webhook_url``, ...).
    """
    body = {
        "phone_number_id": phone_number_id,
        "waba_id": waba_id,
        "display_phone_number": f"+1 555 {phone_number_id}",
        "access_token": access_token,
        "app_secret": f"app-secret-of-{access_token}",
        **extra,
    }
    r = await sim.post("/_sim/numbers", json=body)
    assert r.status_code == 200, r.text
