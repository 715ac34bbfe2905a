"""The simulator's own process collects its oldest generation only between requests."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from pytake_meta_simulator import SimulatorSettings, arrivals, create_app
from pytake_meta_simulator.arrivals import NEVER, QuietCollector


@contextlib.asynccontextmanager
async def running(quiet: QuietCollector) -> AsyncIterator[None]:
    task = asyncio.create_task(quiet.run())
    await asyncio.sleep(0)  # it has set the thresholds
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_full_collections_wait_for_a_spell_without_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(arrivals, "QUIET_S", 0.05)
    before = gc.get_threshold()
    quiet = QuietCollector()
    async with running(quiet):
        assert gc.get_threshold() == (before[0], before[1], NEVER)
        for _ in range(15):  # requests keep arriving; the oldest generation has work
            quiet.last = time.monotonic()
            gc.collect(1)
            await asyncio.sleep(0.02)
        assert quiet.collections == 0
        await asyncio.sleep(0.2)  # quiet now
        assert quiet.collections == 1
        assert gc.get_count()[2] == 0
        await asyncio.sleep(0.2)  # nothing new to collect: nothing collected
        assert quiet.collections == 1
    assert gc.get_threshold() == before


async def test_load_that_never_pauses_still_gets_a_full_collection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(arrivals, "QUIET_S", 0.05)
    monkeypatch.setattr(arrivals, "FULL_EVERY_S", 0.2)
    quiet = QuietCollector()
    async with running(quiet):
        for _ in range(25):
            quiet.last = time.monotonic()
            gc.collect(1)
            await asyncio.sleep(0.02)
    assert quiet.collections >= 1


async def test_each_request_counts_as_an_arrival() -> None:
    app = create_app(SimulatorSettings(), quiet_gc=True)
    quiet = app.state.sim.quiet
    assert isinstance(quiet, QuietCollector)
    seen = quiet.last
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        assert (await client.get("/healthz")).status_code == 200
    assert quiet.last > seen
    assert create_app(SimulatorSettings()).state.sim.quiet is None  # tests' in-process apps


async def test_the_apps_lifespan_runs_it_and_gives_the_collector_back() -> None:
    before = gc.get_threshold()
    app = create_app(SimulatorSettings(), quiet_gc=True)
    async with app.router.lifespan_context(app):
        await asyncio.sleep(0.01)
        assert gc.get_threshold()[2] == NEVER
    assert gc.get_threshold() == before
