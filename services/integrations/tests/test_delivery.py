"""Deliveries to a reference receiver (a real HTTP server on loopback)."""

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from sqlalchemy import func, select, update

from pytake_common.mechanics import outbox
from pytake_integrations.delivery import DeliveryWorker
from pytake_integrations.signing import verify
from pytake_integrations.tables import deliveries

from .helpers import Receiver, again, deliver, inbound, make_endpoint, rows


@pytest.fixture
async def receiver():
    made: list[Receiver] = []

    async def start(answer=None) -> Receiver:
        r = await (Receiver(answer) if answer else Receiver()).start()
        made.append(r)
        return r

    yield start
    for r in made:
        await r.stop()


@pytest.fixture
async def worker(app, settings):
    made: list[DeliveryWorker] = []

    def build(**overrides) -> DeliveryWorker:
        w = DeliveryWorker(
            settings.model_copy(update=overrides), app.state.db, app.state.secret_box
        )
        made.append(w)
        return w

    yield build
    for w in made:
        await w.close()


async def _emitted(app, suffix: str) -> list[dict]:
    async with app.state.db.transaction(bypass_rls=True) as s:
        events = (await s.execute(select(outbox.c.event))).scalars().all()
    return [e for e in events if e["type"].endswith(suffix)]


async def _due_now(app) -> None:
    """Time travel: every pending delivery is due."""
    async with app.state.db.transaction(bypass_rls=True) as s:
        await s.execute(update(deliveries).values(next_attempt_at=func.now()))


async def test_a_signed_message_received_reaches_the_receiver_once(
    app, settings, client, tokens, receiver, worker
):
    org = uuid.uuid4()
    hook = await receiver()
    endpoint = await make_endpoint(client, tokens, org, hook.url)
    conversation = uuid.uuid4()
    event = inbound(org, conversation)
    # the same event twice, and the same fact under another event id: one delivery
    await deliver(app, settings, event, event, again(event))
    await worker().drain()

    assert len(hook.got) == 1
    got = hook.got[0]
    assert hook.verified(endpoint["secret"]) == [True]
    assert not verify(got.body, got.headers["PyTake-Signature"], "whsec_wrong")
    body = json.loads(got.body)
    assert body["type"] == "message.received"
    assert body["version"] == 1
    assert body["organization_id"] == str(org)
    assert body["data"]["message_id"] == event.data["message_id"]
    assert body["data"]["conversation_id"] == str(conversation)
    assert got.headers["PyTake-Event-Id"] == body["id"]
    assert got.headers["PyTake-Event-Type"] == "message.received"
    [row] = await rows(app)
    assert got.headers["PyTake-Delivery-Id"] == str(row["id"])
    assert row["status"] == "succeeded"
    assert row["attempts"] == 1
    assert row["response_status"] == 200
    assert row["response_body"] == "thanks"
    assert row["latency_ms"] is not None

    log = await client.get(
        f"/v1/webhook-endpoints/{endpoint['id']}/deliveries",
        headers=tokens.headers(organization_id=org, role="viewer"),
    )
    assert log.status_code == 200
    [entry] = log.json()["items"]
    assert entry["status"] == "succeeded"
    assert entry["response_status"] == 200


async def test_unsubscribed_outbound_and_disabled_endpoints_get_nothing(
    app, settings, client, tokens
):
    org = uuid.uuid4()
    await make_endpoint(client, tokens, org, "https://a.example.com/", ("contact.created",))
    off = await make_endpoint(client, tokens, org, "https://b.example.com/")
    await client.patch(
        f"/v1/webhook-endpoints/{off['id']}",
        json={"status": "disabled"},
        headers=tokens.headers(organization_id=org),
    )
    outbound = inbound(org, uuid.uuid4())
    outbound.data["direction"] = "outbound"
    await deliver(app, settings, inbound(org, uuid.uuid4()), outbound)
    assert await rows(app) == []


async def test_during_a_rotation_both_secrets_sign(app, settings, client, tokens, receiver, worker):
    org = uuid.uuid4()
    hook = await receiver()
    endpoint = await make_endpoint(client, tokens, org, hook.url)
    rotated = await client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret",
        json={"overlap_s": 600},
        headers=tokens.headers(organization_id=org),
    )
    await deliver(app, settings, inbound(org, uuid.uuid4()))
    await worker().drain()
    assert hook.verified(endpoint["secret"]) == [True]
    assert hook.verified(rotated.json()["secret"]) == [True]
    assert hook.got[0].headers["PyTake-Signature"].count("v1=") == 2


