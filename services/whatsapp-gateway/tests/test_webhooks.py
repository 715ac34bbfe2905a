import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import insert, select

from pytake_common.ids import PYTAKE_NAMESPACE, contact_id_for, message_id_for_wamid
from pytake_common.mechanics import outbox
from pytake_whatsapp_gateway.api.webhooks import WebhookEdge
from pytake_whatsapp_gateway.tables import (
    inbound_messages,
    send_log,
    status_updates,
    webhook_deliveries,
)

from .helpers import (
    PLATFORM_SECRET,
    change,
    counts,
    envelope,
    events,
    raw,
    register,
    signed,
    text_message,
)

SECRET_A, SECRET_B = "secret-of-tenant-a", "secret-of-tenant-b"
RECEIVED = "pytake.whatsapp.message.received.v1"
STATUS = "pytake.whatsapp.message.status_updated.v1"


@pytest.fixture(autouse=True, params=["looked_up", "remembered"])
def numbers_from(request):
    """Every test twice: numbers looked up per delivery, and remembered by the intake's
    directory (the first delivery of a number looks it up, the next ones do not)."""
    if request.param == "remembered":
        request.getfixturevalue("directory")
    return request.param


def deliveries(outcome: str) -> float:
    return REGISTRY.get_sample_value("pytake_webhook_deliveries_total", {"outcome": outcome}) or 0.0


async def post(client, body: bytes, headers: dict[str, str]):
    await asyncio.sleep(0.05)  # the notifications of numbers just registered land first
    return await client.post("/webhooks/whatsapp", content=body, headers=headers)


# --- handshake -------------------------------------------------------------------------------


async def test_handshake_echoes_the_challenge_for_a_known_verify_token(client, tokens):
    await register(client, tokens, uuid.uuid4(), "100", verify_token="my-verify-token")
    params = {
        "hub.mode": "subscribe",
        "hub.verify_token": "my-verify-token",
        "hub.challenge": "1158201444",
    }
    r = await client.get("/webhooks/whatsapp", params=params)
    assert r.status_code == 200
    assert r.text == "1158201444"
    assert r.headers["content-type"].startswith("text/plain")
    for bad in (
        {"hub.verify_token": "wrong"},
        {"hub.mode": "unsubscribe"},
        {"hub.verify_token": ""},
    ):
        r = await client.get("/webhooks/whatsapp", params=params | bad)
        assert r.status_code == 403
    r = await client.get("/webhooks/whatsapp")
    assert r.status_code == 403


# --- inbound messages --------------------------------------------------------------------------


async def test_signed_inbound_message_is_stored_and_emitted_exactly(app, client, tokens):
    org = uuid.uuid4()
    number = await register(client, tokens, org, "100", app_secret=SECRET_A)
    msg = text_message(
        "wamid.HBgM1",
        wa_id="5511999990000",
        body="Olá, preciso de ajuda",
        timestamp=1_764_000_123,
        context={"from": "15550100000", "id": "wamid.previous"},
    )
    body = raw(
        envelope(
            [
                change(
                    "100",
                    messages=[msg],
                    contacts=[{"profile": {"name": "Maria"}, "wa_id": "5511999990000"}],
                )
            ]
        )
    )
    before = deliveries("accepted")
    r = await post(client, body, signed(body, SECRET_A))
    assert r.status_code == 200
    assert deliveries("accepted") == before + 1

    message_id = message_id_for_wamid("100", "wamid.HBgM1")
    contact_id = contact_id_for(org, "5511999990000")
    async with app.state.db.transaction(organization_id=org) as s:
        row = (await s.execute(select(inbound_messages))).mappings().one()
        stored = (await s.execute(select(webhook_deliveries.c.body))).scalar_one()
    assert row["id"] == message_id and row["organization_id"] == org
    assert row["contact_id"] == contact_id and row["wamid"] == "wamid.HBgM1"
    assert stored == envelope(
        [
            change(
                "100",
                messages=[msg],
                contacts=[{"profile": {"name": "Maria"}, "wa_id": "5511999990000"}],
            )
        ]
    )

    [event] = await events(app, RECEIVED)
    assert event["subject"] == str(contact_id)
    assert event["tenantid"] == str(org)
    assert event["source"] == "pytake/whatsapp-gateway"
    assert event["data"] == {
        "message_id": str(message_id),
        "wamid": "wamid.HBgM1",
        "organization_id": str(org),
        "number_id": number["id"],
        "phone_number_id": "100",
        "display_phone_number": "+55 11 4000-0000",
        "contact_id": str(contact_id),
        "wa_id": "5511999990000",
        "user_id": None,
        "profile_name": "Maria",
        "type": "text",
        "text": "Olá, preciso de ajuda",
        "content": msg,
        "context": {"from": "15550100000", "id": "wamid.previous", "forwarded": False},
        "timestamp": datetime.fromtimestamp(1_764_000_123, UTC).isoformat().replace("+00:00", "Z"),
        "media": None,
        "reaction": None,
        "referral": None,
    }


