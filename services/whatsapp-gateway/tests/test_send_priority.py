"""The send queue's priority per number: interactive, then automation, then campaign.

An agent's reply enqueued behind 10,000 campaign requests on the same number is sent
after at most the campaign sends already in flight (``ceil(throughput *
send_background_ahead_s)``, each holding a slot of the number's schedule), not after
the 10,000. Timings on the shared test box are noisy: the latency bound asserted is
generous, the count bound is exact.
"""

import asyncio
import math
import time
import uuid

import pytest
from sqlalchemy import text

from pytake_common.events import CloudEvent
from pytake_whatsapp_gateway.sending.dispatcher import Dispatcher

from .helpers import register
from .test_dispatcher import dispatching, until
from .test_sending import deliver, send_requested

#: Background requests in bulk (the consumer path is tested below; 10,000 consumer
#: transactions would only make the test slow).
BULK = text(
    """
    INSERT INTO send_queue (message_id, organization_id, number_id, recipient_key, request,
                            priority)
    SELECT id, CAST(:org AS uuid), CAST(:number AS uuid),
           encode(sha256(convert_to(CAST(:number AS text) || ':' || recipient, 'UTF8')), 'hex'),
           jsonb_build_object(
             'message_id', id, 'organization_id', CAST(:org AS text), 'conversation_id', NULL,
             'number_id', CAST(:number AS text), 'to', recipient, 'type', 'text',
             'text_body', CAST(:label AS text) || ' #' || i, 'preview_url', false,
             'context_wamid', NULL, 'payload', NULL, 'priority', CAST(:priority AS text)),
           CAST(:rank AS smallint)
    FROM (SELECT i, gen_random_uuid() AS id, '55' || lpad(i::text, 11, '0') AS recipient
          FROM generate_series(1, CAST(:n AS int)) i) g
    """
)


@pytest.fixture
async def number(client, tokens):
    return await register(client, tokens, uuid.uuid4(), "40100", app_secret="s")


async def queue(app, number, n, *, label="campaign", priority="campaign", rank=2) -> None:
    async with app.state.db.transaction(bypass_rls=True) as session:
        await session.execute(
            BULK,
            {
                "org": number["organization_id"],
                "number": number["id"],
                "n": n,
                "label": label,
                "priority": priority,
                "rank": rank,
            },
        )


def campaign_event(number, to, body) -> CloudEvent:
    event = send_requested(number, to=to, body=body)
    data = event.data | {"priority": "campaign", "recipient_id": str(uuid.uuid4())}
    return event.model_copy(update={"data": data})


def bodies(graph) -> list[str]:
    return [r["json"]["text"]["body"] for r in graph.requests]


async def test_an_agent_reply_goes_ahead_of_ten_thousand_campaign_sends(
    app, settings, graph, number
):
    await queue(app, number, 10_000)
    async with dispatching(app, settings, pair_interval_s=0) as (paced, sender):
        room = math.ceil(number["throughput_per_second"] * paced.send_background_ahead_s)
        await until(lambda: len(graph.requests) >= 40, within_s=20)  # draining steadily
        await asyncio.sleep(3)  # the campaign's pace, for the record (noisy on a shared box)
        times = [r["time"] for r in graph.requests[40:]]
        rate = (len(times) - 1) / (times[-1] - times[0])
        asked = time.monotonic()
        await deliver(app, paced, sender, send_requested(number, to="5511988887777", body="agent"))
        before = len(graph.requests)  # the reply is queued (committed) from here on
        await until(lambda: "agent" in bodies(graph), within_s=10)
        waited = graph.requests[bodies(graph).index("agent")]["time"] - asked
        ahead_of_it = bodies(graph).index("agent") - before
    print(
        f"campaign {rate:.1f}/s; agent reply: {ahead_of_it} campaign sends ahead of it, "
        f"{waited * 1000:.0f} ms"
    )
    # Only campaign sends already in flight when it was queued went first.
    assert ahead_of_it <= room
    assert waited < 1.0
    async with app.state.db.transaction(bypass_rls=True) as session:
        left = await session.scalar(text("SELECT count(*) FROM send_queue WHERE priority = 2"))
        await session.execute(text("DELETE FROM send_queue"))
    assert left > 9_000  # the campaign was still queued: the reply did not wait for it


async def test_automation_goes_before_campaign_and_background_stays_within_its_room(
    app, settings, graph, number
):
    await queue(app, number, 5)
    await queue(app, number, 2, label="automation", priority="automation", rank=1)
    # a background room of one: requests of a number go one at a time
    async with dispatching(app, settings, pair_interval_s=0, send_background_ahead_s=0.001):
        await until(lambda: len(graph.requests) >= 7, within_s=20)
    assert [b.split(" ")[0] for b in bodies(graph)] == ["automation"] * 2 + ["campaign"] * 5


async def test_a_campaign_request_from_conversations_is_queued_as_campaign(
    app, settings, graph, number
):
    async with dispatching(app, settings, pair_interval_s=0) as (paced, sender):
        event = campaign_event(number, "5511900001111", "hello from a campaign")
        await deliver(app, paced, sender, event, event)  # redelivered: queued once
        await until(lambda: len(graph.requests) >= 1, within_s=10)
    assert bodies(graph) == ["hello from a campaign"]


async def test_a_draining_campaign_is_taken_a_few_sends_at_a_time(
    app, settings, graph, number, monkeypatch
):
    """Background requests are looked for at most every third of the room's seconds, not
    once per send ending (a transaction per send): a campaign at its pace is taken a few
    at a time, and still all of it goes."""
    takes = []
    take = Dispatcher._take

    async def counted(self, *, interactive: bool, background: bool):
        taken = await take(self, interactive=interactive, background=background)
        takes.append(taken[0])
        return taken

    monkeypatch.setattr(Dispatcher, "_take", counted)
    n = 160
    await queue(app, number, n)
    async with dispatching(app, settings, pair_interval_s=0):
        await until(lambda: len(graph.requests) >= n, within_s=30)
    assert sorted(bodies(graph), key=lambda b: int(b.split("#")[1])) == [
        f"campaign #{i}" for i in range(1, n + 1)
    ]
    assert len(takes) <= n / 2, takes
