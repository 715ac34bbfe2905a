import asyncio
import time
import uuid
from contextlib import aclosing
from datetime import timedelta
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from prometheus_client import REGISTRY
from sqlalchemy import func, insert, select, text, update

from pytake_common.consumer import EventConsumer
from pytake_common.event_types import CONVERSATIONS_MESSAGE_SEND_REQUESTED_V1
from pytake_common.events import CloudEvent
from pytake_whatsapp_gateway.app import CONSUMER_GROUP, graph_http_client
from pytake_whatsapp_gateway.handlers import make_handlers
from pytake_whatsapp_gateway.metrics import SLOTS_MISSED
from pytake_whatsapp_gateway.sending.dispatcher import Dispatcher
from pytake_whatsapp_gateway.sending.sender import Outbound, Sender
from pytake_whatsapp_gateway.tables import send_log, send_queue

from .helpers import (
    change,
    envelope,
    events,
    meta_error,
    raw,
    register,
    signed,
    status_webhook,
)

SENT = "pytake.whatsapp.message.sent.v1"
FAILED = "pytake.whatsapp.message.failed.v1"
SECRET = "tenant-app-secret"
TOKEN = "EAAG-access-token-of-the-number"


@pytest.fixture
async def sender(app, settings):
    async with (
        graph_http_client(settings) as http,
        aclosing(Sender(settings, app.state.db, app.state.secret_box, http)) as sender,
    ):
        yield sender


@pytest.fixture
async def number(client, tokens):
    org = uuid.uuid4()
    created = await register(
        client, tokens, org, "106540352242922", app_secret=SECRET, access_token=TOKEN
    )
    return created


def send_requested(
    number: dict,
    *,
    message_id: uuid.UUID | None = None,
    to: str = "5511999990000",
    body: str = "Olá! Como posso ajudar?",
    context_wamid: str | None = None,
) -> CloudEvent:
    message_id = message_id or uuid.uuid4()
    org = number["organization_id"]
    return CloudEvent(
        source="pytake/conversations",
        type=CONVERSATIONS_MESSAGE_SEND_REQUESTED_V1,
        subject=str(message_id),
        tenantid=org,
        data={
            "message_id": str(message_id),
            "organization_id": org,
            "conversation_id": str(uuid.uuid4()),
            "number_id": number["id"],
            "phone_number_id": number["phone_number_id"],
            "to": to,
            "type": "text",
            "text": {"body": body, "preview_url": False},
            "context_wamid": context_wamid,
            "sent_by": str(uuid.uuid4()),
        },  # a field the gateway does not read
    )


async def consume(app, settings, sender, *events_: CloudEvent) -> None:
    """Deliver records through the real idempotent consumer, then let the dispatcher send."""
    await deliver(app, settings, sender, *events_)
    await Dispatcher(settings, app.state.db, sender).drain()


async def deliver(app, settings, sender, *events_: CloudEvent) -> None:
    """Deliver records through the real idempotent consumer (inbox mark + handler)."""
    consumer = EventConsumer(settings, app.state.db, CONSUMER_GROUP, make_handlers(sender))
    for offset, event in enumerate(events_):
        value = event.to_bytes()
        record = ConsumerRecord(
            "pytake.conversations.message",
            0,
            offset,
            0,
            0,
            event.subject.encode(),
            value,
            None,
            0,
            len(value),
            [],
        )
        await consumer.process(record)


def sends(outcome: str, code: str = "") -> float:
    return (
        REGISTRY.get_sample_value(
            "pytake_whatsapp_sends_total", {"outcome": outcome, "error_code": code}
        )
        or 0.0
    )