async def test_the_same_delivery_three_times_makes_one_message_and_one_event(app, client, tokens):
    org = uuid.uuid4()
    await register(client, tokens, org, "100", app_secret=SECRET_A)
    body = raw(envelope([change("100", messages=[text_message("wamid.dup")])]))
    before = deliveries("duplicate")
    for _ in range(3):
        r = await post(client, body, signed(body, SECRET_A))
        assert r.status_code == 200
    assert deliveries("duplicate") == before + 2
    c = await counts(app)
    assert c["webhook_deliveries"] == 3  # every delivery is kept raw
    assert c["inbound_messages"] == 1
    assert len(await events(app, RECEIVED)) == 1


async def test_concurrent_deliveries_of_an_organization_are_written_together(
    app, client, tokens, numbers_from
):
    """Deliveries of one organization that arrive while one of its writes is in flight
    are written together (group commit), each still answered once committed: a message
    delivered twice (in one batch or two) is one message and one event, its second
    delivery a duplicate; every delivery is kept raw; events keep the order in which the
    deliveries reached the write."""
    org = uuid.uuid4()
    await register(client, tokens, org, "100", app_secret=SECRET_A)
    warm = raw(envelope([change("100", messages=[text_message("wamid.warm")])]))
    assert (await post(client, warm, signed(warm, SECRET_A))).status_code == 200
    group = app.state.webhook_intake._messages
    batches, items = group.batches, group.items
    accepted, duplicate = deliveries("accepted"), deliveries("duplicate")
    bodies = [
        raw(envelope([change("100", messages=[text_message(f"wamid.c{i % 15:02}", body=str(i))])]))
        for i in range(30)
    ]
    answers = await asyncio.gather(
        *(client.post("/webhooks/whatsapp", content=b, headers=signed(b, SECRET_A)) for b in bodies)
    )
    assert [a.status_code for a in answers] == [200] * 30
    assert (deliveries("accepted") - accepted, deliveries("duplicate") - duplicate) == (15, 15)
    c = await counts(app)
    assert (c["webhook_deliveries"], c["inbound_messages"]) == (31, 16)
    received = [e["data"]["wamid"] for e in await events(app, RECEIVED)]
    expected = ["wamid.warm", *(f"wamid.c{i:02}" for i in range(15))]
    assert sorted(received) == sorted(expected)
    if numbers_from == "remembered":  # looked up: concurrent transactions, in any order
        assert received == expected
        assert group.items - items == 30
        assert group.batches - batches < 30  # written together, not one by one


