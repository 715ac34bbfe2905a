"""What campaigns meet at Meta: the number's messaging tier, pricing by template category
in status webhooks, and the marketing refusals 131049/131050 per recipient."""

from __future__ import annotations

from typing import Any

import httpx

from pytake_meta_simulator.testing import Receiver

from .conftest import NUMBER


def template_to(to: str, name: str = "spring_sale") -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "to": to,
        "type": "template",
        "template": {"name": name, "language": {"code": "en_US"}},
    }


def text_to(to: str) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": "hi"}}


async def create(sim: httpx.AsyncClient, auth: dict[str, str], name: str, category: str) -> None:
    body = {
        "name": name,
        "language": "en_US",
        "category": category,
        "components": [{"type": "BODY", "text": "Hello"}],
    }
    r = await sim.post(f"/v21.0/{NUMBER['waba_id']}/message_templates", json=body, headers=auth)
    assert r.status_code == 200 and r.json()["category"] == category, r.text


def statuses_of(receiver: Receiver, wamid: str) -> dict[str, dict[str, Any]]:
    return {s["status"]: s for s in receiver.statuses() if s["id"] == wamid}


async def test_the_number_shows_its_tier_and_a_new_registration_changes_it(
    sim: httpx.AsyncClient, number: dict[str, str], auth: dict[str, str]
) -> None:
    pnid = number["phone_number_id"]
    profile = (await sim.get(f"/v21.0/{pnid}?fields=messaging_limit_tier", headers=auth)).json()
    assert profile["messaging_limit_tier"] == "TIER_UNLIMITED"
    r = await sim.post("/_sim/numbers", json=NUMBER | {"messaging_limit_tier": "TIER_2K"})
    assert r.json()["messaging_limit_tier"] == "TIER_2K"
    profile = (await sim.get(f"/v21.0/{pnid}", headers=auth)).json()
    assert profile["messaging_limit_tier"] == "TIER_2K"
    bad = await sim.post("/_sim/numbers", json=NUMBER | {"messaging_limit_tier": "TIER_3"})
    assert bad.status_code == 422


async def test_unique_users_past_the_tier_fail_with_131048(
    sim: httpx.AsyncClient, number: dict[str, str], auth: dict[str, str], receiver: Receiver
) -> None:
    await sim.post("/_sim/numbers", json=NUMBER | {"messaging_limit_tier": "TIER_50"})
    pnid = number["phone_number_id"]
    url = f"/v21.0/{pnid}/messages"
    # A customer who wrote is inside the service window: never counted.
    writer = "5511900000999"
    await sim.post(
        "/_sim/inbound",
        json={"phone_number_id": pnid, "from_wa_id": writer, "profile_name": "W", "text": "hi"},
    )
    users = [f"55119{i:08d}" for i in range(50)]
    for user in users:
        assert (await sim.post(url, headers=auth, json=template_to(user))).status_code == 200
    # the 50 again (counted once each) and the writer: still within the tier
    again = (await sim.post(url, headers=auth, json=template_to(users[0]))).json()
    writer_msg = (await sim.post(url, headers=auth, json=template_to(writer))).json()
    # the 51st unique user: accepted, then failed by a status webhook
    over = (await sim.post(url, headers=auth, json=template_to("5511977777777"))).json()
    over_wamid = over["messages"][0]["id"]
    await receiver.wait_for(1 + 52 * 3 + 2)  # inbound, 52 x sent/delivered/read, sent+failed
    failed = statuses_of(receiver, over_wamid)["failed"]
    assert failed["errors"][0]["code"] == 131048
    assert "failed" not in statuses_of(receiver, again["messages"][0]["id"])
    assert "failed" not in statuses_of(receiver, writer_msg["messages"][0]["id"])