async def test_a_send_request_calls_the_graph_api_and_emits_sent(
    app, settings, sender, graph, number
):
    event = send_requested(number, context_wamid="wamid.quoted")
    message_id = event.data["message_id"]
    before, began = sends("sent"), time.time()
    await consume(app, settings, sender, event)

    [call] = graph.requests
    assert call["path"] == "/v21.0/106540352242922/messages"
    assert call["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert call["headers"]["content-type"] == "application/json"
    assert call["json"] == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "5511999990000",
        "type": "text",
        "text": {"body": "Olá! Como posso ajudar?", "preview_url": False},
        "context": {"message_id": "wamid.quoted"},
        "biz_opaque_callback_data": message_id,
    }
    [sent] = await events(app, SENT)
    assert sent["subject"] == message_id and sent["tenantid"] == number["organization_id"]
    data = sent["data"]
    assert data["wamid"].startswith("wamid.")
    assert {k: v for k, v in data.items() if k not in ("wamid", "sent_at")} == {
        "message_id": message_id,
        "organization_id": number["organization_id"],
        "number_id": number["id"],
        "to": "5511999990000",
    }
    assert data["sent_at"].endswith("Z")
    async with app.state.db.transaction(organization_id=number["organization_id"]) as s:
        row = (await s.execute(select(send_log))).mappings().one()
    assert (row["state"], row["wamid"], row["attempts"]) == ("sent", data["wamid"], 1)
    assert began < row["departed_at"].timestamp() < time.time()  # when its bytes left
    assert sends("sent") == before + 1


@pytest.mark.parametrize("kept_alive", [False, True])
async def test_a_send_too_late_for_its_slot_goes_once_on_new_slots(
    app, settings, sender, graph, number, kept_alive
):
    """The pacer checks again inside the request, right before its bytes are written: a
    call that reaches the write past its slot (here: the event loop blocked elsewhere
    between the wake-up and the request) takes slots anew and is sent once, as the same
    attempt. On a new connection it waits for them in the request; on one kept alive from
    an earlier request it drops the request, nothing of it sent, and makes a new one."""
    if kept_alive:  # an earlier send leaves its connection in the pool
        await consume(app, settings, sender, send_requested(number, to="5511999990009"))
        graph.requests.clear()
    real_send, calls, stalled_until = sender.graph.send, [], []

    async def stalled(phone_number_id, token, payload, gate):
        calls.append(payload["to"])
        time.sleep(0.2)  # noqa: ASYNC251 - on purpose: the loop busy elsewhere
        stalled_until.append(time.time())
        return await real_send(phone_number_id, token, payload, gate=gate)

    sender.graph.send = stalled
    before = SLOTS_MISSED.labels("write")._value.get()
    event = send_requested(number)
    await consume(app, settings, sender, event)

    assert len(calls) == (2 if kept_alive else 1)
    assert len(graph.requests) == 1
    assert SLOTS_MISSED.labels("write")._value.get() >= before + 1  # caught at the write
    [sent] = [e for e in await events(app, SENT) if e["subject"] == event.subject]
    async with app.state.db.transaction(organization_id=number["organization_id"]) as s:
        row = (
            (await s.execute(select(send_log).where(send_log.c.message_id == event.subject)))
            .mappings()
            .one()
        )
    assert (row["state"], row["wamid"], row["attempts"]) == ("sent", sent["data"]["wamid"], 1)
    # Its departure is the write that went, after the stall; not the wake-up before it.
    assert row["departed_at"].timestamp() > stalled_until[-1]


async def test_outside_the_window_fails_with_a_readable_reason(
    app, settings, sender, graph, number
):
    graph.script = [
        (
            400,
            meta_error(
                131047,
                "(#131047) Re-engagement message",
                "Message failed to send because more than 24 hours "
                "have passed since the customer last replied",
            ),
        )
    ]
    event = send_requested(number)
    await consume(app, settings, sender, event)
    assert len(graph.requests) == 1
    assert await events(app, SENT) == []
    [failed] = await events(app, FAILED)
    data = failed["data"]
    assert data["error_code"] == 131047
    assert data["error_title"] == "(#131047) Re-engagement message"
    assert data["error_detail"].startswith(
        "More than 24 hours have passed since the customer last replied; send a template instead"
    )
    assert data["retryable"] is False
    assert data["message_id"] == event.data["message_id"]
    assert data["to"] == "5511999990000" and data["number_id"] == number["id"]


async def test_transient_errors_are_retried_then_sent_once(app, settings, sender, graph, number):
    graph.script = [(400, meta_error(130429)), (500, meta_error(131000))]
    await consume(app, settings, sender, send_requested(number))
    assert len(graph.requests) == 3
    assert len({str(r["json"]) for r in graph.requests}) == 1  # the same request each time
    assert len(await events(app, SENT)) == 1
    assert await events(app, FAILED) == []