async def test_unsigned_or_wrongly_signed_deliveries_store_nothing(app, client, tokens):
    await register(client, tokens, uuid.uuid4(), "100", app_secret=SECRET_A)
    body = raw(envelope([change("100", messages=[text_message("wamid.x")])]))
    before = await counts(app)
    bad = deliveries("bad_signature")
    attempts = [
        {"Content-Type": "application/json"},
        signed(body, "not-the-secret"),
        signed(body, PLATFORM_SECRET),
        {"X-Hub-Signature-256": "sha256=zz"},
        {"X-Hub-Signature-256": signed(body, SECRET_A)["X-Hub-Signature-256"][7:]},
        signed(body + b" ", SECRET_A),  # signature of other bytes
    ]
    for headers in attempts:
        r = await post(client, body, headers)
        assert r.status_code == 401, headers
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "invalid_signature"
    # The signature covers the raw bytes: the same JSON re-serialised does not verify.
    reserialised = raw(envelope([change("100", messages=[text_message("wamid.x")])])).replace(
        b",", b", "
    )
    r = await post(client, reserialised, signed(body, SECRET_A))
    assert r.status_code == 401
    assert await counts(app) == before
    assert deliveries("bad_signature") == bad + len(attempts) + 1


async def test_a_tenant_cannot_sign_for_another_tenants_number(app, client, tokens):
    await register(client, tokens, uuid.uuid4(), "100", app_secret=SECRET_A)
    await register(client, tokens, uuid.uuid4(), "200", app_secret=SECRET_B)
    await register(client, tokens, uuid.uuid4(), "300")  # platform app
    before = await counts(app)
    only_b = raw(envelope([change("200", messages=[text_message("wamid.b")])]))
    both = raw(
        envelope(
            [change("100", messages=[text_message("wamid.a")])],
            [change("200", messages=[text_message("wamid.b")])],
        )
    )
    a_and_platform = raw(
        envelope(
            [
                change("100", messages=[text_message("wamid.a")]),
                change("300", messages=[text_message("wamid.c")]),
            ]
        )
    )
    for body, secret in (
        (only_b, SECRET_A),
        (both, SECRET_A),
        (both, SECRET_B),
        (a_and_platform, SECRET_A),
        (a_and_platform, PLATFORM_SECRET),
    ):
        r = await post(client, body, signed(body, secret))
        assert r.status_code == 401
    assert await counts(app) == before


async def test_platform_app_secret_serves_numbers_without_their_own(app, client, tokens):
    org_1, org_2 = uuid.uuid4(), uuid.uuid4()
    await register(client, tokens, org_1, "300")
    await register(client, tokens, org_2, "400")
    body = raw(
        envelope(
            [
                change("300", messages=[text_message("wamid.p1")]),
                change("400", messages=[text_message("wamid.p2")]),
            ]
        )
    )
    r = await post(client, body, signed(body, PLATFORM_SECRET))
    assert r.status_code == 200
    received = await events(app, RECEIVED)
    assert {(e["tenantid"], e["data"]["wamid"]) for e in received} == {
        (str(org_1), "wamid.p1"),
        (str(org_2), "wamid.p2"),
    }
    async with app.state.db.transaction(organization_id=org_1) as s:
        rows = (await s.execute(select(inbound_messages.c.wamid))).scalars().all()
    assert rows == ["wamid.p1"]  # each tenant's row is written (and read) under its RLS


