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

import asyncio
import gc
import time
from collections import deque
from datetime import datetime
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from pytake_meta_simulator.state import utcnow

KEY = "arrived_at"


class ArrivalStamp:
    def __init__(self, app: ASGIApp, quiet: QuietCollector | None = None) -> None:
        self.app = app
        self.quiet = quiet

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})[KEY] = utcnow()
            if self.quiet is not None:
                self.quiet.last = time.monotonic()
        await self.app(scope, receive, send)


def arrived_at(state: Any) -> datetime | None:
    """The stamp of the request whose ``request.state`` this is (None when unstamped)."""
    stamp = getattr(state, KEY, None)
    return stamp if isinstance(stamp, datetime) else None


#: How often :class:`LoopLag` wakes, and the lateness it keeps (less is not kept).
LAG_PERIOD_S = 0.005
LAG_KEPT_S = 0.002


class LoopLag:
    """How late the simulator's event loop ran a timer, while it runs.

    A request's stamp above is taken one pass of the loop after its bytes were read; when
    the loop was busy (the simulator's own work, or the box's other processes holding the
    cores) the bytes waited in the socket and the stamp is late by about as much. Every
    ``LAG_PERIOD_S`` a timer notes how late it fired; lateness over ``LAG_KEPT_S`` is kept
    with its wall-clock time (the last 100,000), so a benchmark can tell, for a sliding
    second it finds too full, whether the simulator itself was late meanwhile. Each full
    garbage collection (one cause of such lateness) is kept too, with how long it took.
    """

    def __init__(self) -> None:
        self.late: deque[tuple[float, float]] = deque(maxlen=100_000)
        #: (when, epoch seconds; how long, seconds) of each full garbage collection.
        self.full_collections: deque[tuple[float, float]] = deque(maxlen=10_000)
        self.ticks = 0
        self._collecting = 0.0

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._collecting = time.perf_counter()
        else:
            took = time.perf_counter() - self._collecting
            self.full_collections.append((time.time() - took, took))

    async def run(self) -> None:
        period = LAG_PERIOD_S
        gc.callbacks.append(self._on_gc)
        try:
            while True:
                before = time.perf_counter()
                await asyncio.sleep(period)
                lag = time.perf_counter() - before - period
                self.ticks += 1
                if lag > LAG_KEPT_S:
                    self.late.append((time.time() - lag, lag))
        finally:
            gc.callbacks.remove(self._on_gc)

    def since(self, t: float) -> list[tuple[float, float]]:
        """(when the timer was due, epoch seconds; how late, seconds) from ``t`` on."""
        return [(at, lag) for at, lag in self.late if at >= t]

    def collections_since(self, t: float) -> list[tuple[float, float]]:
        """(when it began, epoch seconds; how long, seconds) of each full garbage
        collection from ``t`` on: the loop was held that long."""
        return [(at, took) for at, took in self.full_collections if at >= t]


#: A full collection waits for this long without a request (seconds) ...
QUIET_S = 1.0
#: ... or, under load that never pauses, this long since the last one.
FULL_EVERY_S = 300.0
#: Full collections' threshold while :class:`QuietCollector` runs: never reached.
NEVER = 1 << 30


class QuietCollector:
    """Full garbage collections only while no request is arriving (the simulator's own
    process only: :func:`~pytake_meta_simulator.app.create_app`'s ``quiet_gc``).

    Everything the simulator keeps (each message sent, each webhook) survives into the
    oldest generation, and CPython collects that generation whole, holding the event loop
    meanwhile: 46.6 ms, 15 s into a 2,000-send campaign benchmark (``campaign_send.py``
    with ``PYTAKE_SIMULATOR_QUIET_GC=false``), and the requests that arrived meanwhile were
    stamped together at its end. Meta's edge does not pause so. Young
    generations are still collected as usual (well under a millisecond); the full
    collection runs once no request arrived for ``QUIET_S``, or after ``FULL_EVERY_S``
    of load that never paused.
    """

    def __init__(self) -> None:
        self.last = time.monotonic()
        self.collections = 0

    async def run(self) -> None:
        before = gc.get_threshold()
        gc.set_threshold(before[0], before[1], NEVER)
        done = time.monotonic()
        try:
            while True:
                await asyncio.sleep(QUIET_S)
                now = time.monotonic()
                pending = gc.get_count()[2] > 0
                if pending and (now - self.last >= QUIET_S or now - done >= FULL_EVERY_S):
                    gc.collect()
                    self.collections += 1
                    done = time.monotonic()
        finally:
            gc.set_threshold(*before)