async def test_transient_errors_that_persist_fail_as_retryable(
    app, settings, sender, graph, number
):
    graph.script = [(400, meta_error(131056))] * settings.send_max_attempts
    await consume(app, settings, sender, send_requested(number))
    assert len(graph.requests) == settings.send_max_attempts
    [failed] = await events(app, FAILED)
    assert failed["data"]["error_code"] == 131056
    assert failed["data"]["retryable"] is True


async def test_unreachable_graph_api_fails_as_retryable(app, settings, number):
    unreachable = settings.model_copy(update={"graph_api_base": "http://127.0.0.1:9"})
    async with (
        graph_http_client(unreachable) as http,
        aclosing(Sender(unreachable, app.state.db, app.state.secret_box, http)) as sender,
    ):
        await consume(app, settings, sender, send_requested(number))
    [failed] = await events(app, FAILED)
    assert failed["data"]["error_code"] is None
    assert failed["data"]["retryable"] is True


async def test_a_redelivered_send_request_calls_meta_once(app, settings, sender, graph, number):
    event = send_requested(number)
    same_fact = CloudEvent.model_validate(event.model_dump() | {"id": uuid.uuid4()})
    await consume(app, settings, sender, event, event, same_fact)
    assert len(graph.requests) == 1
    assert len(await events(app, SENT)) == 1
    assert await events(app, FAILED) == []


async def test_concurrent_duplicates_wait_for_the_first_outcome(
    app, settings, sender, graph, number
):
    graph.delay_s = 0.3
    event = send_requested(number)
    handler = make_handlers(sender)[CONVERSATIONS_MESSAGE_SEND_REQUESTED_V1]

    async def deliver() -> None:
        async with app.state.db.transaction(organization_id=event.tenantid) as s:
            await handler(s, event)

    await asyncio.gather(deliver(), deliver())
    await Dispatcher(settings, app.state.db, sender).drain()
    assert len(graph.requests) == 1
    assert len(await events(app, SENT)) == 1
    assert await events(app, FAILED) == []


async def claim_left_by_a_dead_attempt(app, number, event, state: str = "claimed") -> None:
    org = uuid.UUID(number["organization_id"])
    async with app.state.db.transaction(organization_id=org) as s:
        await s.execute(
            insert(send_log).values(
                message_id=uuid.UUID(event.data["message_id"]),
                organization_id=org,
                number_id=uuid.UUID(number["id"]),
                recipient="5511999990000",
                state=state,
            )
        )


@pytest.mark.parametrize("priority", ["interactive", "campaign"])
async def test_a_claim_left_by_a_dead_attempt_waits_for_metas_status_then_is_sent_once(
    app, settings, sender, graph, number, priority
):
    """Its process died between claim and outcome: Meta may have the message. It is not
    called again while the confirm window lasts (a status webhook would settle it, see
    test_sending_faults.py); with no status through the window, it never reached Meta
    and is sent, once, marked claimed before the call whatever its priority (a campaign
    send is otherwise claimed outright, without the mark)."""
    event = send_requested(number)
    event.data["priority"] = priority
    await claim_left_by_a_dead_attempt(app, number, event)
    await consume(app, settings, sender, event)
    assert graph.requests == []
    assert await events(app, SENT) == [] and await events(app, FAILED) == []
    async with app.state.db.transaction(bypass_rls=True) as s:
        state = await s.scalar(select(send_log.c.state))
        wait = await s.scalar(select(func.extract("epoch", send_queue.c.not_before - func.now())))
    assert state == "orphaned"
    assert settings.send_confirm_window_s - 5 < wait <= settings.send_confirm_window_s
    await Dispatcher(settings, app.state.db, sender).drain()  # not due: nothing
    assert graph.requests == []

    async with app.state.db.transaction(bypass_rls=True) as s:  # the window ends
        await s.execute(update(send_log).values(updated_at=func.now() - timedelta(hours=1)))
        await s.execute(update(send_queue).values(not_before=func.now()))
    seen: list[str] = []

    async def look(body: dict[str, Any]) -> None:
        async with app.state.db.transaction(bypass_rls=True) as s:
            seen.append(await s.scalar(select(send_log.c.state)))

    graph.on_request = look
    await Dispatcher(settings, app.state.db, sender).drain()
    assert len(graph.requests) == 1
    assert seen == ["claimed"]  # a kill now would not send it again without evidence
    [sent] = await events(app, SENT)
    assert sent["data"]["message_id"] == event.data["message_id"]
    assert await events(app, FAILED) == []
    await consume(app, settings, sender, event)  # redelivered: nothing more
    assert len(graph.requests) == 1


