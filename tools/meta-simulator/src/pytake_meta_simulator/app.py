"""The simulator's FastAPI application factory.

Each app owns its state in memory (a fresh :class:`~pytake_meta_simulator.state.Store`)
by design, and one :class:`aiohttp.ClientSession` for outbound webhooks, opened at
startup and closed at shutdown (pending status deliveries are cancelled first).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from fastapi import FastAPI

from pytake_meta_simulator import control, graph, templates
from pytake_meta_simulator.arrivals import ArrivalStamp, QuietCollector
from pytake_meta_simulator.deps import SimulatorContext
from pytake_meta_simulator.errors import GraphError, graph_error_handler
from pytake_meta_simulator.settings import SimulatorSettings
from pytake_meta_simulator.webhooks import WebhookSender

logger = logging.getLogger(__name__)


def create_app(settings: SimulatorSettings | None = None, *, quiet_gc: bool = False) -> FastAPI:
    """``quiet_gc``: full garbage collections only between requests (see
    :class:`~pytake_meta_simulator.arrivals.QuietCollector`); it changes the process's
    collector, so only for a process of the simulator's own (``python -m``)."""
    settings = settings or SimulatorSettings()
    quiet = QuietCollector() if quiet_gc else None
    ctx = SimulatorContext(settings=settings, quiet=quiet)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        timeout = aiohttp.ClientTimeout(total=settings.webhook_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as client:
            ctx.attach(WebhookSender(settings, ctx.store, client))
            logger.info("meta simulator ready; default webhook url %s", settings.webhook_url)
            # Full collections skip what start-up created: they paused the loop for
            # 50-180 ms, bunching the acceptance times benchmarks measure pacing by.
            gc.collect()
            gc.freeze()
            lag = asyncio.create_task(ctx.lag.run())
            collector = asyncio.create_task(quiet.run()) if quiet is not None else None
            try:
                yield
            finally:
                lag.cancel()
                if collector is not None:
                    collector.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await collector  # its finally restores the thresholds
                await ctx.sender.aclose()
                ctx.attach(None)

    app = FastAPI(
        title="PyTake Meta simulator",
        description="Local stand-in for Meta's WhatsApp Cloud API and webhook sender.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.sim = ctx
    app.add_exception_handler(GraphError, graph_error_handler)
    app.add_middleware(ArrivalStamp, quiet=quiet)  # outermost: before any of the simulator's work

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # Order matters: fixed paths before the Graph API's ``/{version}/{id}`` catch-all.
    app.include_router(control.router)
    app.include_router(templates.control_router)
    app.include_router(templates.router)
    app.include_router(graph.router)
    return app
