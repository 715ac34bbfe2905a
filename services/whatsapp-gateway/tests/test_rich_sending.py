"""Rich sends (templates, interactive, media), mark-as-read, and throughput pacing."""

import time
import uuid
from contextlib import aclosing

import pytest
from sqlalchemy import insert

from pytake_common.event_types import CONVERSATIONS_MESSAGE_READ_REQUESTED_V1
from pytake_common.events import CloudEvent
from pytake_whatsapp_gateway.app import graph_http_client
from pytake_whatsapp_gateway.sending.dispatcher import recipient_key
from pytake_whatsapp_gateway.sending.pacing import LEAVE_SHARE
from pytake_whatsapp_gateway.sending.sender import Sender
from pytake_whatsapp_gateway.tables import templates
from pytake_whatsapp_gateway.templates.store import template_id

from .helpers import events, register
from .test_pacing import CLOCK_S, tightest_span
from .test_sending import FAILED, SENT, consume, deliver, send_requested

TEMPLATE = {
    "name": "pedido_enviado",
    "language": {"code": "pt_BR"},
    "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}],
}


@pytest.fixture
async def sender(app, settings):
    async with (
        graph_http_client(settings) as http,
        aclosing(Sender(settings, app.state.db, app.state.secret_box, http)) as sender,
    ):
        yield sender


@pytest.fixture
async def number(client, tokens):
    return await register(client, tokens, uuid.uuid4(), "200", app_secret="s")


def rich(number, kind, payload, to="5511999990000"):
    event = send_requested(number, to=to)
    data = {k: v for k, v in event.data.items() if k != "text"}
    return CloudEvent.model_validate(
        event.model_dump() | {"data": data | {"type": kind, "payload": payload}}
    )


async def store_template(app, number, status):
    org = uuid.UUID(number["organization_id"])
    async with app.state.db.transaction(organization_id=org) as s:
        await s.execute(
            insert(templates).values(
                id=template_id(org, number["waba_id"], "pedido_enviado", "pt_BR"),
                organization_id=org,
                waba_id=number["waba_id"],
                name="pedido_enviado",
                language="pt_BR",
                category="UTILITY",
                status=status,
                components=[{"type": "BODY", "text": "Olá {{1}}, seu pedido saiu"}],
            )
        )


async def test_templates_must_be_known_and_approved_before_calling_meta(
    app, settings, sender, graph, number
):
    await consume(app, settings, sender, rich(number, "template", TEMPLATE))
    await store_template(app, number, "PAUSED")
    await consume(app, settings, sender, rich(number, "template", TEMPLATE))
    assert graph.requests == []
    details = [e["data"]["error_detail"] for e in await events(app, FAILED)]
    assert "is not known for this number's WhatsApp Business account" in details[0]
    assert "is PAUSED, not APPROVED" in details[1]
    assert {e["data"]["retryable"] for e in await events(app, FAILED)} == {False}


async def test_an_approved_template_and_other_types_are_sent_as_meta_expects(
    app, settings, sender, graph, number
):
    await store_template(app, number, "PENDING")
    async with app.state.db.transaction(organization_id=number["organization_id"]) as s:
        await s.execute(templates.update().values(status="APPROVED"))
    image = {"link": "https://cdn.example/receipt.png", "caption": "Recibo"}
    events_ = [
        rich(number, "template", TEMPLATE, to="551100000001"),
        rich(number, "image", image, to="551100000002"),
        rich(number, "location", {"latitude": -23.5, "longitude": -46.6}, to="551100000003"),
    ]
    await consume(app, settings, sender, *events_)
    sent = {r["json"]["type"]: r["json"] for r in graph.requests}
    assert sent["template"]["template"] == TEMPLATE
    assert sent["image"]["image"] == image
    assert sent["location"]["location"]["latitude"] == -23.5
    assert len(await events(app, SENT)) == 3


async def test_limits_fail_without_calling_meta(app, settings, sender, graph, number):
    too_many = {
        "type": "button",
        "body": {"text": "Escolha"},
        "action": {
            "buttons": [{"type": "reply", "reply": {"id": str(i), "title": "Ok"}} for i in range(4)]
        },
    }
    await consume(app, settings, sender, rich(number, "interactive", too_many))
    assert graph.requests == []
    [failed] = await events(app, FAILED)
    assert failed["data"]["error_title"] == "invalid message"
    assert failed["data"]["error_detail"] == "at most 3 reply buttons (4 given)"