async def test_a_send_is_marked_claimed_before_meta_gets_it(app, settings, sender, graph, number):
    """Reserved with its slot, claimed (committed) before the call's bytes leave: a send
    a kill leaves reserved never reached Meta."""
    seen: list[str] = []

    async def look(body: dict[str, Any]) -> None:
        async with app.state.db.transaction(bypass_rls=True) as s:
            seen.append(
                await s.scalar(
                    select(send_log.c.state).where(
                        send_log.c.message_id == uuid.UUID(body["biz_opaque_callback_data"])
                    )
                )
            )

    graph.on_request = look
    await consume(app, settings, sender, send_requested(number), send_requested(number))
    assert seen == ["claimed", "claimed"]
    assert len(await events(app, SENT)) == 2


async def test_a_reservation_left_by_a_dead_attempt_is_sent_at_once(
    app, settings, sender, graph, number
):
    """Its attempt died before the mark: nothing left, no window to wait."""
    event = send_requested(number)
    await claim_left_by_a_dead_attempt(app, number, event, state="reserved")
    await consume(app, settings, sender, event)
    assert len(graph.requests) == 1
    [sent] = await events(app, SENT)
    assert sent["data"]["message_id"] == event.data["message_id"]
    assert await events(app, FAILED) == []


async def test_a_status_for_a_send_reserved_again_settles_it_and_the_call_is_not_made(
    app, settings, sender, graph, number, client
):
    """The window of an orphaned send ended (reserved again, to be sent) just as Meta's
    status for it came: the status settles it (Meta has it) and the call is not made."""
    event = send_requested(number)
    message_id = event.data["message_id"]
    await claim_left_by_a_dead_attempt(app, number, event, state="reserved")
    await deliver(app, settings, sender, event)
    await status_webhook(
        client, "106540352242922", SECRET, message_id, "wamid.from-the-dead-attempt"
    )
    [sent] = await events(app, SENT)
    assert sent["data"]["wamid"] == "wamid.from-the-dead-attempt"
    await Dispatcher(settings, app.state.db, sender).drain()
    assert graph.requests == []
    async with app.state.db.transaction(bypass_rls=True) as s:
        assert await s.scalar(select(func.count()).select_from(send_queue)) == 0
    assert len(await events(app, SENT)) == 1 and await events(app, FAILED) == []


async def test_without_a_confirm_window_a_claim_left_by_a_dead_attempt_fails_unknown(
    app, settings, graph, number
):
    event = send_requested(number)
    await claim_left_by_a_dead_attempt(app, number, event)
    no_window = settings.model_copy(update={"send_confirm_window_s": 0.0})
    async with (
        graph_http_client(no_window) as http,
        aclosing(Sender(no_window, app.state.db, app.state.secret_box, http)) as sender,
    ):
        await consume(app, no_window, sender, event)
    assert graph.requests == []
    [failed] = await events(app, FAILED)
    assert failed["data"]["error_code"] is None
    assert failed["data"]["error_detail"] == (
        "delivery outcome unknown after a crash; not resent to avoid a duplicate"
    )
    assert failed["data"]["retryable"] is False


async def test_a_claim_left_by_a_crash_that_meta_named_is_sent(
    app, settings, sender, graph, number
):
    """A status webhook found the claimed send (its wamid) before the attempt died."""
    event = send_requested(number)
    org = uuid.UUID(number["organization_id"])
    async with app.state.db.transaction(organization_id=org) as s:
        await s.execute(
            insert(send_log).values(
                message_id=uuid.UUID(event.data["message_id"]),
                organization_id=org,
                number_id=uuid.UUID(number["id"]),
                recipient="5511999990000",
                state="claimed",
                wamid="wamid.named-by-a-status",
            )
        )
    await consume(app, settings, sender, event)
    assert graph.requests == []
    [sent] = await events(app, SENT)
    assert sent["data"]["wamid"] == "wamid.named-by-a-status"
    assert await events(app, FAILED) == []


