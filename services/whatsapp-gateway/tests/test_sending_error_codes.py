"""Every Graph API error code of WHATSAPP.md, injected by the real Meta simulator.

For each code, both ways Meta reports it:

- ``mode: http`` — the send call answers the error. Transient codes (and bare
  5xx answers) are retried with exponential backoff and jitter and the message
  is finally sent once; if they persist it fails with ``retryable: true``.
  Terminal codes fail at once with PyTake's clear reason and ``retryable: false``,
  and Meta is never called again for the message.
- ``mode: status`` — the call is accepted (200 and a wamid) and Meta reports the
  error later in a ``failed`` status webhook. The message was accepted once:
  it is ``sent`` and never resent, and the failure reaches the platform as a
  ``status_updated`` event carrying Meta's code, title and details.

Each case checks what the simulator accepted (exactly one or zero sends), what
the gateway recorded (``send_log`` state and attempts) and emitted.
"""

import asyncio
import uuid
from contextlib import aclosing
from typing import Any

import pytest
from sqlalchemy import select

from pytake_meta_simulator.errors import error_info
from pytake_whatsapp_gateway.app import graph_http_client
from pytake_whatsapp_gateway.sending.errors import DETAILS
from pytake_whatsapp_gateway.sending.sender import Sender
from pytake_whatsapp_gateway.tables import send_log

from .helpers import connect, events
from .test_sending import FAILED, SENT, consume, send_requested

STATUS = "pytake.whatsapp.message.status_updated.v1"
BACKOFF_S = 0.01
MAX_BACKOFF_S = 0.04
MAX_ATTEMPTS = 4

#: Retried with backoff (WHATSAPP.md): throughput, pair rate, maintenance, unknown,
#: service unavailable, media download/upload ("a few times"), call-rate limits.
TRANSIENT = [130429, 131056, 131057, 131000, 131016, 131052, 131053, 4, 80007]
#: Terminal: window closed, undeliverable, unsupported type, template errors,
#: policy block. 190 (token) is terminal too and also disconnects the number.
#: 131048 (spam rate or messaging limit), 131049 (per-user marketing limit) and 131050
#: (the user stopped marketing messages) are terminal: a campaign records them.
TERMINAL = [
    131047,
    131026,
    131051,
    132000,
    132001,
    132005,
    132007,
    132012,
    132015,
    132016,
    368,
    131048,
    131049,
    131050,
]


