"""The number's messaging limit tier, read from the Graph API (the real simulator over
HTTP) when registering and again on a sync; number events carry it."""

import uuid

from pytake_meta_simulator.testing import provision

from .helpers import SIM_APP_SECRET, SIM_TOKEN, connect, events

REGISTERED = "pytake.whatsapp.number.registered.v1"
UPDATED = "pytake.whatsapp.number.updated.v1"


async def test_the_tier_is_read_at_registration_and_refreshed_by_a_sync(api, gtokens, sim, gateway):
    org = uuid.uuid4()
    pnid = "55501"
    number = await connect(api, gtokens, sim, gateway, org, pnid)  # the simulator's default
    assert number["messaging_limit_tier"] == "TIER_UNLIMITED"
    [registered] = [e for e in await events(gateway[0], REGISTERED) if e["tenantid"] == str(org)]
    assert registered["data"]["messaging_limit_tier"] == "TIER_UNLIMITED"
    assert registered["data"]["throughput_per_second"] == number["throughput_per_second"]

    # Meta's limit changed: a sync reads it and says so once.
    await provision(
        sim,
        pnid,
        f"WABA{pnid}",
        SIM_TOKEN,
        app_secret=SIM_APP_SECRET,
        webhook_url=gateway[1],
        messaging_limit_tier="TIER_250",
    )
    admin = gtokens.headers(organization_id=org)
    sync = f"/v1/whatsapp/numbers/{number['id']}/templates/sync"
    for _ in range(2):
        assert (await api.post(sync, headers=admin)).status_code == 200
    updates = [e["data"] for e in await events(gateway[0], UPDATED) if e["tenantid"] == str(org)]
    assert [(u["messaging_limit_tier"], u["changed"]) for u in updates] == [
        ("TIER_250", ["messaging_limit_tier"])
    ]
    assert updates[0]["throughput_per_second"] == number["throughput_per_second"]
    shown = await api.get(f"/v1/whatsapp/numbers/{number['id']}", headers=admin)
    assert shown.json()["messaging_limit_tier"] == "TIER_250"
