"""Outbound statuses only move forward, found by our message id or by Meta's wamid."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from pytake_conversations.statuses import STATUS_SET
from pytake_conversations.tables import stream_events

from .helpers import (
    Customer,
    conversation_rows,
    deliver,
    emitted,
    failed,
    message_rows,
    sent,
    status,
)

T = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def org():
    return uuid.uuid4()


@pytest.fixture
async def outbound(app, client, tokens, org):
    """An agent's reply, pending; returns its message id."""
    await deliver(app, Customer(org).says("hi"))
    [conv] = await conversation_rows(app, org)
    r = await client.post(
        f"/v1/conversations/{conv['id']}/messages",
        json={"type": "text", "text": {"body": "hello"}},
        headers=tokens.headers(organization_id=org, role="agent"),
    )
    assert r.status_code == 202
    return uuid.UUID(r.json()["id"])


async def message(app, org, message_id):
    [row] = [m for m in await message_rows(app, org) if m["id"] == message_id]
    return row


async def changes(app, org):
    return [
        (e["data"]["status"], e["data"]["error_code"])
        for e in await emitted(app, org, "message.status_changed.v1")
    ]


async def test_status_never_moves_backwards(app, org, outbound):
    wamid = "wamid.OUT" + uuid.uuid4().hex
    await deliver(app, sent(org, outbound, wamid, T))
    row = await message(app, org, outbound)
    assert (row["status"], row["wamid"], row["status_at"]) == ("sent", wamid, T)
    # read arrives by wamid only, then a late delivered, a late sent and a duplicate read.
    await deliver(app, status(org, "read", T + timedelta(seconds=9), wamid=wamid))
    await deliver(
        app, status(org, "delivered", T + timedelta(seconds=5), wamid=wamid, message_id=outbound)
    )
    await deliver(app, sent(org, outbound, wamid, T))
    await deliver(app, status(org, "read", T + timedelta(seconds=9), wamid=wamid))
    row = await message(app, org, outbound)
    assert (row["status"], row["status_at"]) == ("read", T + timedelta(seconds=9))
    # failed after read is ignored (another device failing after the customer read it).
    await deliver(
        app,
        status(
            org,
            "failed",
            T + timedelta(seconds=20),
            wamid=wamid,
            errors=[{"code": 131026, "title": "Undeliverable"}],
        ),
    )
    row = await message(app, org, outbound)
    assert (row["status"], row["error_code"]) == ("read", None)
    assert await changes(app, org) == [("sent", None), ("read", None)]

    events = await emitted(app, org, "message.status_changed.v1")
    [conv] = await conversation_rows(app, org)
    assert events[1]["subject"] == str(outbound)
    assert events[1]["data"] == {
        "message_id": str(outbound),
        "organization_id": str(org),
        "conversation_id": str(conv["id"]),
        "status": "read",
        "error_code": None,
        "error_detail": None,
        "at": events[1]["data"]["at"],
        "pricing": None,
    }
    assert datetime.fromisoformat(events[1]["data"]["at"]) == T + timedelta(seconds=9)


async def test_failed_after_delivered_applies_and_is_terminal(app, org, outbound):
    wamid = "wamid.OUT" + uuid.uuid4().hex
    await deliver(app, sent(org, outbound, wamid, T))
    await deliver(app, status(org, "delivered", T + timedelta(seconds=2), wamid=wamid))
    await deliver(
        app,
        status(
            org,
            "failed",
            T + timedelta(seconds=3),
            wamid=wamid,
            errors=[
                {
                    "code": 131026,
                    "title": "Message undeliverable",
                    "message": "Message undeliverable",
                    "details": "Receiver is incapable of receiving this message",
                }
            ],
        ),
    )
    row = await message(app, org, outbound)
    assert (row["status"], row["error_code"], row["error_detail"]) == (
        "failed",
        131026,
        "Receiver is incapable of receiving this message",
    )
    await deliver(app, status(org, "read", T + timedelta(seconds=4), wamid=wamid))
    assert (await message(app, org, outbound))["status"] == "failed"
    assert await changes(app, org) == [("sent", None), ("delivered", None), ("failed", 131026)]
    [*_, last] = await emitted(app, org, "message.status_changed.v1")
    assert last["data"]["error_detail"] == "Receiver is incapable of receiving this message"


async def test_send_failure_from_the_gateway(app, org, outbound):
    await deliver(app, failed(org, outbound, T, code=131047, detail="Re-engagement message"))
    row = await message(app, org, outbound)
    assert (row["status"], row["error_code"], row["error_detail"], row["status_at"]) == (
        "failed",
        131047,
        "Re-engagement message",
        T,
    )
    await deliver(app, failed(org, outbound, T))  # a duplicate changes nothing
    await deliver(app, sent(org, outbound, "wamid.LATE", T))  # nor does a late sent
    row = await message(app, org, outbound)
    assert (row["status"], row["error_code"]) == ("failed", 131047)
    assert await changes(app, org) == [("failed", 131047)]