async def test_every_entry_change_and_message_is_processed(app, client, tokens):
    org = uuid.uuid4()
    await register(client, tokens, org, "100", app_secret=SECRET_A)
    await register(client, tokens, org, "101", app_secret=SECRET_A)
    image = {
        "from": "5511911110000",
        "id": "wamid.img",
        "timestamp": "1764000001",
        "type": "image",
        "image": {
            "id": "media-1",
            "mime_type": "image/jpeg",
            "sha256": "abc",
            "caption": "receipt",
        },
    }
    reaction = {
        "from": "5511911110000",
        "id": "wamid.react",
        "timestamp": "1764000002",
        "type": "reaction",
        "reaction": {"message_id": "wamid.img", "emoji": ""},
    }
    future = {
        "from": "5511922220000",
        "id": "wamid.future",
        "timestamp": "1764000003",
        "type": "hologram",
        "hologram": {"id": "h-1"},
    }
    forwarded = text_message("wamid.fwd", wa_id="5511922220000", context={"forwarded": True})
    body = raw(
        envelope(
            [change("100", messages=[image, reaction]), change("101", messages=[future])],
            [change("100", messages=[forwarded, text_message("wamid.t2", wa_id="5511933330000")])],
        )
    )
    r = await post(client, body, signed(body, SECRET_A))
    assert r.status_code == 200
    received = {e["data"]["wamid"]: e["data"] for e in await events(app, RECEIVED)}
    assert set(received) == {"wamid.img", "wamid.react", "wamid.future", "wamid.fwd", "wamid.t2"}
    # A media message's caption is its text; the media is typed (bytes fetched later).
    assert received["wamid.img"]["type"] == "image" and received["wamid.img"]["text"] == "receipt"
    assert received["wamid.img"]["content"] == image
    assert received["wamid.img"]["media"] == {
        "media_id": "media-1",
        "mime_type": "image/jpeg",
        "sha256": "abc",
        "storage_key": None,
        "download_path": f"/v1/whatsapp/media/{received['wamid.img']['message_id']}",
        "voice": False,
        "filename": None,
    }
    # An empty emoji: the customer removed the reaction.
    assert received["wamid.react"]["reaction"] == {"message_id": "wamid.img", "emoji": ""}
    assert received["wamid.react"]["media"] is None
    assert received["wamid.future"]["type"] == "hologram"
    assert received["wamid.future"]["phone_number_id"] == "101"
    assert received["wamid.fwd"]["context"] == {"from": None, "id": None, "forwarded": True}
    assert (await counts(app))["inbound_messages"] == 5


async def test_business_scoped_user_ids_key_the_contact(app, client, tokens):
    org = uuid.uuid4()
    await register(client, tokens, org, "100", app_secret=SECRET_A)
    msg = {
        "from_user_id": "US.13491208655302741918",
        "id": "wamid.bsuid",
        "timestamp": "1764000000",
        "type": "text",
        "text": {"body": "hi"},
    }
    contacts = [{"profile": {"name": "Ana"}, "user_id": "US.13491208655302741918"}]
    body = raw(envelope([change("100", messages=[msg], contacts=contacts)]))
    assert (await post(client, body, signed(body, SECRET_A))).status_code == 200
    [event] = await events(app, RECEIVED)
    assert event["data"]["wa_id"] is None
    assert event["data"]["user_id"] == "US.13491208655302741918"
    assert event["data"]["profile_name"] == "Ana"
    assert event["data"]["contact_id"] == str(contact_id_for(org, None, "US.13491208655302741918"))


# --- statuses --------------------------------------------------------------------------------


def status(wamid: str, state: str, ts: int = 1_764_000_100, **extra) -> dict:
    return {
        "id": wamid,
        "status": state,
        "timestamp": str(ts),
        "recipient_id": "5511999990000",
        **extra,
    }


PRICING = {"billable": True, "pricing_model": "PMP", "category": "marketing", "type": "regular"}


