"""Sending through the real Meta simulator's switchable faults: slow answers, 5xx, 190.

A slow answer is the dangerous one. The Cloud API has no idempotency key for
``POST /messages``: when the answer does not arrive within the timeout, Meta may
already have the message, and a blind retry would deliver it twice. So a call
whose request reached Meta and got no answer is not resent: the send is
``unconfirmed`` until Meta's status webhook (which echoes our message id in
``biz_opaque_callback_data``) makes it ``sent``, or the confirm window ends and
it fails as ``no answer`` (``retryable: false``). Errors that arrive, even
slowly, are classified as usual: transient ones are retried with backoff.
"""

import asyncio
import contextlib
import uuid
from contextlib import aclosing
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from pytake_whatsapp_gateway.app import graph_http_client
from pytake_whatsapp_gateway.sending.dispatcher import Dispatcher
from pytake_whatsapp_gateway.sending.sender import Outbound, Sender
from pytake_whatsapp_gateway.tables import send_log, send_queue

from .helpers import SIM_APP_SECRET, SIM_TOKEN, connect, events
from .test_sending import FAILED, SENT, consume, deliver, send_requested

STATUS = "pytake.whatsapp.message.status_updated.v1"
TIMEOUT_S = 0.5
WINDOW_S = 60.0


@pytest.fixture
async def sender(gateway):
    app = gateway[0]
    settings = app.state.settings.model_copy(
        update={"send_timeout_s": TIMEOUT_S, "send_confirm_window_s": WINDOW_S}
    )
    async with (
        graph_http_client(settings) as http,
        aclosing(Sender(settings, app.state.db, app.state.secret_box, http)) as sender,
    ):
        yield sender


async def fault(sim, number: dict[str, Any], **rule: Any) -> None:
    r = await sim.post(
        "/_sim/failures", json={"phone_number_id": number["phone_number_id"], **rule}
    )
    assert r.status_code == 200, r.text


async def accepted(sim, message_id: str) -> list[dict[str, Any]]:
    """The sends the simulator accepted for our message (by the echoed callback data)."""
    sent = (await sim.get("/_sim/sent")).json()
    return [s for s in sent if s["body"].get("biz_opaque_callback_data") == message_id]


async def attempts(app, message_id: str) -> int | None:
    return (await logged(app, message_id)).attempts


async def logged(app, message_id: str) -> Any:
    async with app.state.db.transaction(bypass_rls=True) as s:
        return (
            await s.execute(select(send_log).where(send_log.c.message_id == uuid.UUID(message_id)))
        ).one()


async def window_ends(app, sender) -> None:
    """The confirm window is over: the dispatcher looks at the unconfirmed send again."""
    async with app.state.db.transaction(bypass_rls=True) as s:
        await s.execute(send_queue.update().values(not_before=send_queue.c.created_at))
        await s.execute(
            send_log.update().values(updated_at=func.now() - timedelta(seconds=WINDOW_S + 1))
        )
    await Dispatcher(sender.settings, app.state.db, sender).drain()


async def wait_for(check, what: str) -> Any:
    for _ in range(200):
        if found := await check():
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {what}")


async def test_a_slow_answer_within_the_timeout_is_sent_once(api, gtokens, sim, gateway, sender):
    app = gateway[0]
    number = await connect(api, gtokens, sim, gateway, uuid.uuid4(), "801")
    await fault(sim, number, mode="slow", delay_s=TIMEOUT_S / 5)
    event = send_requested(number)
    await consume(app, app.state.settings, sender, event)
    [sent] = await events(app, SENT)
    [at_meta] = await accepted(sim, event.data["message_id"])
    assert sent["data"]["wamid"] == at_meta["wamid"]
    assert await events(app, FAILED) == []


