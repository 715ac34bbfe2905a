"""What only the platform may ask the gateway: ``/metrics`` and ``/readyz``.

They are answered

* on the internal listener, ``PYTAKE_GATEWAY_INTERNAL_PORT`` (off when 0, the
  default; deployments set it, e.g. 9000, and scrape metrics there: that port
  is never behind the Ingress), which serves nothing else but ``/healthz``;
* on the public port only to a caller on the same host that came through no
  proxy: a loopback peer and no ``X-Forwarded-For``, ``Forwarded`` or
  ``X-Real-IP`` header (local tools, a container's own health check). A sidecar
  or ingress always adds one of those, so its clients are refused.

Anyone else gets 404, as for a path that does not exist. ``/healthz`` stays
public on both; ``/docs`` and ``/openapi.json`` are the public API's
documentation (only routed paths, see :mod:`pytake_api_gateway.openapi`). The
services' own ``/metrics``, ``/readyz``, ``/docs`` and ``/openapi.json`` are
never reachable through the gateway: it forwards only its routing table's
prefixes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator, Iterator

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from pytake_common.errors import problem

INTERNAL_PATHS = frozenset({"/metrics", "/readyz"})
#: Served on the internal listener besides :data:`INTERNAL_PATHS`.
_PROBES = frozenset({"/healthz"})
_FORWARDING = frozenset({b"x-forwarded-for", b"forwarded", b"x-real-ip"})


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def from_this_host(scope: Scope) -> bool:
    """A loopback peer that came through no proxy."""
    client = scope.get("client")
    if not client or not _is_loopback(client[0]):
        return False
    return not any(name in _FORWARDING for name, _ in scope["headers"])


async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
    await problem(404, "not_found", "Not found", "no such resource")(scope, receive, send)


class InternalOnly:
    """Between the edge dispatcher and the gateway's own endpoints."""

    def __init__(self, app: ASGIApp, internal_port: int) -> None:
        self.app = app
        self.internal_port = internal_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            path = scope["path"]
            if self.on_internal_listener(scope):
                if path not in INTERNAL_PATHS and path not in _PROBES:
                    await self._refuse(scope, receive, send)
                    return
            elif path in INTERNAL_PATHS and not from_this_host(scope):
                await self._refuse(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def on_internal_listener(self, scope: Scope) -> bool:
        server = scope.get("server")
        return bool(self.internal_port) and server is not None and server[1] == self.internal_port

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await not_found(scope, receive, send)


class _QuietServer(uvicorn.Server):
    """A second listener in the running process: the main server owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def internal_listener(app: ASGIApp, host: str, port: int) -> AsyncIterator[None]:
    """Serve ``app`` on ``host:port`` too, while the context is open (nothing if port is 0)."""
    if not port:
        yield
        return
    config = uvicorn.Config(
        app, host=host, port=port, lifespan="off", log_config=None, access_log=False
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # it could not start (port taken): fail the start-up
            raise RuntimeError(f"the internal listener on port {port} did not start")
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await task