async def test_statuses_are_deduplicated_by_wamid_and_status(app, client, tokens):
    org = uuid.uuid4()
    number = await register(client, tokens, org, "100", app_secret=SECRET_A)
    ours, in_flight = uuid.uuid4(), uuid.uuid4()
    async with app.state.db.transaction(organization_id=org) as s:
        await s.execute(
            insert(send_log).values(
                message_id=ours,
                organization_id=org,
                number_id=uuid.UUID(number["id"]),
                recipient="5511999990000",
                state="sent",
                wamid="wamid.out1",
            )
        )
        await s.execute(
            insert(send_log).values(
                message_id=in_flight,
                organization_id=org,
                number_id=uuid.UUID(number["id"]),
                recipient="5511999990000",
                state="claimed",
            )
        )
    failed = status(
        "wamid.out2",
        "failed",
        errors=[
            {
                "code": 131047,
                "title": "Re-engagement message",
                "message": "Re-engagement message",
                "error_data": {"details": "Message failed to send because more than 24 hours"},
            }
        ],
        biz_opaque_callback_data=str(ours),
    )
    first = raw(
        envelope(
            [
                change(
                    "100",
                    statuses=[
                        status("wamid.out1", "sent"),
                        status("wamid.out1", "delivered", 1_764_000_101, pricing=PRICING),
                    ],
                )
            ]
        )
    )
    second = raw(
        envelope(
            [
                change(
                    "100",
                    statuses=[
                        status("wamid.out1", "delivered", 1_764_000_101),
                        status("wamid.out1", "read"),
                        status("wamid.other", "read"),
                        failed,
                        status("wamid.out3", "sent", biz_opaque_callback_data=str(in_flight)),
                    ],
                )
            ]
        )
    )
    for body in (first, second, first):
        assert (await post(client, body, signed(body, SECRET_A))).status_code == 200
    updates = await events(app, STATUS)
    assert [(e["data"]["wamid"], e["data"]["status"]) for e in updates] == [
        ("wamid.out1", "sent"),
        ("wamid.out1", "delivered"),
        ("wamid.out1", "read"),
        ("wamid.other", "read"),
        ("wamid.out2", "failed"),
        ("wamid.out3", "sent"),
    ]
    sent = updates[0]
    assert sent["subject"] == str(ours)
    assert sent["data"] == {
        "message_id": str(ours),
        "wamid": "wamid.out1",
        "organization_id": str(org),
        "number_id": number["id"],
        "status": "sent",
        "timestamp": datetime.fromtimestamp(1_764_000_100, UTC).isoformat().replace("+00:00", "Z"),
        "recipient_id": "5511999990000",
        "errors": [],
        "pricing": None,
    }
    # Meta's pricing object, its documented fields (``type`` is not carried)
    assert updates[1]["data"]["pricing"] == {
        "category": "marketing",
        "billable": True,
        "pricing_model": "PMP",
    }
    other = updates[3]
    assert other["data"]["message_id"] is None
    assert other["subject"] == str(uuid.uuid5(PYTAKE_NAMESPACE, "wamid:wamid.other"))
    assert updates[4]["data"]["message_id"] is None  # callback data names no message of ours
    assert updates[4]["data"]["errors"] == [
        {
            "code": 131047,
            "title": "Re-engagement message",
            "message": "Re-engagement message",
            "details": "Message failed to send because more than 24 hours",
        }
    ]
    # A status overtaking our record of the wamid is matched by the echoed callback data.
    assert updates[5]["data"]["message_id"] == str(in_flight)
    assert (await counts(app))["status_updates"] == 6