async def test_status_pricing_follows_the_templates_category(
    sim: httpx.AsyncClient, number: dict[str, str], auth: dict[str, str], receiver: Receiver
) -> None:
    await create(sim, auth, "spring_sale", "MARKETING")
    await create(sim, auth, "login_code", "AUTHENTICATION")
    url = f"/v21.0/{number['phone_number_id']}/messages"
    sale = (await sim.post(url, headers=auth, json=template_to("5511911110000"))).json()
    code = (
        await sim.post(url, headers=auth, json=template_to("5511911110001", name="login_code"))
    ).json()
    reply = (await sim.post(url, headers=auth, json=text_to("5511911110002"))).json()
    await receiver.wait_for(9)
    pricing = {
        name: statuses_of(receiver, answer["messages"][0]["id"])["delivered"]["pricing"]
        for name, answer in (("sale", sale), ("code", code), ("reply", reply))
    }
    assert pricing["sale"] | {"type": None} == {
        "billable": True,
        "pricing_model": "PMP",
        "category": "marketing",
        "type": None,
    }
    assert pricing["code"]["category"] == "authentication"
    assert (pricing["reply"]["category"], pricing["reply"]["billable"]) == ("service", False)


async def test_131049_and_131050_are_injected_per_recipient_as_failed_statuses(
    sim: httpx.AsyncClient, number: dict[str, str], auth: dict[str, str], receiver: Receiver
) -> None:
    pnid = number["phone_number_id"]
    url = f"/v21.0/{pnid}/messages"
    limited, opted_out, other = "5511930000001", "5511930000002", "5511930000003"
    for to, code in ((limited, 131049), (opted_out, 131050)):
        rule = {"phone_number_id": pnid, "to": to, "code": code, "mode": "status"}
        assert (await sim.post("/_sim/failures", json=rule)).status_code == 200
    answers = {
        to: (await sim.post(url, headers=auth, json=template_to(to))).json()["messages"][0]["id"]
        for to in (limited, opted_out, other)
    }
    await receiver.wait_for(2 + 2 + 3)
    failed_limited = statuses_of(receiver, answers[limited])["failed"]["errors"][0]
    failed_opted = statuses_of(receiver, answers[opted_out])["failed"]["errors"][0]
    assert failed_limited["code"] == 131049
    assert "healthy ecosystem engagement" in failed_limited["error_data"]["details"]
    assert failed_opted["code"] == 131050
    assert "stop receiving marketing messages" in failed_opted["error_data"]["details"]
    assert "failed" not in statuses_of(receiver, answers[other])
    # failed statuses carry no pricing (nothing is charged)
    assert "pricing" not in statuses_of(receiver, answers[opted_out])["failed"]


async def test_the_tier_counts_users_over_a_moving_24_hours(monkeypatch):
    """Each user counts from when first reached until 24 h later; then it frees a place."""
    from datetime import UTC, datetime, timedelta

    from pytake_meta_simulator import state

    clock = [datetime(2026, 12, 1, tzinfo=UTC)]
    monkeypatch.setattr(state, "utcnow", lambda: clock[0])
    store = state.Store()
    number = state.Number(
        phone_number_id="1",
        waba_id="W",
        display_phone_number="+1",
        verified_name="V",
        access_token="t",
        app_secret="s",
        messaging_limit_tier="TIER_50",
    )
    for i in range(30):  # at t0
        assert await store.admit_business_initiated(number, f"early{i}")
    clock[0] += timedelta(hours=12)
    for i in range(20):  # at t0 + 12 h: the tier is full
        assert await store.admit_business_initiated(number, f"late{i}")
    assert not await store.admit_business_initiated(number, "one-more")
    assert await store.admit_business_initiated(number, "early0")  # already counted
    clock[0] += timedelta(hours=12, seconds=1)  # the early ones' 24 h are over
    for i in range(30):
        assert await store.admit_business_initiated(number, f"next{i}")
    assert not await store.admit_business_initiated(number, "one-more")
    clock[0] += timedelta(hours=12)  # and now the late ones'
    assert await store.admit_business_initiated(number, "one-more")
