"""When each request reached the simulator, before any of its own work.

Meta counts a number's throughput where a call reaches its edge. The simulator
shares the box with the platform it serves: between a request's arrival and its
acceptance (routing, parsing, validation, the store's lock) a loaded machine adds
tens of milliseconds that Meta's edge would not, and a benchmark counting calls
per sliding second by acceptance time measures the simulator's queueing as well
as the sender's pacing. This outermost ASGI layer stamps every HTTP request as it
first runs (one pass of the event loop after its bytes were read) in
``scope["state"]["arrived_at"]``; sends record it as ``received_at``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from pytake_meta_simulator.state import utcnow

KEY = "arrived_at"


class ArrivalStamp:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})[KEY] = utcnow()
        await self.app(scope, receive, send)


def arrived_at(state: Any) -> datetime | None:
    """The stamp of the request whose ``request.state`` this is (None when unstamped)."""
    stamp = getattr(state, KEY, None)
    return stamp if isinstance(stamp, datetime) else None