async def test_status_found_by_wamid_and_unknown_wamids_ignored(app, org, outbound):
    wamid = "wamid.OUT" + uuid.uuid4().hex
    # delivered overtakes sent (carrying our id), then sent teaches us the wamid,
    await deliver(
        app, status(org, "delivered", T + timedelta(seconds=2), wamid=wamid, message_id=outbound)
    )
    await deliver(app, sent(org, outbound, wamid, T))
    row = await message(app, org, outbound)
    assert (row["status"], row["wamid"]) == ("delivered", wamid)
    # and a status carrying only the wamid finds the message.
    await deliver(app, status(org, "played", T + timedelta(seconds=4), wamid=wamid))
    assert (await message(app, org, outbound))["status"] == "played"
    # Statuses of messages we did not send (another tool on the number) change nothing.
    await deliver(app, status(org, "read", T, wamid="wamid.SOMEONE_ELSE"))
    await deliver(app, status(org, "read", T, wamid="wamid.X", message_id=uuid.uuid4()))
    # Nor can an inbound message's wamid be given a delivery status.
    inbound = next(m for m in await message_rows(app, org) if m["direction"] == "inbound")
    await deliver(app, status(org, "read", T, wamid=inbound["wamid"]))
    assert (await message(app, org, inbound["id"]))["status"] == "received"
    assert await changes(app, org) == [("delivered", None), ("played", None)]


async def test_other_organizations_status_cannot_touch_the_message(app, org, outbound):
    wamid = "wamid.OUT" + uuid.uuid4().hex
    await deliver(app, sent(org, outbound, wamid, T))
    intruder = uuid.uuid4()
    await deliver(
        app, status(intruder, "read", T + timedelta(seconds=1), wamid=wamid, message_id=outbound)
    )
    assert (await message(app, org, outbound))["status"] == "sent"


async def _replies(app, client, tokens, org, n):
    """``n`` pending agent replies in one conversation; their ids."""
    await deliver(app, Customer(org).says("hi"))
    [conv] = await conversation_rows(app, org)
    ids = []
    for i in range(n):
        r = await client.post(
            f"/v1/conversations/{conv['id']}/messages",
            json={"type": "text", "text": {"body": f"reply {i}"}},
            headers=tokens.headers(organization_id=org, role="agent"),
        )
        assert r.status_code == 202
        ids.append(uuid.UUID(r.json()["id"]))
    return ids


def _facts(org, ids):
    """Every case in one batch: m0 sent then read then a late delivered and a duplicate
    read; m1's delivered before its sent (wamid not known yet), its sent, its delivered
    with pricing; m2 failed by the gateway, then a late sent; m3's read by a wamid m0
    has; a status for a message we did not send."""
    m0, m1, m2, m3 = ids
    w0, w1 = f"wamid.A{uuid.uuid4().hex}", f"wamid.B{uuid.uuid4().hex}"
    pricing = {"billable": True, "pricing_model": "PMP", "category": "utility"}
    read = status(org, "read", T + timedelta(seconds=5), wamid=w0)
    return [
        sent(org, m0, w0, T),
        status(org, "delivered", T + timedelta(seconds=1), wamid=w1),
        read,
        sent(org, m1, w1, T + timedelta(seconds=2)),
        status(org, "delivered", T + timedelta(seconds=3), wamid=w0),
        failed(org, m2, T + timedelta(seconds=1)),
        status(org, "delivered", T + timedelta(seconds=4), wamid=w1, pricing=pricing),
        sent(org, m2, f"wamid.C{uuid.uuid4().hex}", T + timedelta(seconds=3)),
        status(org, "read", T + timedelta(seconds=6), wamid=w0, message_id=m3),
        status(org, "read", T, wamid=f"wamid.X{uuid.uuid4().hex}"),
        read.model_copy(update={"id": uuid.uuid4()}),
    ]


async def _status_outcome(app, org, ids):
    name = {m: f"m{i}" for i, m in enumerate(ids)}
    msgs = sorted(
        (name[m["id"]], m["status"], m["status_at"], m["wamid"] is not None, m["error_code"])
        for m in await message_rows(app, org)
        if m["id"] in name
    )
    async with app.state.db.transaction(organization_id=org) as s:
        frames = (
            await s.execute(
                select(stream_events.c.type, stream_events.c.data)
                .where(stream_events.c.type == "message.updated")
                .order_by(stream_events.c.id)
            )
        ).all()
    updates = [
        (name[uuid.UUID(d["message"]["id"])], d["message"]["status"], d["message"]["status_at"])
        for _, d in frames
    ]
    events = [
        (name[uuid.UUID(e["data"]["message_id"])], e["data"]["status"], e["data"]["pricing"])
        for e in await emitted(app, org, "message.status_changed.v1")
    ]
    return msgs, updates, events


async def test_a_batch_of_statuses_ends_as_the_same_statuses_one_by_one(app, client, tokens):
    outcomes = []
    for at_once in (False, True):
        org = uuid.uuid4()
        ids = await _replies(app, client, tokens, org, 4)
        facts = _facts(org, ids)
        if at_once:
            async with app.state.db.transaction(organization_id=org) as s:
                await STATUS_SET.apply(s, [STATUS_SET.parse(e) for e in facts])
        else:
            for event in facts:
                await deliver(app, event)
        outcomes.append(await _status_outcome(app, org, ids))
    one_by_one, at_once = outcomes
    assert at_once == one_by_one
    msgs, _, events = at_once
    assert [(m[0], m[1]) for m in msgs] == [
        ("m0", "read"),
        ("m1", "delivered"),
        ("m2", "failed"),
        ("m3", "read"),
    ]
    assert [e[:2] for e in events] == [
        ("m0", "sent"),
        ("m0", "read"),
        ("m1", "sent"),
        ("m2", "failed"),
        ("m1", "delivered"),
        ("m3", "read"),
    ]