async def test_a_slow_answer_past_the_timeout_is_not_resent_and_its_early_status_confirms_it(
    api, gtokens, sim, gateway, sender
):
    app = gateway[0]
    number = await connect(api, gtokens, sim, gateway, uuid.uuid4(), "807")
    # Accepted at once, answered long after the gateway's timeout; Meta's status
    # webhooks (the first 50 ms after) arrive while the call is still waiting.
    await fault(sim, number, mode="slow", delay_s=5.0)
    event = send_requested(number)
    message_id = event.data["message_id"]
    patient = sender.settings.model_copy(update={"send_timeout_s": 2.0})
    async with (
        graph_http_client(patient) as http,
        aclosing(Sender(patient, app.state.db, app.state.secret_box, http)) as waiting,
    ):
        await consume(app, app.state.settings, waiting, event)
    [at_meta] = await accepted(sim, message_id)
    row = await logged(app, message_id)
    assert (row.state, row.attempts, row.wamid) == ("sent", 1, at_meta["wamid"])
    [sent] = await events(app, SENT)
    assert sent["data"]["wamid"] == at_meta["wamid"]
    assert await events(app, FAILED) == []
    await consume(app, app.state.settings, sender, event)  # redelivered: nothing more
    assert len(await accepted(sim, message_id)) == 1
    assert len(await events(app, SENT)) == 1


async def test_a_slow_answer_past_the_timeout_is_not_resent_and_a_later_status_confirms_it(
    api, gtokens, sim, gateway, sender, simulator
):
    app = gateway[0]
    simulator[0].state.sim.settings.status_delay_s = 2.5  # statuses come after the timeout
    number = await connect(api, gtokens, sim, gateway, uuid.uuid4(), "802")
    await fault(sim, number, mode="slow", delay_s=5.0)
    event = send_requested(number)
    message_id = event.data["message_id"]
    await consume(app, app.state.settings, sender, event)
    row = await logged(app, message_id)
    assert (row.state, row.attempts, row.wamid) == ("unconfirmed", 1, None)  # not retried
    assert await events(app, SENT) == [] and await events(app, FAILED) == []
    # Redelivering the same request does not call Meta again either.
    await consume(app, app.state.settings, sender, event)
    [at_meta] = await accepted(sim, message_id)  # Meta has it exactly once
    # When it left is kept, though no answer came: before it reached Meta.
    assert row.departed_at <= datetime.fromisoformat(at_meta["received_at"])

    # Meta's first status webhook carries our id back: confirmed with Meta's wamid.
    async def confirmed() -> list[dict[str, Any]]:
        return await events(app, SENT)

    [sent] = await wait_for(confirmed, "sent event")
    assert sent["data"]["message_id"] == message_id
    assert sent["data"]["wamid"] == at_meta["wamid"]
    assert (await logged(app, message_id)).state == "sent"

    await window_ends(app, sender)  # the second look finds it settled
    assert await events(app, FAILED) == []
    assert len(await events(app, SENT)) == 1
    assert len(await accepted(sim, message_id)) == 1


async def test_an_unanswered_send_without_a_status_fails_after_the_window(
    api, gtokens, sim, gateway, sender
):
    app = gateway[0]
    number = await connect(api, gtokens, sim, gateway, uuid.uuid4(), "806")
    # Meta's webhooks do not reach PyTake (its endpoint is down, say).
    r = await sim.post(
        "/_sim/numbers",
        json={
            "phone_number_id": "806",
            "waba_id": number["waba_id"],
            "display_phone_number": "15550000000",
            "access_token": SIM_TOKEN,
            "app_secret": SIM_APP_SECRET,
            "webhook_url": "http://127.0.0.1:9/none",
        },
    )
    assert r.status_code == 200
    await fault(sim, number, mode="slow", delay_s=3.0)
    event = send_requested(number)
    message_id = event.data["message_id"]
    await consume(app, app.state.settings, sender, event)
    assert (await logged(app, message_id)).state == "unconfirmed"
    assert await events(app, FAILED) == []

    await window_ends(app, sender)
    [failed] = await events(app, FAILED)
    assert failed["data"]["error_title"] == "no answer"
    assert failed["data"]["retryable"] is False
    assert "may or may not have been sent" in failed["data"]["error_detail"]
    assert (await logged(app, message_id)).state == "failed"
    assert len(await accepted(sim, message_id)) == 1  # never resent
    assert await events(app, SENT) == []


