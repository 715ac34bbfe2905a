"""Send-queue leases (sending/dispatcher.py): short, renewed while a send lives.

A killed gateway's requests go back to the queue within a lease (not the 300 s of
before, which stalled a campaign's number for five minutes after a restart), a live
send longer than the lease keeps its request, and when a lease does end under a live
send the request is still sent once: exactly-once rests on the sender's advisory lock
and claim, not on the lease.
"""

import asyncio
import os
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from pytake_whatsapp_gateway.app import graph_http_client
from pytake_whatsapp_gateway.sending.dispatcher import Dispatcher
from pytake_whatsapp_gateway.sending.sender import Sender

from .helpers import events, register, status_webhook
from .test_dispatcher import dispatching, until
from .test_send_priority import queue
from .test_sending import deliver, send_requested

SENT = "pytake.whatsapp.message.sent.v1"
FAILED = "pytake.whatsapp.message.failed.v1"
#: The killed dispatcher's lease (the default is 15 s).
LEASE_S = 4.0


@pytest.fixture
async def number(client, tokens):
    return await register(client, tokens, uuid.uuid4(), "50700", app_secret="s")


async def queue_rows(app) -> list[Any]:
    async with app.state.db.transaction(bypass_rls=True) as s:
        rows = await s.execute(
            text(
                "SELECT seq, coalesce(taken_until > clock_timestamp(), false) AS leased"
                " FROM send_queue"
            )
        )
        return list(rows.mappings())


async def until_true(check: Callable[[], Awaitable[object]], within_s: float) -> None:
    async with asyncio.timeout(within_s):
        while True:
            if await check():
                return
            await asyncio.sleep(0.1)


async def queue_empty(app) -> bool:
    return not await queue_rows(app)


def called(graph) -> Counter[str]:
    """Graph API calls per message id (echoed in ``biz_opaque_callback_data``)."""
    return Counter(r["json"]["biz_opaque_callback_data"] for r in graph.requests)


def counting(sender) -> list[uuid.UUID]:
    """The message ids ``sender`` is asked to send (its ``send`` wrapped)."""
    asked: list[uuid.UUID] = []
    send = sender.send

    async def recorded(out, **kwargs):
        asked.append(out.message_id)
        return await send(out, **kwargs)

    sender.send = recorded
    return asked


async def test_a_killed_gateways_sends_go_to_a_new_dispatcher_within_the_lease_once_each(
    app, settings, graph, number, client
):
    """The dispatcher runs as a process of its own and is SIGKILLed with campaign sends
    in flight (its leases left taken, its advisory locks dropped with its connections);
    a new dispatcher takes them once the (default) lease ends. Meta's status webhooks
    (emulated here: one per call the Graph API got, echoing our id) tell which of the
    dead process's claims reached Meta; the others are sent once no status came within
    the confirm window. Every request is sent exactly once: none skipped, none twice.
    (The lease is shortened to LEASE_S for the suite's time; test_a_live_send_longer_
    than_the_lease_keeps_its_request covers renewal.)"""
    n = 40
    await queue(app, number, n)
    graph.delay_s = 0.5  # the dead process's calls are in flight when it dies
    env = {
        **os.environ,
        "PYTAKE_ENV": "test",
        "PYTAKE_OWN_DATABASE_URL": settings.own_database_url,
        "PYTAKE_STATE_DIR": str(settings.state_dir),
        "PYTAKE_SECRET_KEY": settings.secret,
        "PYTAKE_GRAPH_API_BASE": graph.base_url,
        "PYTAKE_GC_FREEZE": "false",
        "PYTAKE_SEND_LEASE_S": str(LEASE_S),
    }
    script = Path(__file__).with_name("dispatch_process.py")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        await asyncio.wait_for(proc.stdout.readline(), 30)
        await until(lambda: len(graph.requests) >= 14, within_s=30)
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    killed_at = time.monotonic()
    await asyncio.sleep(0.5)  # what the dead process wrote has reached the fake Graph API
    calls_before = len(graph.requests)
    left = await queue_rows(app)
    assert any(r["leased"] for r in left), "nothing was in flight at the kill"
    graph.delay_s = 0.0
    # Meta's first status of each message it has, as it would come (the answers in
    # flight were lost with the process; the status still names our message id).
    for message_id in list(called(graph)):
        await status_webhook(
            client,
            number["phone_number_id"],
            "s",
            message_id,
            f"wamid.meta-{message_id}",
            waba_id=number["waba_id"],
        )

    async with dispatching(app, settings, send_poll_interval_s=0.2, send_confirm_window_s=2.0):
        # The lease and a noisy box's margin: the 300 s of before stalled the number's
        # campaign sends here for five minutes.
        await until_true(lambda: queue_empty(app), within_s=LEASE_S + 30)
    drained_in = time.monotonic() - killed_at

    outcomes = await events(app, SENT) + await events(app, FAILED)
    per_message = Counter(e["data"]["message_id"] for e in outcomes)
    assert len(per_message) == n and set(per_message.values()) == {1}  # none skipped, none twice
    assert await events(app, FAILED) == []
    assert set(called(graph).values()) == {1}  # no message reached Meta twice
    assert len(called(graph)) == n
    print(
        f"killed with {sum(r['leased'] for r in left)} leases taken, {calls_before} calls "
        f"made; drained {drained_in:.1f} s"
    )


