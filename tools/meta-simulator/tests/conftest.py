"""Fixtures: the simulator behind ``httpx.ASGITransport`` and real webhook receivers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from pytake_meta_simulator import SimulatorSettings, create_app
from pytake_meta_simulator.testing import Receiver, serve

NUMBER: dict[str, str] = {
    "phone_number_id": "106540352242922",
    "waba_id": "102290129340398",
    "display_phone_number": "15550783881",
    "access_token": "EAAsimulatedtoken123",
    "app_secret": "3f1c0ffee-app-secret",
}
STATUS_DELAY_S = 0.01


@pytest.fixture(scope="session")
async def _receivers() -> AsyncIterator[tuple[Receiver, Receiver]]:
    """Two real receivers (uvicorn) for the whole session: starting one per test is slow."""
    first, second = Receiver(), Receiver()
    async with serve(first) as first_url, serve(second) as second_url:
        first.url, second.url = first_url, second_url
        yield first, second


@pytest.fixture
def receiver(_receivers: tuple[Receiver, Receiver]) -> Receiver:
    """The default webhook receiver, emptied for this test."""
    return _receivers[0].reset()


@pytest.fixture
def other_receiver(_receivers: tuple[Receiver, Receiver]) -> Receiver:
    """A second receiver, for per-number webhook URLs."""
    return _receivers[1].reset()


@pytest.fixture
async def sim(receiver: Receiver) -> AsyncIterator[httpx.AsyncClient]:
    """The simulator app (lifespan running) behind an in-process ASGI client."""
    app = create_app(SimulatorSettings(webhook_url=receiver.url, status_delay_s=STATUS_DELAY_S))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://sim.test") as client,
    ):
        yield client


@pytest.fixture
async def number(sim: httpx.AsyncClient) -> dict[str, str]:
    """A registered number (its registration dict, secrets included)."""
    resp = await sim.post("/_sim/numbers", json=NUMBER)
    assert resp.status_code == 200, resp.text
    return dict(NUMBER)


@pytest.fixture
def auth(number: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {number['access_token']}"}