async def test_a_dead_attempt_meta_has_is_confirmed_by_its_status_not_resent(
    api, gtokens, sim, gateway, sender, simulator
):
    """The attempt dies with its call at Meta (cancelled mid-call, as a killed process
    leaves it: claimed, no outcome). The next look finds the claim and waits for Meta's
    status instead of calling again; the status webhook makes it ``sent`` and puts its
    request back in the queue at once, so the customer's next message does not wait
    out the confirm window."""
    app = gateway[0]
    simulator[0].state.sim.settings.status_delay_s = 4.0  # statuses after the kill
    number = await connect(api, gtokens, sim, gateway, uuid.uuid4(), "808")
    await fault(sim, number, mode="slow", delay_s=30.0)
    event = send_requested(number)
    message_id = event.data["message_id"]
    await deliver(app, app.state.settings, sender, event)
    async with app.state.db.transaction(bypass_rls=True) as s:
        [(seq, request)] = (await s.execute(select(send_queue.c.seq, send_queue.c.request))).all()
    attempt = asyncio.create_task(sender.send(Outbound.from_json(request), queue_seq=seq))
    await wait_for(lambda: accepted(sim, message_id), "call at Meta")
    attempt.cancel()  # the process dies with its call in flight
    with contextlib.suppress(asyncio.CancelledError):
        await attempt
    assert (await logged(app, message_id)).state == "claimed"
    assert (await sim.delete("/_sim/failures")).status_code == 204

    await Dispatcher(sender.settings, app.state.db, sender).drain()  # taken again
    assert (await logged(app, message_id)).state == "orphaned"
    assert len(await accepted(sim, message_id)) == 1  # not called again

    async def confirmed() -> list[dict[str, Any]]:
        return await events(app, SENT)

    [sent] = await wait_for(confirmed, "sent event")
    [at_meta] = await accepted(sim, message_id)
    assert sent["data"]["wamid"] == at_meta["wamid"]
    # Due again at once (not after the 60 s window): the next look settles it.
    await Dispatcher(sender.settings, app.state.db, sender).drain()
    async with app.state.db.transaction(bypass_rls=True) as s:
        assert (await s.execute(select(send_queue))).all() == []
    assert len(await accepted(sim, message_id)) == 1
    assert len(await events(app, SENT)) == 1 and await events(app, FAILED) == []


async def test_slow_5xx_answers_are_retried_with_backoff_and_sent_once(
    api, gtokens, sim, gateway, sender
):
    app = gateway[0]
    number = await connect(api, gtokens, sim, gateway, uuid.uuid4(), "803")
    # Two slow "service unavailable" answers (HTTP 503, 131016), each within the timeout.
    await fault(sim, number, code=131016, delay_s=TIMEOUT_S / 5, times=2)
    event = send_requested(number)
    await consume(app, app.state.settings, sender, event)
    assert len(await accepted(sim, event.data["message_id"])) == 1
    assert len(await events(app, SENT)) == 1
    assert await events(app, FAILED) == []
    assert await attempts(app, event.data["message_id"]) == 3


async def test_a_persistent_5xx_fails_as_retryable(api, gtokens, sim, gateway, sender):
    app = gateway[0]
    number = await connect(api, gtokens, sim, gateway, uuid.uuid4(), "804")
    max_attempts = sender.settings.send_max_attempts
    await fault(sim, number, code=131000, http_status=502, times=max_attempts)
    event = send_requested(number)
    await consume(app, app.state.settings, sender, event)
    [failed] = await events(app, FAILED)
    assert (failed["data"]["error_code"], failed["data"]["retryable"]) == (131000, True)
    assert await attempts(app, event.data["message_id"]) == max_attempts
    assert await accepted(sim, event.data["message_id"]) == []


async def test_an_expired_token_fails_and_disconnects_the_number(
    api, gtokens, sim, gateway, sender
):
    app = gateway[0]
    org = uuid.uuid4()
    number = await connect(api, gtokens, sim, gateway, org, "805")
    await fault(sim, number, code=190)
    await consume(app, app.state.settings, sender, send_requested(number))
    [failed] = await events(app, FAILED)
    assert (failed["data"]["error_code"], failed["data"]["retryable"]) == (190, False)
    assert "reconnect" in failed["data"]["error_detail"]
    shown = await api.get(
        f"/v1/whatsapp/numbers/{number['id']}", headers=gtokens.headers(organization_id=org)
    )
    assert shown.json()["status"] == "disconnected"
    # The next send fails before calling Meta.
    await consume(app, app.state.settings, sender, send_requested(number))
    assert (await sim.get("/_sim/sent")).json() == []
    assert [e["data"]["error_title"] for e in await events(app, FAILED)][-1] == (
        "number disconnected"
    )