async def test_a_read_request_marks_the_message_read_once(app, settings, sender, graph, number):
    def read_requested() -> CloudEvent:
        return CloudEvent(
            source="pytake/conversations",
            type=CONVERSATIONS_MESSAGE_READ_REQUESTED_V1,
            subject=str(uuid.uuid4()),
            tenantid=number["organization_id"],
            data={
                "organization_id": number["organization_id"],
                "conversation_id": str(uuid.uuid4()),
                "number_id": number["id"],
                "phone_number_id": "200",
                "wamid": "wamid.customer",
                "message_id": str(uuid.uuid4()),
            },
        )

    first = read_requested()
    await deliver(app, settings, sender, first, first, read_requested())
    [call] = graph.requests
    assert call["json"] == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.customer",
    }


async def test_throughput_and_pair_rate_are_paced(app, settings, graph, client, tokens):
    """Asserted on what the pacers guarantee whatever the machine's load (see test_pacing).

    Departures (where the Graph call leaves) are recorded in this process: any
    ``limit + 1`` of them span at least ``1 + a - b`` s. Arrivals at the fake Graph API
    add a travel time; with ``J`` its measured spread, any ``limit + 1`` arrivals span
    at least ``1 + a - b - J``, and when ``J <= a - b`` no one-second window holds more
    than the limit. A loaded machine makes sends slower, never denser.
    """
    travel = settings.pace_jitter_allowance_s * (1 - LEAVE_SHARE)  # production's a - b
    paced = settings.model_copy(
        update={"pair_interval_s": 0.6, "pair_burst": 2, "send_concurrency": 8}
    )
    org = uuid.uuid4()
    number = await register(client, tokens, org, "201", app_secret="s")
    r = await client.patch(
        f"/v1/whatsapp/numbers/{number['id']}",
        json={"throughput_per_second": 5},
        headers=tokens.headers(organization_id=org),
    )
    assert r.status_code == 200
    many = [send_requested(number, to=f"55119{i:08d}") for i in range(11)]
    same = [send_requested(number, to="5511777770000", body=f"#{i}") for i in range(3)]
    departures: dict[tuple[str, str], float] = {}
    admissions: list[tuple[float, float]] = []  # (asked at, admitted by) for "same"
    async with (
        graph_http_client(paced) as http,
        aclosing(Sender(paced, app.state.db, app.state.secret_box, http)) as sender,
    ):
        send, admit = sender.graph.send, sender.pacer.admit_pair
        one = recipient_key(uuid.UUID(number["id"]), "5511777770000")

        async def recorded_send(phone_number_id, token, payload, gate):
            async def departing(fresh: bool) -> None:  # the pacer lets the bytes go
                await gate(fresh)
                departures[payload["to"], payload["text"]["body"]] = time.monotonic()

            return await send(phone_number_id, token, payload, gate=departing)

        async def recorded_admit(session, number_id, key):
            asked = time.monotonic()
            wait = await admit(session, number_id, key)
            if key == one and wait == 0:
                admissions.append((asked, time.monotonic()))
            return wait

        sender.graph.send = recorded_send
        sender.pacer.admit_pair = recorded_admit
        await consume(app, paced, sender, *same, *many)
    arrivals = {(q["json"]["to"], q["json"]["text"]["body"]): q["time"] for q in graph.requests}
    assert len(graph.requests) == len(arrivals) == len(departures) == 14
    assert tightest_span(list(departures.values()), 6) >= 1 + travel - CLOCK_S
    trips = [arrivals[k] - departures[k] for k in departures]
    spread = max(trips) - min(trips)
    assert tightest_span(list(arrivals.values()), 6) >= 1 + travel - spread - CLOCK_S
    if spread <= travel:  # the travel part of the allowance held: the limit itself
        times = sorted(arrivals.values())
        assert max(sum(1 for t in times if s <= t < s + 1.0) for s in times) <= 5
    # Meta's pair rate: after a burst of 2, the third message to one customer is
    # admitted an interval after the first, and the customer gets them in order.
    to_one = [q for q in graph.requests if q["json"]["to"] == "5511777770000"]
    assert [q["json"]["text"]["body"] for q in to_one] == ["#0", "#1", "#2"]
    assert len(admissions) == 3
    assert admissions[2][1] - admissions[0][0] >= 0.6 - CLOCK_S