async def test_a_live_send_longer_than_the_lease_keeps_its_request(app, settings, graph, number):
    """Its dispatcher renews the lease: another dispatcher polling the queue meanwhile
    never takes the request."""
    lease = 1.2
    graph.delay_s = 3.5  # about three leases
    async with dispatching(app, settings, send_lease_s=lease) as (first, sender):
        await deliver(app, first, sender, send_requested(number, to="5511900000101"))
        await until(lambda: len(graph.requests) == 1, within_s=10)
        async with dispatching(app, settings, send_lease_s=lease, send_poll_interval_s=0.1) as (
            _,
            other,
        ):
            asked = counting(other)
            await until_true(lambda: events(app, SENT), within_s=15)
            await asyncio.sleep(3 * lease)  # and nothing after it either
    assert asked == []
    assert len(graph.requests) == 1
    assert len(await events(app, SENT)) == 1 and await events(app, FAILED) == []
    assert await queue_rows(app) == []


async def test_a_lease_that_ends_under_a_live_send_still_sends_it_once(
    app, settings, graph, number, monkeypatch
):
    """Its dispatcher cannot renew (the database unreachable for it): the lease ends,
    another dispatcher takes the request, waits for the live attempt's advisory lock
    and then finds it sent."""

    cut_off: set[object] = set()  # the senders of the dispatchers that cannot renew
    renew = Dispatcher.renew_leases

    async def renew_unless_cut_off(self: Dispatcher) -> int:
        if self.sender in cut_off:
            raise ConnectionRefusedError("database unreachable")
        return await renew(self)

    lease = 1.2
    graph.delay_s = 3.5
    monkeypatch.setattr(Dispatcher, "renew_leases", renew_unless_cut_off)
    async with dispatching(app, settings, send_lease_s=lease) as (first, sender):
        cut_off.add(sender)
        await deliver(app, first, sender, send_requested(number, to="5511900000102"))
        await until(lambda: len(graph.requests) == 1, within_s=10)
        async with dispatching(app, settings, send_lease_s=lease, send_poll_interval_s=0.1) as (
            _,
            other,
        ):
            asked = counting(other)
            await until(lambda: len(asked) > 0, within_s=10)  # taken while the send lives
            await until_true(lambda: queue_empty(app), within_s=15)
    assert len(asked) == 1
    assert len(graph.requests) == 1
    assert len(await events(app, SENT)) == 1 and await events(app, FAILED) == []


async def test_a_renewal_extends_taken_requests_only(app, settings, graph, number):
    """A request its send released meanwhile (due later, e.g. by the pair rate) stays
    released: the renewal would otherwise hold it for a whole lease. One whose lease
    ran out while its send lived is taken again."""
    async with (
        graph_http_client(settings) as http,
        aclosing(Sender(settings, app.state.db, app.state.secret_box, http)) as sender,
    ):
        await renewals(app, settings, sender, number)
    assert graph.requests == []


async def renewals(app, settings, sender, number) -> None:
    await deliver(app, settings, sender, send_requested(number, to="5511900000103"))
    [row] = await queue_rows(app)
    dispatcher = Dispatcher(settings, app.state.db, sender)
    in_flight = asyncio.get_running_loop().create_future()
    dispatcher._leased[in_flight] = row["seq"]  # as if its send were in flight
    try:
        assert await dispatcher.renew_leases() == 0  # released (never taken): left alone
        assert await queue_rows(app) == [{"seq": row["seq"], "leased": False}]
        async with app.state.db.transaction(bypass_rls=True) as s:
            await s.execute(text("UPDATE send_queue SET taken_until = clock_timestamp()"))
        assert await dispatcher.renew_leases() == 1
        assert await queue_rows(app) == [{"seq": row["seq"], "leased": True}]
    finally:
        in_flight.cancel()


async def test_a_stopping_dispatcher_hands_back_the_leases_of_sends_it_leaves(
    app, settings, graph, number
):
    """Stopping waits ``stop_wait_s`` (10 s; 1 s here) for the sends in flight; the
    lease of one still in flight then is handed back (another replica need not wait
    for the lease to end), while the send itself is still in flight."""
    graph.delay_s = 4.0
    slow = settings.model_copy(update={"send_timeout_s": 15.0})
    async with (
        graph_http_client(slow) as http,
        aclosing(Sender(slow, app.state.db, app.state.secret_box, http)) as sender,
    ):
        await deliver(app, slow, sender, send_requested(number, to="5511900000104"))
        dispatcher = Dispatcher(slow, app.state.db, sender)
        dispatcher.stop_wait_s = 1.0
        stop = asyncio.Event()
        running = asyncio.create_task(dispatcher.run(stop))
        await until(lambda: len(graph.requests) == 1, within_s=10)
        assert [r["leased"] for r in await queue_rows(app)] == [True]
        stop.set()
        await asyncio.wait_for(running, 15)
        in_flight = list(dispatcher._tasks)
        assert len(in_flight) == 1 and not in_flight[0].done()
        assert [r["leased"] for r in await queue_rows(app)] == [False]  # handed back
        await asyncio.wait(in_flight, timeout=5)  # it ends: sent, the request settled
    assert await queue_rows(app) == []
    assert len(graph.requests) == 1 and len(await events(app, SENT)) == 1