async def test_statuses_by_the_fast_path_equal_the_general_paths(
    app, client, tokens, directory, numbers_from, monkeypatch
):
    """Statuses of a remembered number are one statement (``STATUSES_SQL``); the same
    deliveries through the general path (numbers looked up, statements per status) leave
    the same status rows and stage the same events, in the same order."""
    if numbers_from == "looked_up":
        pytest.skip("this test takes both paths itself")
    intake = app.state.webhook_intake
    general, fast_outcomes = True, []
    remembered_numbers, fast_path = directory.get, intake._receive_remembered

    async def spy(*args):
        outcome = await fast_path(*args)
        fast_outcomes.append(outcome)
        return outcome

    monkeypatch.setattr(directory, "get", lambda ids: None if general else remembered_numbers(ids))
    monkeypatch.setattr(intake, "_receive_remembered", spy)
    limit = {"code": 131049, "title": "Marketing limit", "message": "Marketing limit"}

    async def run(org: uuid.UUID, phone: str) -> tuple[list, list]:
        number = await register(client, tokens, org, phone, app_secret=SECRET_A)
        labels = {str(org): "org", number["id"]: "number"}
        async with app.state.db.transaction(organization_id=org) as s:
            for label, state, wamid in (
                ("ours", "sent", "wamid.out1"),
                ("failed_send", "failed", None),  # found by the callback data only
                ("echoed", "sent", "wamid.out3"),  # by wamid and callback data
            ):
                message_id = uuid.uuid4()
                labels[str(message_id)] = label
                await s.execute(
                    insert(send_log).values(
                        message_id=message_id,
                        organization_id=org,
                        number_id=uuid.UUID(number["id"]),
                        recipient="5511999990000",
                        state=state,
                        wamid=wamid,
                    )
                )
        ids = {v: k for k, v in labels.items()}
        batches = [
            [status("wamid.warm", "sent")],  # the number's first delivery: looked up
            [
                status("wamid.out1", "sent"),
                status("wamid.out1", "delivered", 1_764_000_101, pricing=PRICING),
            ],
            [
                status("wamid.out1", "delivered", 1_764_000_101),
                status("wamid.out1", "read", 1_764_000_102),
                status("wamid.out1", "read", 1_764_000_102),  # twice in one delivery
                status("wamid.other", "read"),
                status(
                    "wamid.out2",
                    "failed",
                    errors=[{**limit, "error_data": {"details": "limit"}}],
                    biz_opaque_callback_data=ids["failed_send"],
                ),
                status("wamid.out3", "sent", biz_opaque_callback_data=ids["echoed"]),
            ],
            [status("wamid.out1", "failed", 1_764_000_103, errors=[limit])],
            [
                status("wamid.out1", "sent"),
                status("wamid.out1", "delivered", 1_764_000_101, pricing=PRICING),
            ],  # a replay: nothing new
        ]
        for batch in batches:
            body = raw(envelope([change(phone, statuses=batch)]))
            assert (await post(client, body, signed(body, SECRET_A))).status_code == 200

        def named(value):
            if isinstance(value, dict):
                return {k: named(v) for k, v in value.items() if k not in ("id", "time")}
            if isinstance(value, list | tuple):
                return [named(v) for v in value]
            return labels.get(str(value), value)

        async with app.state.db.transaction(bypass_rls=True) as s:
            rows = (
                await s.execute(
                    select(
                        status_updates.c.wamid,
                        status_updates.c.status,
                        status_updates.c.message_id,
                        status_updates.c.occurred_at,
                        status_updates.c.number_id,
                    )
                    .where(status_updates.c.organization_id == org)
                    .order_by(status_updates.c.wamid, status_updates.c.status)
                )
            ).all()
            staged = (
                await s.execute(
                    select(
                        outbox.c.event_id, outbox.c.key, outbox.c.event, outbox.c.headers
                    ).order_by(outbox.c.id)
                )
            ).all()
        mine = [e for e in staged if e.event["tenantid"] == str(org) and e.event["type"] == STATUS]
        # the relay hands them to Kafka as a mapping (a JSON string stopped the relay)
        assert all(isinstance(e.headers, dict) for e in mine)
        for e in mine:  # the event id is the status's dedupe key, whichever path staged it
            key = f"event:status:{phone}:{e.event['data']['wamid']}:{e.event['data']['status']}"
            assert e.event_id == uuid.uuid5(PYTAKE_NAMESPACE, key) == uuid.UUID(e.event["id"])
        return [named(list(r)) for r in rows], [(named(e.key), named(e.event)) for e in mine]

    looked_up = await run(uuid.uuid4(), "300")
    assert fast_outcomes == []
    general = False
    remembered = await run(uuid.uuid4(), "400")
    assert fast_outcomes == ["accepted", "accepted", "accepted", "duplicate"]
    assert remembered == looked_up
    rows, staged = remembered
    assert len(rows) == 8 and len(staged) == 8
    assert [r[2] for r in rows if r[0] in ("wamid.out1", "wamid.out2", "wamid.out3")] == [
        *["ours"] * 4,
        "failed_send",
        "echoed",
    ]
    assert staged[2][1]["data"]["pricing"] == {
        "category": "marketing",
        "billable": True,
        "pricing_model": "PMP",
    }
    assert [
        (e["data"]["wamid"], e["data"]["errors"][0]["code"])
        for _, e in staged
        if e["data"]["errors"]
    ] == [("wamid.out2", 131049), ("wamid.out1", 131049)]


