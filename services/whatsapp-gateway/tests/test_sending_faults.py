"""Sending through the real Meta simulator's switchable faults: slow answers, 5xx, 190.

A slow answer is the dangerous one. The Cloud API has no idempotency key for
``POST /messages``: when the answer does not arrive within the timeout, Meta may
already have the message, and a blind retry would deliver it twice. So a call
whose request reached Meta and got no answer is not resent (``no answer``,
``retryable: false``); Meta's status webhooks, which echo our message id in
``biz_opaque_callback_data``, then say what became of it. Errors that arrive,
even slowly, are classified as usual: transient ones are retried with backoff.
"""

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from pytake_whatsapp_gateway.app import graph_http_client
from pytake_whatsapp_gateway.sending.sender import Sender
from pytake_whatsapp_gateway.tables import send_log

from .support import connect, events
from .test_sending import FAILED, SENT, consume, send_requested

STATUS = "pytake.whatsapp.message.status_updated.v1"
TIMEOUT_S = 0.5


@pytest.fixture
async def sender(gateway):
    app = gateway[0]
    settings = app.state.settings.model_copy(update={"send_timeout_s": TIMEOUT_S})
    async with graph_http_client(settings) as http:
        yield Sender(settings, app.state.db, app.state.secret_box, http)


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
    async with app.state.db.transaction(bypass_rls=True) as s:
        return await s.scalar(
            select(send_log.c.attempts).where(send_log.c.message_id == uuid.UUID(message_id))
        )


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


async def test_a_slow_answer_past_the_timeout_is_not_sent_twice(api, gtokens, sim, gateway, sender):
    app = gateway[0]
    number = await connect(api, gtokens, sim, gateway, uuid.uuid4(), "802")
    # Accepted at once, answered long after the gateway's timeout.
    await fault(sim, number, mode="slow", delay_s=3.0)
    event = send_requested(number)
    message_id = event.data["message_id"]
    await consume(app, app.state.settings, sender, event)

    [failed] = await events(app, FAILED)
    assert failed["data"]["error_title"] == "no answer"
    assert failed["data"]["retryable"] is False
    assert "may or may not have been sent" in failed["data"]["error_detail"]
    assert await attempts(app, message_id) == 1  # timed out once, not retried
    # Redelivering the same request does not call Meta again either.
    await consume(app, app.state.settings, sender, event)
    assert len(await accepted(sim, message_id)) == 1  # Meta has it exactly once
    assert await events(app, SENT) == []

    # Meta's status webhooks carry our id back: the message is known to be delivered.
    for _ in range(100):
        statuses = [e for e in await events(app, STATUS) if e["data"]["message_id"] == message_id]
        if {"sent", "delivered"} <= {e["data"]["status"] for e in statuses}:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"no sent/delivered status for {message_id}: {statuses}")


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
