"""The send dispatcher's wake-ups (sending/dispatcher.py), with a fallback poll of
30 s: whatever is sent within seconds was woken by a NOTIFY, by the end of one of
its sends, or by the due time of a requeued request, not by polling."""

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from contextlib import aclosing

import pytest

from pytake_whatsapp_gateway.app import graph_http_client
from pytake_whatsapp_gateway.sending.dispatcher import Dispatcher
from pytake_whatsapp_gateway.sending.sender import Sender

from .helpers import register
from .test_sending import deliver, send_requested

SLOW_POLL_S = 30.0


@contextlib.asynccontextmanager
async def dispatching(app, settings, **changes):
    """A running dispatcher (listening) whose fallback poll is far beyond the tests."""
    quiet = settings.model_copy(update={"send_poll_interval_s": SLOW_POLL_S, **changes})
    async with (
        graph_http_client(quiet) as http,
        aclosing(Sender(quiet, app.state.db, app.state.secret_box, http)) as sender,
    ):
        dispatcher = Dispatcher(quiet, app.state.db, sender)
        stop = asyncio.Event()
        task = asyncio.create_task(dispatcher.run(stop))
        try:
            await until(lambda: dispatcher.listening, within_s=10)
            await asyncio.sleep(0.1)  # its first look at the (empty) queue is done
            yield quiet, sender
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)


@pytest.fixture
async def running(app, settings):
    async with dispatching(app, settings) as started:
        yield started


@pytest.fixture
async def number(client, tokens):
    return await register(client, tokens, uuid.uuid4(), "300", app_secret="s")


async def until(condition: Callable[[], bool], within_s: float) -> None:
    async with asyncio.timeout(within_s):
        while True:
            if condition():
                return
            await asyncio.sleep(0.02)


async def sent_count(graph, n: int, within_s: float) -> None:
    await until(lambda: len(graph.requests) >= n, within_s)


async def test_a_new_request_wakes_the_dispatcher(app, graph, number, running):
    settings, sender = running
    await deliver(app, settings, sender, send_requested(number, to="5511900000001"))
    await sent_count(graph, 1, within_s=5)


async def test_the_next_message_to_a_customer_goes_when_the_previous_one_ends(
    app, graph, number, running
):
    settings, sender = running
    to = "5511900000002"
    events = [send_requested(number, to=to, body=f"#{i}") for i in range(3)]
    await deliver(app, settings, sender, *events)
    await sent_count(graph, 3, within_s=5)
    assert [r["json"]["text"]["body"] for r in graph.requests] == ["#0", "#1", "#2"]


async def test_a_request_requeued_by_the_pair_rate_goes_when_due(app, settings, graph, number):
    async with dispatching(app, settings, pair_interval_s=1.0, pair_burst=1) as (paced, sender):
        to = "5511900000003"
        await deliver(app, paced, sender, *(send_requested(number, to=to) for _ in range(2)))
        await sent_count(graph, 2, within_s=8)
    first, second = graph.requests
    assert second["time"] - first["time"] >= 0.9  # the pair rate held it back ...