async def test_5xx_is_retried_with_backoff_then_delivered(
    app, settings, client, tokens, receiver, worker
):
    async def flaky(_, n):
        return web.Response(status=503 if n < 3 else 204)

    org = uuid.uuid4()
    hook = await receiver(flaky)
    endpoint = await make_endpoint(client, tokens, org, hook.url)
    await deliver(app, settings, inbound(org, uuid.uuid4()))
    await worker(retry_base_s=10, retry_max_delay_s=60).drain()
    [row] = await rows(app)
    assert row["status"] == "pending"
    assert row["attempts"] == 1
    assert row["response_status"] == 503
    delay = (row["next_attempt_at"] - row["last_attempt_at"]).total_seconds()
    assert 5 <= delay <= 10  # base 10 s, equal jitter: [base/2, base]
    await worker(retry_base_s=10, retry_max_delay_s=60).drain()
    assert len(hook.got) == 1  # not due yet
    await _due_now(app)
    w = worker()
    for _ in range(40):
        await w.drain()
        if (await rows(app))[0]["status"] != "pending":
            break
        await asyncio.sleep(0.05)
    [row] = await rows(app)
    assert row["status"] == "succeeded"
    assert row["attempts"] == 3
    # the same delivery id every attempt (the receiver's dedupe key), new signatures
    assert {r.headers["PyTake-Delivery-Id"] for r in hook.got} == {str(row["id"])}
    assert [r.headers["PyTake-Attempt"] for r in hook.got] == ["1", "2", "3"]
    assert hook.verified(endpoint["secret"]) == [True, True, True]


async def test_429_waits_for_retry_after(app, settings, client, tokens, receiver, worker):
    async def busy(_, __):
        return web.Response(status=429, headers={"Retry-After": "120"})

    org = uuid.uuid4()
    hook = await receiver(busy)
    await make_endpoint(client, tokens, org, hook.url)
    await deliver(app, settings, inbound(org, uuid.uuid4()))
    await worker(retry_max_delay_s=3600).drain()
    [row] = await rows(app)
    assert row["status"] == "pending"
    delay = (row["next_attempt_at"] - row["last_attempt_at"]).total_seconds()
    assert 119 <= delay <= 121
    await worker().drain()
    assert len(hook.got) == 1  # not due yet


async def test_4xx_fails_without_retry_and_the_retry_window_ends_retries(
    app, settings, client, tokens, receiver, worker
):
    async def refuse(_, __):
        return web.Response(status=400, text="x" * 5000)

    org = uuid.uuid4()
    hook = await receiver(refuse)
    await make_endpoint(client, tokens, org, hook.url)
    await deliver(app, settings, inbound(org, uuid.uuid4()))
    await worker().drain()
    [row] = await rows(app)
    assert row["status"] == "failed"
    assert row["attempts"] == 1
    assert len(row["response_body"]) == 1024  # truncated

    async def down(_, __):
        return web.Response(status=500)

    hook.answer = down
    await deliver(app, settings, inbound(org, uuid.uuid4()))
    await worker(retry_window_s=0.01).drain()
    assert (await rows(app))[1]["status"] == "failed"


async def test_410_gone_disables_the_endpoint_with_an_event(
    app, settings, client, tokens, receiver, worker
):
    async def gone(_, __):
        return web.Response(status=410)

    org = uuid.uuid4()
    hook = await receiver(gone)
    endpoint = await make_endpoint(client, tokens, org, hook.url)
    await deliver(app, settings, inbound(org, uuid.uuid4()))
    await worker().drain()
    got = await client.get(
        f"/v1/webhook-endpoints/{endpoint['id']}", headers=tokens.headers(organization_id=org)
    )
    assert got.json()["status"] == "disabled"
    assert got.json()["disabled_reason"] == "the receiver answered 410 Gone"
    [disabled] = await _emitted(app, "endpoint.disabled.v1")
    assert disabled["data"]["reason"] == "the receiver answered 410 Gone"
    # nothing more is queued or sent to it
    await deliver(app, settings, inbound(org, uuid.uuid4()))
    await worker().drain()
    assert len(hook.got) == 1