class RecordingSleep:
    """The sender's backoff sleeps, recorded (and kept short)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def sleeps() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def sender(gateway, sleeps):
    app = gateway[0]
    settings = app.state.settings.model_copy(
        update={
            "send_max_attempts": MAX_ATTEMPTS,
            "send_retry_backoff_s": BACKOFF_S,
            "send_retry_max_backoff_s": MAX_BACKOFF_S,
        }
    )
    async with (
        graph_http_client(settings) as http,
        aclosing(
            Sender(settings, app.state.db, app.state.secret_box, http, sleep=sleeps)
        ) as sender,
    ):
        yield sender


async def setup(api, gtokens, sim, gateway, key: int, **rule: Any) -> dict[str, Any]:
    number = await connect(api, gtokens, sim, gateway, uuid.uuid4(), f"7{key}")
    r = await sim.post(
        "/_sim/failures", json={"phone_number_id": number["phone_number_id"], **rule}
    )
    assert r.status_code == 200, r.text
    return number


async def accepted(sim, message_id: str) -> list[dict[str, Any]]:
    sent = (await sim.get("/_sim/sent")).json()
    return [s for s in sent if s["body"].get("biz_opaque_callback_data") == message_id]


async def logged(app, message_id: str) -> Any:
    async with app.state.db.transaction(bypass_rls=True) as s:
        return (
            await s.execute(select(send_log).where(send_log.c.message_id == uuid.UUID(message_id)))
        ).one()


async def triggered(sim) -> int:
    return sum(rule["triggered"] for rule in (await sim.get("/_sim/failures")).json())


def assert_backoff(delays: list[float]) -> None:
    """Exponential (doubling, capped) with jitter in [half, full] of each step."""
    for attempt, delay in enumerate(delays, start=1):
        step = min(MAX_BACKOFF_S, BACKOFF_S * 2 ** (attempt - 1))
        assert step / 2 <= delay <= step, (attempt, delay)


@pytest.mark.parametrize("code", TRANSIENT)
async def test_a_transient_http_error_is_retried_with_backoff_and_sent_once(
    api, gtokens, sim, gateway, sender, sleeps, code
):
    app = gateway[0]
    number = await setup(api, gtokens, sim, gateway, code, code=code, times=MAX_ATTEMPTS - 1)
    event = send_requested(number)
    message_id = event.data["message_id"]
    await consume(app, app.state.settings, sender, event)

    [at_meta] = await accepted(sim, message_id)
    assert await triggered(sim) == MAX_ATTEMPTS - 1
    row = await logged(app, message_id)
    assert (row.state, row.attempts, row.wamid) == ("sent", MAX_ATTEMPTS, at_meta["wamid"])
    [sent] = await events(app, SENT)
    assert sent["data"]["wamid"] == at_meta["wamid"]
    assert await events(app, FAILED) == []
    assert len(sleeps.delays) == MAX_ATTEMPTS - 1
    assert_backoff(sleeps.delays)


@pytest.mark.parametrize("code", TRANSIENT)
async def test_a_persistent_transient_http_error_fails_as_retryable(
    api, gtokens, sim, gateway, sender, sleeps, code
):
    app = gateway[0]
    number = await setup(api, gtokens, sim, gateway, code, code=code, times=MAX_ATTEMPTS + 5)
    event = send_requested(number)
    message_id = event.data["message_id"]
    await consume(app, app.state.settings, sender, event)

    assert await accepted(sim, message_id) == []
    assert await triggered(sim) == MAX_ATTEMPTS
    [failed] = await events(app, FAILED)
    data = failed["data"]
    assert (data["error_code"], data["retryable"]) == (code, True)
    assert data["error_detail"].startswith(DETAILS[code])
    assert data["error_title"] == f"(#{code}) {error_info(code).title}"
    row = await logged(app, message_id)
    assert (row.state, row.attempts, row.error_code) == ("failed", MAX_ATTEMPTS, code)
    assert await events(app, SENT) == []
    assert_backoff(sleeps.delays)


@pytest.mark.parametrize("http_status", [500, 502, 503, 504])
async def test_a_bare_5xx_without_metas_error_body_is_retried_and_sent_once(
    api, gtokens, sim, gateway, sender, sleeps, http_status
):
    app = gateway[0]
    number = await setup(api, gtokens, sim, gateway, http_status, http_status=http_status, times=2)
    event = send_requested(number)
    message_id = event.data["message_id"]
    await consume(app, app.state.settings, sender, event)

    assert len(await accepted(sim, message_id)) == 1
    row = await logged(app, message_id)
    assert (row.state, row.attempts) == ("sent", 3)
    assert len(await events(app, SENT)) == 1
    assert_backoff(sleeps.delays)


async def test_a_persistent_bare_5xx_fails_as_retryable(api, gtokens, sim, gateway, sender):
    app = gateway[0]
    number = await setup(api, gtokens, sim, gateway, 502, http_status=502, times=MAX_ATTEMPTS)
    event = send_requested(number)
    await consume(app, app.state.settings, sender, event)

    assert await accepted(sim, event.data["message_id"]) == []
    [failed] = await events(app, FAILED)
    data = failed["data"]
    assert (data["error_code"], data["error_title"], data["retryable"]) == (
        None,
        "HTTP 502",
        True,
    )
    assert "HTTP 502" in data["error_detail"]


@pytest.mark.parametrize("code", TERMINAL)
async def test_a_terminal_http_error_fails_at_once_with_a_clear_reason(
    api, gtokens, sim, gateway, sender, sleeps, code
):
    app = gateway[0]
    number = await setup(api, gtokens, sim, gateway, code, code=code, times=5)
    event = send_requested(number)
    message_id = event.data["message_id"]
    await consume(app, app.state.settings, sender, event)

    assert await accepted(sim, message_id) == []
    assert await triggered(sim) == 1  # never retried
    assert sleeps.delays == []
    [failed] = await events(app, FAILED)
    data = failed["data"]
    assert (data["error_code"], data["retryable"]) == (code, False)
    assert data["error_title"] == f"(#{code}) {error_info(code).title}"
    # PyTake's own reason first, then Meta's details.
    assert data["error_detail"] == f"{DETAILS[code]} ({error_info(code).details})"
    row = await logged(app, message_id)
    assert (row.state, row.attempts, row.error_code) == ("failed", 1, code)
    assert row.error_detail == data["error_detail"]
    assert await events(app, SENT) == []
    # Handled again (Kafka redelivery): still not resent, no second outcome.
    await consume(app, app.state.settings, sender, event)
    assert await triggered(sim) == 1
    assert len(await events(app, FAILED)) == 1


async def test_an_expired_token_fails_at_once_and_disconnects(
    api, gtokens, sim, gateway, sender, sleeps
):
    app = gateway[0]
    number = await setup(api, gtokens, sim, gateway, 190, code=190, times=5)
    event = send_requested(number)
    await consume(app, app.state.settings, sender, event)

    assert await accepted(sim, event.data["message_id"]) == []
    assert await triggered(sim) == 1
    assert sleeps.delays == []
    [failed] = await events(app, FAILED)
    data = failed["data"]
    assert (data["error_code"], data["retryable"]) == (190, False)
    assert data["error_detail"] == DETAILS[190]
    async with app.state.db.transaction(bypass_rls=True) as s:
        row = (await s.execute(select(send_log))).one()
    assert (row.state, row.attempts) == ("failed", 1)


@pytest.mark.parametrize("code", [*TRANSIENT, *TERMINAL, 190])
async def test_an_error_in_a_failed_status_webhook_is_reported_and_never_resent(
    api, gtokens, sim, gateway, sender, sleeps, code
):
    app = gateway[0]
    number = await setup(api, gtokens, sim, gateway, code, code=code, mode="status", times=5)
    event = send_requested(number)
    message_id = event.data["message_id"]
    await consume(app, app.state.settings, sender, event)

    [at_meta] = await accepted(sim, message_id)
    assert at_meta["failure_code"] == code
    row = await logged(app, message_id)
    assert (row.state, row.attempts, row.wamid) == ("sent", 1, at_meta["wamid"])
    assert sleeps.delays == []

    async def failed_status() -> list[dict[str, Any]]:
        return [e for e in await events(app, STATUS) if e["data"]["status"] == "failed"]

    for _ in range(200):
        if found := await failed_status():
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("no failed status event")
    [status] = found
    info = error_info(code)
    assert status["data"]["message_id"] == message_id
    assert status["data"]["wamid"] == at_meta["wamid"]
    [error] = status["data"]["errors"]
    assert (error["code"], error["title"], error["details"]) == (code, info.title, info.details)
    # Accepted once by Meta: the platform learns of the failure, nothing is resent.
    await consume(app, app.state.settings, sender, event)
    assert len(await accepted(sim, message_id)) == 1
    assert await events(app, FAILED) == []
    assert len(await events(app, SENT)) == 1
