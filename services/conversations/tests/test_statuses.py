"""Outbound statuses only move forward, found by our message id or by Meta's wamid."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

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