# --- other outcomes --------------------------------------------------------------------------


async def test_unknown_numbers_are_acknowledged_and_not_stored(app, client):
    before = await counts(app)
    unknown = deliveries("unknown_number")
    body = raw(envelope([change("999", messages=[text_message("wamid.u")])]))
    r = await post(client, body, signed(body, PLATFORM_SECRET))  # Meta, for the platform app
    assert r.status_code == 200
    assert deliveries("unknown_number") == unknown + 1
    r = await post(client, body, signed(body, "whatever"))  # nobody PyTake knows signed it
    assert r.status_code == 401 and r.json()["code"] == "invalid_signature"
    assert deliveries("unknown_number") == unknown + 1
    assert await counts(app) == before


async def test_invalid_and_oversized_bodies_are_refused(app, client):
    invalid = deliveries("invalid")
    for body in (b"{not json", b"[1,2]", b'{"object":"whatsapp_business_account"}'):
        r = await post(client, body, signed(body, SECRET_A))
        assert r.status_code == 400
        assert r.json()["code"] == "invalid_payload"
    assert deliveries("invalid") == invalid + 3
    big = b'{"entry":[],"pad":"' + b"x" * (3 * 1024 * 1024) + b'"}'
    r = await post(client, big, signed(big, SECRET_A))
    assert r.status_code == 413
    assert (await counts(app))["webhook_deliveries"] == 0


async def test_nul_characters_do_not_break_the_intake(app, client, tokens):
    org = uuid.uuid4()
    await register(client, tokens, org, "100", app_secret=SECRET_A)
    body = raw(envelope([change("100", messages=[text_message("wamid.nul", body="a\x00b")])]))
    assert b"\\u0000" in body
    assert (await post(client, body, signed(body, SECRET_A))).status_code == 200
    [event] = await events(app, RECEIVED)
    assert event["data"]["text"] == "a\ufffdb"


async def test_the_fast_path_answers_as_fastapi_does(app, client, tokens):
    await register(client, tokens, uuid.uuid4(), "100", app_secret=SECRET_A)

    async def answers(tag: str) -> list[tuple[int, str, dict]]:
        body = raw(envelope([change("100", messages=[text_message(f"wamid.{tag}")])]))
        cases = [
            (body, signed(body, SECRET_A)),
            (body, signed(body, SECRET_A)),  # Meta's retry
            (body, signed(body, SECRET_B)),
            (body, {"Content-Type": "application/json"}),
            (b"[1, 2]", signed(b"[1, 2]", SECRET_A)),
            (b"x" * 4_000_000, signed(b"x", SECRET_A)),
        ]
        out = []
        for content, headers in cases:
            r = await post(client, content, {**headers, "X-Request-Id": f"rid-{tag}"})
            answer = r.json()
            answer.pop("instance", None)
            assert r.headers["x-request-id"] == f"rid-{tag}"
            kept = {k: v for k, v in r.headers.items() if k not in ("x-request-id", "date")}
            out.append((r.status_code, kept, answer))
        return out

    def served() -> float:
        return sum(
            s.value
            for m in REGISTRY.collect()
            if m.name == "pytake_http_requests"
            for s in m.samples
            if s.name.endswith("_total")
            and s.labels.get("route") == "/webhooks/whatsapp"
            and s.labels.get("method") == "POST"
        )

    app.state.fast_paths = False
    before = served()
    slow = await answers("slow")
    app.state.fast_paths = True
    fast = await answers("fast")
    # Every request counted by the route's metrics, FastAPI's path or the edge's
    assert served() - before == 12
    assert isinstance(app.middleware_stack, WebhookEdge)  # the edge went around FastAPI
    assert fast == slow
    assert [status for status, _, _ in fast] == [200, 200, 401, 401, 400, 413]
    assert (await counts(app))["inbound_messages"] == 2
