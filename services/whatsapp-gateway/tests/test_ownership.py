"""Registering a number proves the access token controls it (against the real simulator)."""

import uuid
from typing import Any

import httpx
from sqlalchemy import select

from pytake_meta_simulator.testing import provision
from pytake_whatsapp_gateway.tables import numbers

from .helpers import counts, events


async def claim(api, gtokens, org: uuid.UUID, pnid: str, waba: str, token: str) -> httpx.Response:
    body: dict[str, Any] = {
        "phone_number_id": pnid,
        "waba_id": waba,
        "display_phone_number": f"+1 555 {pnid}",
        "access_token": token,
        "verify_token": "verify-me",
    }
    return await api.post(
        "/v1/whatsapp/numbers", json=body, headers=gtokens.headers(organization_id=org)
    )


def refused(r: httpx.Response, check: str) -> None:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "number_ownership_not_proven"
    assert r.json()["check"] == check


async def test_the_owner_registers_its_number(api, gtokens, sim, gateway):
    await provision(sim, "5001", "WABA-V", "victim-token")
    r = await claim(api, gtokens, uuid.uuid4(), "5001", "WABA-V", "victim-token")
    assert r.status_code == 201, r.text
    assert r.json()["phone_number_id"] == "5001" and r.json()["waba_id"] == "WABA-V"


async def test_squatting_a_victims_number_with_ones_own_token_is_refused(
    api, gtokens, sim, gateway
):
    """The attacker has a real number and token of its own, and claims the victim's
    phone_number_id (or the victim's WABA) with that token."""
    await provision(sim, "5001", "WABA-V", "victim-token")
    await provision(sim, "6001", "WABA-X", "attacker-token")
    attacker = uuid.uuid4()
    before = await counts(gateway[0])
    refused(await claim(api, gtokens, attacker, "5001", "WABA-V", "attacker-token"), "phone_number")
    refused(await claim(api, gtokens, attacker, "5001", "WABA-X", "attacker-token"), "phone_number")
    # Its own number declared in the victim's WABA: Meta does not list it there.
    refused(
        await claim(api, gtokens, attacker, "6001", "WABA-V", "attacker-token"),
        "waba_phone_numbers",
    )
    assert await counts(gateway[0]) == before  # nothing stored, no event
    assert await events(gateway[0]) == []
    # The owner is not locked out (no 409): the number is still free.
    r = await claim(api, gtokens, uuid.uuid4(), "5001", "WABA-V", "victim-token")
    assert r.status_code == 201, r.text


async def test_a_wrong_or_unknown_token_is_refused_naming_the_check(api, gtokens, sim, gateway):
    await provision(sim, "5001", "WABA-V", "victim-token")
    r = await claim(api, gtokens, uuid.uuid4(), "5001", "WABA-V", "never-issued")
    refused(r, "phone_number")
    assert "5001" in r.json()["detail"]
    assert "never-issued" not in r.text  # the token is never echoed
    refused(
        await claim(api, gtokens, uuid.uuid4(), "5999", "WABA-V", "victim-token"), "phone_number"
    )


async def test_a_number_outside_the_declared_waba_is_refused(api, gtokens, sim, gateway):
    await provision(sim, "5001", "WABA-V", "owner-token")
    await provision(sim, "5002", "WABA-W", "owner-token")  # the same business, two WABAs
    r = await claim(api, gtokens, uuid.uuid4(), "5001", "WABA-W", "owner-token")
    refused(r, "waba_phone_numbers")
    assert "WABA-W" in r.json()["detail"]
    assert (await counts(gateway[0]))["numbers"] == 0


async def test_meta_unreachable_is_503_and_nothing_is_stored(app, client, tokens, graph):
    body = {
        "phone_number_id": "7001",
        "waba_id": "WABA7",
        "display_phone_number": "+1 555 7001",
        "access_token": "token",
        "verify_token": "verify-me",
    }
    headers = tokens.headers(organization_id=uuid.uuid4())
    graph.read_status = 500  # Meta's 5xx
    r = await client.post("/v1/whatsapp/numbers", json=body, headers=headers)
    assert r.status_code == 503 and r.json()["code"] == "meta_unavailable"
    graph.read_status, graph.read_delay_s = None, 2.0  # no answer within the timeout
    app.state.graph.client.timeout = httpx.Timeout(0.5)
    r = await client.post("/v1/whatsapp/numbers", json=body, headers=headers)
    assert r.status_code == 503 and r.json()["code"] == "meta_unavailable"
    await graph.stop()  # nothing listens: connection refused
    r = await client.post("/v1/whatsapp/numbers", json=body, headers=headers)
    assert r.status_code == 503 and r.json()["code"] == "meta_unavailable"
    assert (await counts(app))["numbers"] == 0
    assert await events(app) == []
    await graph.start()  # the fixture stops it again


