"""API clients end to end, through the gateway: the grant, scopes, revocation in < 2 s,
and a message sent with a client's token attributed to the client."""

import asyncio
import time
import uuid

import httpx

from pytake_devstack.mainloop import Tenant


async def _client(loop, owner: Tenant, **body) -> dict:
    r = await loop.call(
        "POST",
        "/v1/api-clients",
        json={"name": "E2E integration", "role": "agent", **body},
        headers=owner.headers,
    )
    assert r.status_code == 201, r.text
    return r.json()


async def _token(loop, client_id: str, secret: str) -> httpx.Response:
    return await loop.call(
        "POST",
        "/v1/auth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
    )


async def _bearer(loop, created: dict) -> dict[str, str]:
    r = await _token(loop, created["client_id"], created["client_secret"])
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def _refused_within(
    loop, headers: dict[str, str], seconds: float, client: httpx.AsyncClient | None = None
) -> float:
    """How long until ``client`` (the gateway by default) refuses the token as revoked."""
    client = client or loop.gw
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        answer = await client.get("/v1/contacts", headers=headers)
        if answer.status_code == 401:
            assert answer.json()["code"] == "session_revoked"
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"a client token still accepted {seconds}s after its revocation")


async def test_rotation_and_deletion_refuse_the_clients_tokens_within_two_seconds(loop, stack):
    owner = await loop.register("Client Revocation Org")
    created = await _client(loop, owner)
    first = await _bearer(loop, created)
    assert (await loop.gw.get("/v1/contacts", headers=first)).status_code == 200
    assert (await loop.gw.get("/v1/conversations", headers=first)).status_code == 200

    r = await loop.call(
        "POST", f"/v1/api-clients/{created['id']}/rotate-secret", headers=owner.headers
    )
    assert r.status_code == 200, r.text
    rotated = r.json()
    assert await _refused_within(loop, first, 2.0) < 2.0
    # The services refuse it too (not only the gateway's early check): each follows the
    # revocations on its own, so each gets its own two seconds.
    async with httpx.AsyncClient(base_url=stack.url("contacts")) as contacts:
        assert await _refused_within(loop, first, 2.0, contacts) < 2.0
    second = await _bearer(loop, rotated)
    assert (await loop.gw.get("/v1/contacts", headers=second)).status_code == 200

    r = await loop.call("DELETE", f"/v1/api-clients/{created['id']}", headers=owner.headers)
    assert r.status_code == 204
    assert await _refused_within(loop, second, 2.0) < 2.0
    again = await _token(loop, created["client_id"], rotated["client_secret"])
    assert again.status_code == 401 and again.json()["error"] == "invalid_client"


async def test_a_contacts_read_client_cannot_write_contacts(loop, stack):
    owner = await loop.register("Client Scope Org")
    created = await _client(loop, owner, scopes=["contacts:read"])
    headers = await _bearer(loop, created)
    assert (await loop.gw.get("/v1/contacts", headers=headers)).status_code == 200
    body = {"phone": "+5511987650042", "name": "Scoped"}
    refused = await loop.gw.post("/v1/contacts", json=body, headers=headers)
    assert refused.status_code == 403 and refused.json()["code"] == "insufficient_scope"
    async with httpx.AsyncClient(base_url=stack.url("contacts")) as contacts:
        direct = await contacts.post("/v1/contacts", json=body, headers=headers)
    assert direct.status_code == 403 and direct.json()["code"] == "insufficient_scope"
    assert (await loop.gw.get("/v1/conversations", headers=headers)).status_code == 403


async def test_a_reply_sent_with_a_client_token_names_the_client(loop):
    owner = await loop.register("Client Attribution Org")
    number = await loop.connect_number(owner)
    wamid = await loop.customer_says(number, "15550001111", "is my order on its way?")
    conv = await loop.conversation_with_message(owner, wamid)
    created = await _client(loop, owner, scopes=["conversations:read", "messages:send"])
    headers = await _bearer(loop, created)
    integration = Tenant(headers["Authorization"].split()[1], owner.organization_id, "")
    r = await loop.reply(integration, conv["id"], "Yes: it ships today.", key=uuid.uuid4().hex)
    assert r.status_code == 202, r.text
    assert (r.json()["sender_type"], r.json()["sent_by"]) == ("api_client", created["id"])
    sent = await loop.wait_status(owner, conv["id"], r.json()["id"], "read")
    assert (sent["sender_type"], sent["sent_by"]) == ("api_client", created["id"])