async def test_a_day_of_failures_disables_the_endpoint_and_replay_resends(
    app, settings, client, tokens, receiver, worker
):
    # The receiver fails until the endpoint is disabled (a fixed count of failures raced
    # the auto-disable window on a slow box: the fourth attempt could succeed first).
    failing = True

    async def down(_, n):
        return web.Response(status=500 if failing else 200)

    org = uuid.uuid4()
    headers = tokens.headers(organization_id=org)
    hook = await receiver(down)
    endpoint = await make_endpoint(client, tokens, org, hook.url)
    await deliver(app, settings, inbound(org, uuid.uuid4()))
    # "a day" of failures shortened: 3 failed attempts over 0.1 s
    w = worker(auto_disable_after_s=0.1, auto_disable_min_failures=3, retry_window_s=0.5)
    for _ in range(40):
        await w.drain()
        state = await client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=headers)
        if state.json()["status"] == "disabled":
            break
        await asyncio.sleep(0.05)
    assert state.json()["status"] == "disabled"
    assert "every delivery failed" in state.json()["disabled_reason"]
    assert "HTTP 500" in state.json()["disabled_reason"]
    assert len(await _emitted(app, "endpoint.disabled.v1")) == 1
    failing = False

    # re-enabled by an admin, the failed delivery is replayed: a new delivery id, same event
    await client.patch(
        f"/v1/webhook-endpoints/{endpoint['id']}", json={"status": "enabled"}, headers=headers
    )
    [first] = [r for r in await rows(app)]
    for _ in range(20):  # the first delivery ends (failed) once its window passes
        if (await rows(app))[0]["status"] != "pending":
            break
        await w.drain()
        await asyncio.sleep(0.05)
    sent_before = len(hook.got)
    r = await client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/deliveries/{first['id']}/replay",
        headers=headers,
    )
    assert r.status_code == 202, r.text
    assert r.json()["event_id"] == str(first["event_id"])
    await worker().drain()
    replayed = hook.got[sent_before:]
    assert len(replayed) == 1
    assert replayed[0].headers["PyTake-Delivery-Id"] == r.json()["delivery_id"]
    assert replayed[0].headers["PyTake-Event-Id"] == str(first["event_id"])
    assert replayed[0].body == hook.got[0].body
    missing = await client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/deliveries/{uuid.uuid4()}/replay",
        headers=headers,
    )
    assert missing.status_code == 404


async def test_test_event_is_signed_and_logged(app, client, tokens, receiver, worker):
    org = uuid.uuid4()
    hook = await receiver()
    endpoint = await make_endpoint(client, tokens, org, hook.url)
    r = await client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/test",
        headers=tokens.headers(organization_id=org),
    )
    assert r.status_code == 202
    await worker().drain()
    assert hook.verified(endpoint["secret"]) == [True]
    assert json.loads(hook.got[0].body)["type"] == "endpoint.test"


async def test_order_per_conversation_survives_a_retry(
    app, settings, client, tokens, receiver, worker
):
    org = uuid.uuid4()
    a, b = uuid.uuid4(), uuid.uuid4()
    events = [inbound(org, a), inbound(org, b), inbound(org, a), inbound(org, a)]
    first_of_a = events[0].data["message_id"]
    failed_once: list[str] = []

    async def fail_a1_once(received, _):
        message = json.loads(received.body)["data"]["message_id"]
        if message == first_of_a and not failed_once:
            failed_once.append(message)
            return web.Response(status=500)
        return web.Response(status=200)

    hook = await receiver(fail_a1_once)
    await make_endpoint(client, tokens, org, hook.url)
    await deliver(app, settings, *events)
    w = worker()
    for _ in range(40):
        await w.drain()
        if all(r["status"] == "succeeded" for r in await rows(app)):
            break
        await asyncio.sleep(0.05)
    assert all(r["status"] == "succeeded" for r in await rows(app))
    seen = [json.loads(r.body)["data"]["message_id"] for r in hook.got]
    of_a = [
        m
        for m in seen
        if m in {str(e.subject) for e in events if e.data["conversation_id"] == str(a)}
    ]
    # conversation a: its first message failed once and held the later two back
    assert of_a == [
        first_of_a,
        first_of_a,
        events[2].data["message_id"],
        events[3].data["message_id"],
    ]
    # conversation b was not held back by a's retry: it went before a's second attempt
    assert seen.index(events[1].data["message_id"]) < seen.index(first_of_a, 1)