REGISTRATION = {
    "phone_number_id": "7002",
    "waba_id": "WABA7",
    "display_phone_number": "+1 555 7002",
    "access_token": "token",
    "verify_token": "verify-me",
}


async def test_a_retry_of_a_finished_registration_replays_it_without_asking_meta(
    app, client, tokens, graph
):
    headers = tokens.headers(organization_id=uuid.uuid4()) | {"Idempotency-Key": "reg-1"}
    first = await client.post("/v1/whatsapp/numbers", json=REGISTRATION, headers=headers)
    assert first.status_code == 201, first.text
    await graph.stop()  # Meta unreachable now
    try:
        again = await client.post("/v1/whatsapp/numbers", json=REGISTRATION, headers=headers)
        assert again.status_code == 201, again.text
        assert again.json() == first.json()
        assert again.headers["location"] == first.headers["location"]
        # A new claim still proves ownership: Meta unreachable is 503.
        other = headers | {"Idempotency-Key": "reg-2"}
        r = await client.post(
            "/v1/whatsapp/numbers", json=REGISTRATION | {"phone_number_id": "7003"}, headers=other
        )
        assert r.status_code == 503 and r.json()["code"] == "meta_unavailable"
        # The same key with another body is still refused.
        r = await client.post(
            "/v1/whatsapp/numbers", json=REGISTRATION | {"waba_id": "WABA8"}, headers=headers
        )
        assert r.status_code == 422, r.text
    finally:
        await graph.start()  # the fixture stops it again
    assert (await counts(app))["numbers"] == 1


async def test_a_new_access_token_is_stored_only_once_it_proves_control(api, gtokens, sim, gateway):
    await provision(sim, "5001", "WABA-V", "victim-token")
    await provision(sim, "6001", "WABA-X", "attacker-token")
    org = uuid.uuid4()
    r = await claim(api, gtokens, org, "5001", "WABA-V", "victim-token")
    assert r.status_code == 201, r.text
    url = f"/v1/whatsapp/numbers/{r.json()['id']}"
    headers = gtokens.headers(organization_id=org)
    for token, check in (("attacker-token", "phone_number"), ("never-issued", "phone_number")):
        refused(await api.patch(url, json={"access_token": token}, headers=headers), check)
    r = await api.patch(url, json={"access_token": "victim-token"}, headers=headers)
    assert r.status_code == 200, r.text
    # Another organization's number: 404 before Meta is asked.
    r = await api.patch(
        url,
        json={"access_token": "victim-token"},
        headers=gtokens.headers(organization_id=uuid.uuid4()),
    )
    assert r.status_code == 404, r.text


async def test_a_new_access_token_is_not_stored_while_meta_is_unreachable(
    app, client, tokens, graph
):
    headers = tokens.headers(organization_id=uuid.uuid4())
    r = await client.post("/v1/whatsapp/numbers", json=REGISTRATION, headers=headers)
    assert r.status_code == 201, r.text
    url = f"/v1/whatsapp/numbers/{r.json()['id']}"
    async with app.state.db.transaction(bypass_rls=True) as session:
        before = await session.scalar(select(numbers.c.access_token_enc))
    graph.read_status = 500
    r = await client.patch(url, json={"access_token": "new-token"}, headers=headers)
    assert r.status_code == 503 and r.json()["code"] == "meta_unavailable"
    async with app.state.db.transaction(bypass_rls=True) as session:
        assert await session.scalar(select(numbers.c.access_token_enc)) == before
    # Other fields need no proof.
    r = await client.patch(url, json={"display_phone_number": "+1 555 0000"}, headers=headers)
    assert r.status_code == 200, r.text
    graph.read_status = None
    r = await client.patch(url, json={"access_token": "new-token"}, headers=headers)
    assert r.status_code == 200, r.text
    async with app.state.db.transaction(bypass_rls=True) as session:
        assert await session.scalar(select(numbers.c.access_token_enc)) != before