async def test_an_expired_token_disconnects_the_number(
    app, settings, sender, graph, number, client, tokens
):
    graph.script = [(401, meta_error(190, "Error validating access token"))]
    await consume(app, settings, sender, send_requested(number))
    [failed] = await events(app, FAILED)
    assert failed["data"]["error_code"] == 190
    assert "reconnect" in failed["data"]["error_detail"]
    r = await client.get(
        f"/v1/whatsapp/numbers/{number['id']}",
        headers=tokens.headers(organization_id=number["organization_id"]),
    )
    assert r.json()["status"] == "disconnected"
    # Later sends through a disconnected number fail without calling Meta.
    await consume(app, settings, sender, send_requested(number))
    assert len(graph.requests) == 1
    assert [e["data"]["error_title"] for e in await events(app, FAILED)] == [
        "Error validating access token",
        "number disconnected",
    ]


async def test_another_organizations_number_is_never_used(app, settings, sender, graph, number):
    event = send_requested(number)
    intruder = str(uuid.uuid4())
    event = CloudEvent.model_validate(
        event.model_dump()
        | {"tenantid": intruder, "data": event.data | {"organization_id": intruder}}
    )
    await consume(app, settings, sender, event)
    assert graph.requests == []
    [failed] = await events(app, FAILED)
    assert failed["tenantid"] == intruder
    assert failed["data"]["error_title"] == "number not found"


async def test_status_webhooks_find_the_sent_message(app, settings, sender, client, number):
    event = send_requested(number)
    await consume(app, settings, sender, event)
    [sent] = await events(app, SENT)
    wamid = sent["data"]["wamid"]
    body = raw(
        envelope(
            [
                change(
                    "106540352242922",
                    statuses=[
                        {
                            "id": wamid,
                            "status": "delivered",
                            "timestamp": "1764000000",
                            "recipient_id": "5511999990000",
                        }
                    ],
                )
            ]
        )
    )
    r = await client.post("/webhooks/whatsapp", content=body, headers=signed(body, SECRET))
    assert r.status_code == 200
    [status] = await events(app, "pytake.whatsapp.message.status_updated.v1")
    assert status["data"]["message_id"] == event.data["message_id"]
    assert status["subject"] == event.data["message_id"]


def outbound(number: dict, to: str = "5511999990000") -> Outbound:
    return Outbound(
        message_id=uuid.uuid4(),
        organization_id=uuid.UUID(number["organization_id"]),
        conversation_id=None,
        number_id=uuid.UUID(number["id"]),
        to=to,
        type="text",
        text_body="hi",
        preview_url=False,
        context_wamid=None,
    )


async def advisory_locks(app) -> int:
    async with app.state.db.transaction(bypass_rls=True) as s:
        return await s.scalar(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        )


async def test_two_attempts_at_one_message_at_once_call_meta_once(app, sender, graph, number):
    graph.delay_s = 0.3  # the first attempt holds the message's lock meanwhile
    out = outbound(number)
    assert await asyncio.gather(sender.send(out), sender.send(out)) == [None, None]
    assert len(graph.requests) == 1
    assert len(await events(app, SENT)) == 1
    assert await events(app, FAILED) == []
    assert await advisory_locks(app) == 0


async def test_a_failed_attempt_releases_the_message_lock(app, sender, graph, number, monkeypatch):
    out = outbound(number)
    real = sender._send_locked

    async def broken(*args, **kwargs):
        raise ConnectionResetError("database went away")

    monkeypatch.setattr(sender, "_send_locked", broken)
    with pytest.raises(ConnectionResetError):
        await sender.send(out)
    assert await advisory_locks(app) == 0
    monkeypatch.setattr(sender, "_send_locked", real)
    async with asyncio.timeout(5):  # not waiting for a lock nobody released
        assert await sender.send(out) is None
    assert len(graph.requests) == 1