async def test_a_hanging_receiver_does_not_delay_another_endpoint(
    app, settings, client, tokens, receiver, worker
):
    release = asyncio.Event()

    async def hang(_, __):
        await release.wait()  # until the test ends: its receiver's clean-up waits for it
        return web.Response(status=200)

    org = uuid.uuid4()
    slow = await receiver(hang)
    fast = await receiver()
    await make_endpoint(client, tokens, org, slow.url)
    slow_events = [inbound(org, uuid.uuid4()) for _ in range(6)]
    await deliver(app, settings, *slow_events)
    await make_endpoint(client, tokens, org, fast.url)
    w = worker(endpoint_concurrency=2, endpoint_window=4, delivery_timeout_s=20)
    loop = asyncio.get_running_loop()
    # the slow endpoint's window is claimed; 2 take its 2 slots and hang there
    assert await w.dispatch() == 4
    started = loop.time()
    await deliver(app, settings, inbound(org, uuid.uuid4()))
    await w.dispatch()
    for _ in range(50):
        if fast.got:
            break
        await asyncio.sleep(0.02)
    assert fast.got, "the fast endpoint got nothing while the slow one hung"
    assert fast.got[0].at - started < 1.0
    assert len(slow.got) <= 2
    for task in list(w.tasks):
        task.cancel()
    await asyncio.gather(*w.tasks, return_exceptions=True)
    w.claimed.clear()
    release.set()


def test_retry_after_and_backoff_rules(settings):
    import random

    from pytake_integrations.outcomes import backoff_s, classify, retry_after

    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    assert retry_after("30", now) == 30
    assert retry_after("Sat, 05 Dec 2026 12:01:00 GMT", now) == 60
    assert retry_after("Sat, 05 Dec 2026 11:00:00 GMT", now) == 0
    assert retry_after("soon", now) is None
    assert retry_after(None, now) is None
    s = settings.model_copy(update={"retry_base_s": 5, "retry_max_delay_s": 3600})
    rng = random.Random(7)
    for attempt, full in ((1, 5), (2, 10), (5, 80), (20, 3600)):
        delays = [backoff_s(s, attempt, rng) for _ in range(50)]
        assert all(full / 2 <= d <= full for d in delays)
        assert len(set(delays)) > 1  # jittered
    assert [classify(c) for c in (200, 204, 301, 400, 408, 410, 429, 500, 503)] == [
        "succeeded",
        "succeeded",
        "failed",
        "failed",
        "retry",
        "gone",
        "retry",
        "retry",
        "retry",
    ]
    assert timedelta(seconds=s.retry_window_s) == timedelta(hours=24)


async def test_a_crash_mid_attempt_delivers_again_once_the_lease_ends(
    app, settings, client, tokens, receiver, worker
):
    """At least once: a worker that claimed a delivery and died leaves it to another."""
    org = uuid.uuid4()
    hook = await receiver()
    await make_endpoint(client, tokens, org, hook.url)
    await deliver(app, settings, inbound(org, uuid.uuid4()))
    crashed = worker()
    assert await crashed.dispatch() == 1  # the claim commits...
    for task in crashed.tasks:  # ...and the attempt dies before it sends anything
        task.cancel()
    await asyncio.sleep(0.05)
    [row] = await rows(app)
    assert row["lease_until"] is not None
    await worker().drain()
    assert hook.got == []  # leased: nobody else sends it meanwhile
    async with app.state.db.transaction(bypass_rls=True) as s:  # the lease ends
        await s.execute(update(deliveries).values(lease_until=func.now()))
    await worker().drain()
    assert len(hook.got) == 1
    assert (await rows(app))[0]["status"] == "succeeded"


async def test_the_delivery_log_is_kept_30_days(app, settings, client, tokens):
    from datetime import timedelta as td

    from pytake_common.retention import RetentionWorker
    from pytake_integrations.app import log_retention

    org = uuid.uuid4()
    await make_endpoint(client, tokens, org, "https://hooks.example.com/")
    await deliver(app, settings, inbound(org, uuid.uuid4()), inbound(org, uuid.uuid4()))
    old, recent = await rows(app)
    async with app.state.db.transaction(bypass_rls=True) as s:
        await s.execute(
            update(deliveries)
            .where(deliveries.c.id == old["id"])
            .values(created_at=func.now() - td(days=31))
        )
    pruner = RetentionWorker(app.state.db, settings, [log_retention(settings)])
    await pruner.prune()
    assert [r["id"] for r in await rows(app)] == [recent["id"]]
