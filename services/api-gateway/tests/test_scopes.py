"""An API client's narrower scopes, refused early at the gateway (the services check too)."""

from __future__ import annotations

import uuid

import aiohttp
import pytest

from .conftest import claims_for, sign


def client_token(tokens, scope: str | None, role: str = "org_admin") -> str:
    client = str(uuid.uuid4())
    claims = claims_for(tokens, sub=client, client_id=client, role=role)
    if scope is not None:
        claims["scope"] = scope
    return sign(tokens, claims)


async def test_a_scoped_token_reaches_only_what_its_scopes_open(gateway, upstreams, tokens, marker):
    token = client_token(tokens, "contacts:read messages:send")
    headers = {"Authorization": f"Bearer {token}"}
    async with gateway.client() as c:
        read = await c.get(f"/v1/contacts/{marker}-read", headers=headers)
        write = await c.post(f"/v1/contacts?m={marker}-write", json={}, headers=headers)
        send = await c.post(f"/v1/conversations/{marker}-send/messages", json={}, headers=headers)
        note = await c.post(f"/v1/conversations/{marker}-note/notes", json={}, headers=headers)
        admin = await c.get(f"/v1/api-clients?m={marker}-admin", headers=headers)
    assert read.status_code == 200 and send.status_code == 200
    for refused, needed in ((write, "contacts:write"), (note, "conversations:write")):
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "insufficient_scope"
        assert refused.json()["required_scope"] == needed
    assert admin.status_code == 403 and admin.json()["required_scope"] is None
    assert upstreams["contacts"].calls_with(f"{marker}-write") == []
    assert upstreams["conversations"].calls_with(f"{marker}-note") == []
    assert upstreams["auth"].calls_with(f"{marker}-admin") == []


async def test_an_unscoped_client_token_is_held_to_its_role_by_the_services_only(
    gateway, upstreams, tokens, marker
):
    headers = {"Authorization": f"Bearer {client_token(tokens, None, role='viewer')}"}
    async with gateway.client() as c:
        r = await c.post(f"/v1/contacts?m={marker}", json={}, headers=headers)
    assert r.status_code == 200  # forwarded: the contacts service checks the role
    assert len(upstreams["contacts"].calls_with(marker)) == 1


async def test_the_stream_needs_conversations_read(gateway, upstreams, tokens, marker):
    ws_url = gateway.url.replace("http", "ws") + f"/v1/stream?m={marker}"
    token = client_token(tokens, "contacts:read")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(ws_url, headers={"Authorization": f"Bearer {token}"})
    assert refused.value.status == 403
    assert upstreams["conversations"].calls_with(marker) == []


async def test_the_token_endpoint_is_public(gateway, upstreams, marker):
    async with gateway.client() as c:
        r = await c.post(
            f"/v1/auth/token?m={marker}",
            content="grant_type=client_credentials",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert r.status_code == 200
    assert len(upstreams["auth"].calls_with(marker)) == 1
