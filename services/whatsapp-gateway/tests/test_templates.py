"""Templates through the Graph API, against the real Meta simulator over HTTP."""

import asyncio
import uuid
from typing import Any

from sqlalchemy import select

from pytake_meta_simulator.testing import eventually, provision
from pytake_whatsapp_gateway.tables import numbers, templates
from pytake_whatsapp_gateway.templates.service import sync_all
from pytake_whatsapp_gateway.templates.worker import TemplateSyncWorker

from .helpers import SIM_APP_SECRET as APP_SECRET
from .helpers import SIM_TOKEN as TOKEN
from .helpers import connect, events, register

SYNCED = "pytake.whatsapp.template.synced.v1"
CHANGED = "pytake.whatsapp.template.status_changed.v1"
BODY = [{"type": "BODY", "text": "Your order {{1}} is ready"}]


def new(name: str, language: str = "en_US") -> dict[str, Any]:
    return {"name": name, "language": language, "category": "UTILITY", "components": BODY}


async def test_create_list_and_delete_through_meta(api, gtokens, sim, gateway):
    org = uuid.uuid4()
    number = await connect(api, gtokens, sim, gateway, org, "111")
    base = f"/v1/whatsapp/numbers/{number['id']}/templates"
    admin = gtokens.headers(organization_id=org)
    user = uuid.uuid4()
    headers = {
        **gtokens.headers(organization_id=org, user_id=user),
        "Idempotency-Key": "create-order-ready",
    }

    created = await api.post(base, json=new("order_ready"), headers=headers)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "PENDING" and body["category"] == "UTILITY"
    assert body["meta_template_id"].isdigit() and body["components"] == BODY
    headers.update(gtokens.headers(organization_id=org, user_id=user))
    replay = await api.post(base, json=new("order_ready"), headers=headers)
    assert replay.status_code == 201 and replay.json() == body
    at_meta = (
        await sim.get(
            f"/v21.0/{number['waba_id']}/message_templates",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    ).json()["data"]
    assert [t["name"] for t in at_meta] == ["order_ready"]  # the replay did not call Meta
    [event] = await events(gateway[0], SYNCED)
    assert event["data"]["name"] == "order_ready" and event["data"]["status"] == "PENDING"
    assert event["data"]["number_id"] == number["id"]

    for name in ("alpha", "beta"):
        assert (await api.post(base, json=new(name), headers=admin)).status_code == 201
    reader = gtokens.headers(organization_id=org, role="viewer")
    first = (await api.get(base, params={"limit": 2}, headers=reader)).json()
    assert [t["name"] for t in first["items"]] == ["alpha", "beta"]
    rest = await api.get(base, params={"limit": 2, "cursor": first["next_cursor"]}, headers=reader)
    assert [t["name"] for t in rest.json()["items"]] == ["order_ready"]
    assert rest.json()["next_cursor"] is None

    assert (await api.delete(f"{base}/alpha", headers=admin)).status_code == 204
    listed = (await api.get(base, headers=reader)).json()["items"]
    assert [t["name"] for t in listed] == ["beta", "order_ready"]
    missing = await api.delete(f"{base}/alpha", headers=admin)
    assert missing.status_code == 422
    assert missing.json()["code"] == "whatsapp_validation_error"
    assert missing.json()["meta_code"] == 100


async def test_meta_errors_become_problems(api, gtokens, sim, gateway):
    org = uuid.uuid4()
    number = await connect(api, gtokens, sim, gateway, org, "222")
    base = f"/v1/whatsapp/numbers/{number['id']}/templates"
    admin = gtokens.headers(organization_id=org)
    assert (await api.post(base, json=new("dup"), headers=admin)).status_code == 201
    duplicate = await api.post(base, json=new("dup"), headers=admin)
    assert duplicate.status_code == 422
    assert duplicate.headers["content-type"].startswith("application/problem+json")
    assert duplicate.json()["meta_code"] == 100
    assert "already exists" in duplicate.json()["detail"]

    # Meta no longer knows the WABA's token: upstream failure, and the number disconnects.
    await sim.post(
        "/_sim/numbers",
        json={
            "phone_number_id": "222",
            "waba_id": number["waba_id"],
            "display_phone_number": "15550000000",
            "access_token": "rotated-at-meta",
            "app_secret": APP_SECRET,
        },
    )
    refused = await api.post(f"{base}/sync", headers=admin)
    assert refused.status_code == 502
    assert refused.json()["code"] == "whatsapp_upstream_error"
    assert refused.json()["meta_code"] == 190
    shown = await api.get(f"/v1/whatsapp/numbers/{number['id']}", headers=admin)
    assert shown.json()["status"] == "disconnected"


async def test_sync_follows_paging_and_emits_per_changed_template(api, gtokens, sim, gateway):
    org = uuid.uuid4()
    number = await connect(api, gtokens, sim, gateway, org, "333")
    meta = f"/v21.0/{number['waba_id']}/message_templates"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    gateway[0].state.template_service.page_size = 4
    for i in range(10):  # three pages of 4
        assert (await sim.post(meta, json=new(f"t_{i:03d}"), headers=auth)).status_code == 200
    base = f"/v1/whatsapp/numbers/{number['id']}/templates"
    admin = gtokens.headers(organization_id=org)

    first = await api.post(f"{base}/sync", headers=admin)
    assert first.status_code == 200, first.text
    assert first.json() == {"changed": 10}
    assert len(await events(gateway[0], SYNCED)) == 10
    again = await api.post(f"{base}/sync", headers=admin)
    assert again.json() == {"changed": 0}  # nothing changed: no event
    assert len(await events(gateway[0], SYNCED)) == 10

    # Meta's review flips one (signed webhook into the gateway), another is deleted at Meta.
    flipped = await sim.post(
        f"/_sim/templates/{number['waba_id']}/t_002/status", json={"status": "APPROVED"}
    )
    assert flipped.status_code == 200 and flipped.json()[0]["status_code"] == 200
    [changed] = await events(gateway[0], CHANGED)
    assert changed["data"]["name"] == "t_002" and changed["data"]["status"] == "APPROVED"
    await sim.delete(meta, params={"name": "t_009"}, headers=auth)
    await sim.post(f"/_sim/templates/{number['waba_id']}/t_003/status", json={"status": "REJECTED"})

    assert (await sim.post(meta, json=new("t_new"), headers=auth)).status_code == 200

    third = await api.post(f"{base}/sync", headers=admin)
    assert third.json() == {"changed": 1}  # t_new; the webhooks already brought the reviews
    async with gateway[0].state.db.transaction(bypass_rls=True) as s:
        rows = {r.name: r.status for r in (await s.execute(select(templates))).all()}
    assert len(rows) == 10 and "t_009" not in rows and rows["t_new"] == "PENDING"
    assert rows["t_002"] == "APPROVED" and rows["t_003"] == "REJECTED"


async def test_another_organizations_number_is_not_found(api, gtokens, sim, gateway):
    number = await connect(api, gtokens, sim, gateway, uuid.uuid4(), "444")
    intruder = gtokens.headers(organization_id=uuid.uuid4())
    base = f"/v1/whatsapp/numbers/{number['id']}/templates"
    assert (await api.get(base, headers=intruder)).status_code == 404
    assert (await api.post(base, json=new("x"), headers=intruder)).status_code == 404
    assert (await api.post(f"{base}/sync", headers=intruder)).status_code == 404
    assert (await api.delete(f"{base}/x", headers=intruder)).status_code == 404
    owner_reader = gtokens.headers(
        organization_id=uuid.UUID(number["organization_id"]), role="viewer"
    )
    assert (await api.post(base, json=new("x"), headers=owner_reader)).status_code == 403
    await eventually(lambda: _no_templates(gateway[0]))


async def _no_templates(app) -> bool:
    async with app.state.db.transaction(bypass_rls=True) as s:
        return (await s.execute(select(templates))).first() is None


async def test_sync_all_syncs_each_waba_and_survives_a_failing_one(api, gtokens, sim, gateway):
    app = gateway[0]
    good_org, bad_org = uuid.uuid4(), uuid.uuid4()
    good = await connect(api, gtokens, sim, gateway, good_org, "555")
    # A second number of the same WABA and organization: the WABA is synced once.
    await provision(sim, "556", "WABA555", TOKEN, app_secret=APP_SECRET)
    await register(
        api, gtokens, good_org, "556", app_secret=APP_SECRET, access_token=TOKEN, waba_id="WABA555"
    )
    bad = await connect(api, gtokens, sim, gateway, bad_org, "666")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for waba in (good["waba_id"], bad["waba_id"]):
        r = await sim.post(f"/v21.0/{waba}/message_templates", json=new("hello"), headers=auth)
        assert r.status_code == 200
    await sim.post(f"/v21.0/{good['waba_id']}/message_templates", json=new("bye"), headers=auth)
    async with app.state.db.transaction(bypass_rls=True) as s:  # a WABA Meta refuses
        await s.execute(
            numbers.update().where(numbers.c.phone_number_id == "666").values(waba_id="WABA999")
        )

    result = await sync_all(app.state.template_service)
    assert (result.wabas, result.failed, result.changed) == (2, 1, 2)
    synced = await events(app, SYNCED)
    assert sorted(e["data"]["name"] for e in synced) == ["bye", "hello"]
    assert {e["data"]["organization_id"] for e in synced} == {str(good_org)}

    async with app.state.db.transaction(bypass_rls=True) as s:  # fixed: the next round syncs it
        await s.execute(
            numbers.update().where(numbers.c.phone_number_id == "666").values(waba_id="WABA666")
        )
    result = await sync_all(app.state.template_service)
    assert (result.wabas, result.failed, result.changed) == (2, 0, 1)
    assert len(await events(app, SYNCED)) == 3


async def test_one_replica_leads_the_periodic_sync(gateway):
    service = gateway[0].state.template_service
    first = TemplateSyncWorker(service, interval_s=3600, standby_poll_s=0.05)
    second = TemplateSyncWorker(service, interval_s=3600, standby_poll_s=0.05)
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    leader = asyncio.create_task(first.run(stop_first))
    await eventually(lambda: _true(first.rounds == 1))
    standby = asyncio.create_task(second.run(stop_second))
    await asyncio.sleep(0.3)
    assert first.active and not second.active and second.rounds == 0
    stop_first.set()
    await leader
    await eventually(lambda: _true(second.rounds == 1))  # the standby takes over
    stop_second.set()
    await standby


async def _true(value: bool) -> bool:
    return value
