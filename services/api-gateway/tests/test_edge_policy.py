"""Revocation, suspension and rate limits, through a running gateway.

The revocation list and organization directory are pytake_common's replicas of
auth's and tenants' events (``app.state.revocations``/``organizations``). Most
tests here set small fakes with the same methods on ``app.state``; one uses the
real replicas, fed the events directly instead of through Kafka.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import httpx
import pytest

from pytake_common.events import CloudEvent
from pytake_common.revocation import RevocationList
from pytake_common.tenancy import OrganizationDirectory

from .conftest import RunningGateway, claims_for, gateway_settings, run_gateway, sign


class FakeRevocations:
    """``RevocationList.is_revoked(claims)``: revoked sessions, and users' cut-offs."""

    def __init__(self) -> None:
        self.sessions: set[str] = set()
        self.users: dict[str, float] = {}

    def is_revoked(self, claims: dict[str, Any]) -> bool:
        if claims.get("sid") in self.sessions:
            return True
        cutoff = self.users.get(str(claims.get("sub")))
        return cutoff is not None and float(claims["iat"]) < cutoff


class FakeOrganizations:
    """``OrganizationDirectory.is_suspended`` and ``.limit``."""

    def __init__(self) -> None:
        self.suspended: set[uuid.UUID] = set()
        self.api_limits: dict[uuid.UUID, int] = {}

    def is_suspended(self, organization_id: uuid.UUID | str) -> bool:
        return uuid.UUID(str(organization_id)) in self.suspended

    def limit(self, organization_id: uuid.UUID | str, name: str) -> int | None:
        assert name == "api_requests_per_minute"
        return self.api_limits.get(uuid.UUID(str(organization_id)))


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
async def guarded(upstreams) -> AsyncIterator[RunningGateway]:
    """Generous rate limits; fake revocation list and directory on app.state."""
    settings = gateway_settings({n: f.url for n, f in upstreams.items()})
    async with run_gateway(settings) as running:
        running.app.state.revocations = FakeRevocations()
        running.app.state.organizations = FakeOrganizations()
        yield running


@pytest.fixture
def revocations(guarded: RunningGateway) -> FakeRevocations:
    fake: FakeRevocations = guarded.app.state.revocations
    return fake


@pytest.fixture
def directory(guarded: RunningGateway) -> FakeOrganizations:
    fake: FakeOrganizations = guarded.app.state.organizations
    return fake


# -- revocation ------------------------------------------------------------------


async def test_revoked_session_is_refused_at_once_although_its_token_is_cached(
    guarded, upstreams, tokens, revocations, marker
):
    claims = claims_for(tokens)
    token = sign(tokens, claims)
    async with guarded.client() as c:
        ok = await c.get(f"/v1/contacts/{marker}-before", headers=bearer(token))
        assert ok.status_code == 200  # verified and now cached
        assert guarded.app.state.token_gate.cached(token) is not None

        revocations.sessions.add(claims["sid"])
        refused = await c.get(f"/v1/contacts/{marker}-after", headers=bearer(token))
    body = assert_problem(refused, 401, "session_revoked")
    assert body["detail"]
    assert refused.headers["www-authenticate"] == "Bearer"
    assert len(upstreams["contacts"].calls_with(f"{marker}-before")) == 1
    assert upstreams["contacts"].calls_with(f"{marker}-after") == []


async def test_tokens_issued_before_a_users_cutoff_are_refused(
    guarded, upstreams, tokens, revocations, marker
):
    user = str(uuid.uuid4())
    now = int(time.time())
    old = sign(tokens, claims_for(tokens, sub=user, iat=now - 60, nbf=now - 60))
    new = sign(tokens, claims_for(tokens, sub=user, iat=now))
    revocations.users[user] = now - 30  # e.g. the password changed 30 s ago
    async with guarded.client() as c:
        refused = await c.get(f"/v1/tags/{marker}-old", headers=bearer(old))
        accepted = await c.get(f"/v1/tags/{marker}-new", headers=bearer(new))
    assert_problem(refused, 401, "session_revoked")
    assert upstreams["contacts"].calls_with(f"{marker}-old") == []
    assert accepted.status_code == 200


async def test_suspended_organization_is_403_except_for_operators(
    guarded, upstreams, tokens, directory, marker
):
    org = uuid.uuid4()
    agent = tokens.mint(organization_id=org, role="agent")
    operator = tokens.mint(organization_id=org, role="super_admin")
    async with guarded.client() as c:
        assert (await c.get(f"/v1/plans/{marker}-1", headers=bearer(agent))).status_code == 200

        directory.suspended.add(org)
        refused = await c.get(f"/v1/plans/{marker}-2", headers=bearer(agent))
        body = assert_problem(refused, 403, "organization_suspended")
        assert body["detail"]
        assert upstreams["tenants"].calls_with(f"{marker}-2") == []
        # the platform operator can still reach the organization (to reactivate it)
        operating = await c.get(f"/v1/plans/{marker}-3", headers=bearer(operator))
        assert operating.status_code == 200

        directory.suspended.discard(org)
        assert (await c.get(f"/v1/plans/{marker}-4", headers=bearer(agent))).status_code == 200


async def test_public_routes_ignore_revocation(guarded, upstreams, tokens, revocations, marker):
    claims = claims_for(tokens)
    revocations.sessions.add(claims["sid"])
    async with guarded.client() as c:
        response = await c.post(
            "/v1/auth/refresh", params={"m": marker}, headers=bearer(sign(tokens, claims))
        )
    assert response.status_code == 200  # auth itself decides what a refresh may do


async def test_websocket_of_a_revoked_session_is_refused(
    guarded, upstreams, tokens, revocations, marker
):
    claims = claims_for(tokens)
    revocations.sessions.add(claims["sid"])
    ws_url = guarded.url.replace("http", "ws") + f"/v1/stream?m={marker}"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(ws_url, headers=bearer(sign(tokens, claims)))
    assert refused.value.status == 401
    assert upstreams["conversations"].calls_with(marker) == []


@pytest.fixture
def real_replicas(
    guarded: RunningGateway,
) -> Iterator[tuple[RevocationList, OrganizationDirectory]]:
    """pytake_common's replicas, swapped in for the fakes for one test."""
    state = guarded.app.state
    fakes = state.revocations, state.organizations
    replicas = RevocationList(guarded.settings), OrganizationDirectory(guarded.settings)
    state.revocations, state.organizations = replicas
    try:
        yield replicas
    finally:
        state.revocations, state.organizations = fakes


def event(type_: str, tenant: uuid.UUID, subject: str, data: dict[str, Any]) -> CloudEvent:
    return CloudEvent(
        source="/test",
        type=type_,
        subject=subject,
        tenantid=str(tenant),
        time=datetime.now(UTC),
        data=data,
    )


async def test_events_applied_to_the_real_replicas_take_effect_on_the_next_request(
    guarded, upstreams, tokens, real_replicas, marker
):
    revocation_list, organizations = real_replicas
    org = uuid.uuid4()
    logged_out = claims_for(tokens, org=str(org), sid=str(uuid.uuid4()))
    other = claims_for(tokens, org=str(org), role="agent")
    async with guarded.client() as c:
        assert (
            await c.get(f"/v1/contacts/{marker}-0", headers=bearer(sign(tokens, logged_out)))
        ).status_code == 200

        revocation_list.apply(
            event(
                "pytake.auth.session.revoked.v1",
                org,
                logged_out["sid"],
                {
                    "session_id": logged_out["sid"],
                    "user_id": logged_out["sub"],
                    "organization_id": str(org),
                    "reason": "logout",
                },
            )
        )
        revoked = await c.get(f"/v1/contacts/{marker}-1", headers=bearer(sign(tokens, logged_out)))
        assert_problem(revoked, 401, "session_revoked")

        organizations.apply(
            event(
                "pytake.tenants.organization.suspended.v1",
                org,
                str(org),
                {"organization_id": str(org), "reason": "unpaid", "changed_by": None},
            )
        )
        suspended = await c.get(f"/v1/contacts/{marker}-2", headers=bearer(sign(tokens, other)))
        assert_problem(suspended, 403, "organization_suspended")
    assert upstreams["contacts"].calls_with(f"{marker}-1") == []
    assert upstreams["contacts"].calls_with(f"{marker}-2") == []


# -- rate limits -----------------------------------------------------------------


@pytest.fixture(scope="module")
async def limited(upstreams) -> AsyncIterator[RunningGateway]:
    """Small limits; 127.0.0.1 is a trusted proxy, so X-Forwarded-For picks the
    client address (as uvicorn's FORWARDED_ALLOW_IPS does behind an ingress)."""
    settings = gateway_settings(
        {n: f.url for n, f in upstreams.items()},
        ratelimit_client_per_minute=1,
        ratelimit_client_burst=3,
        ratelimit_organization_per_minute=2,
    )
    async with run_gateway(settings, forwarded_allow_ips="127.0.0.1") as running:
        running.app.state.organizations = FakeOrganizations()
        yield running


def from_address(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def test_public_routes_are_limited_per_client_address(limited, upstreams, marker):
    async with limited.client() as c:
        responses = [
            await c.post(
                "/v1/auth/login",
                params={"m": f"{marker}-{i}"},
                headers=from_address("198.51.100.1"),
            )
            for i in range(4)
        ]
        elsewhere = await c.post(
            "/v1/auth/login", params={"m": f"{marker}-x"}, headers=from_address("198.51.100.2")
        )
    for i, response in enumerate(responses[:3]):
        assert response.status_code == 200
        assert response.headers["ratelimit-limit"] == "3"
        assert response.headers["ratelimit-remaining"] == str(2 - i)
        assert int(response.headers["ratelimit-reset"]) > 0

    refused = responses[3]
    body = assert_problem(refused, 429, "rate_limited")
    retry_after = refused.headers["retry-after"]
    assert retry_after.isdigit()
    assert 55 <= int(retry_after) <= 60  # one request a minute
    assert body["retry_after"] == int(retry_after)
    assert refused.headers["ratelimit-limit"] == "3"
    assert refused.headers["ratelimit-remaining"] == "0"
    assert int(refused.headers["ratelimit-reset"]) >= int(retry_after)
    assert upstreams["auth"].calls_with(f"{marker}-3") == []

    assert elsewhere.status_code == 200  # another address has its own bucket


async def test_webhooks_are_not_limited_per_address_by_default(limited, upstreams, marker):
    async with limited.client() as c:
        statuses = [
            (
                await c.post(
                    "/webhooks/whatsapp",
                    params={"m": f"{marker}-{i}"},
                    content=b"{}",
                    headers=from_address("31.13.64.1"),
                )
            ).status_code
            for i in range(8)
        ]
    assert statuses == [200] * 8
    assert len(upstreams["whatsapp-gateway"].calls_with(marker)) == 8


async def test_webhook_limit_when_configured(upstreams, marker):
    settings = gateway_settings(
        {n: f.url for n, f in upstreams.items()},
        ratelimit_webhook_per_minute=1,
        ratelimit_webhook_burst=2,
    )
    async with run_gateway(settings) as gw, gw.client() as c:
        statuses = [
            (await c.post("/webhooks/whatsapp", params={"m": f"{marker}-{i}"}, content=b"{}"))
            for i in range(3)
        ]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert statuses[2].headers["retry-after"].isdigit()
    assert upstreams["whatsapp-gateway"].calls_with(f"{marker}-2") == []


async def test_authenticated_routes_are_limited_per_organization(
    limited, upstreams, tokens, marker
):
    org = uuid.uuid4()
    first_user = tokens.mint(organization_id=org)
    second_user = tokens.mint(organization_id=org)
    async with limited.client() as c:
        a = await c.get(f"/v1/contacts/{marker}-a", headers=bearer(first_user))
        b = await c.get(
            f"/v1/contacts/{marker}-b",
            headers={**bearer(second_user), **from_address("198.51.100.77")},
        )
        refused = await c.get(f"/v1/contacts/{marker}-c", headers=bearer(second_user))
        other_org = await c.get(
            f"/v1/contacts/{marker}-d", headers=bearer(tokens.mint(organization_id=uuid.uuid4()))
        )
    assert [a.status_code, b.status_code] == [200, 200]  # users and addresses share the bucket
    assert a.headers["ratelimit-limit"] == "2"
    assert a.headers["ratelimit-remaining"] == "1"
    assert b.headers["ratelimit-remaining"] == "0"
    assert_problem(refused, 429, "rate_limited")
    assert 25 <= int(refused.headers["retry-after"]) <= 30  # two a minute
    assert upstreams["contacts"].calls_with(f"{marker}-c") == []
    assert other_org.status_code == 200


async def test_plan_limit_overrides_the_default(limited, upstreams, tokens, marker):
    org = uuid.uuid4()
    directory: FakeOrganizations = limited.app.state.organizations
    directory.api_limits[org] = 4
    token = tokens.mint(organization_id=org)
    async with limited.client() as c:
        responses = [await c.get(f"/v1/tags/{marker}-{i}", headers=bearer(token)) for i in range(5)]
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 429]
    assert responses[0].headers["ratelimit-limit"] == "4"
    assert responses[0].headers["ratelimit-policy"] == "4;w=60"
    assert upstreams["contacts"].calls_with(f"{marker}-4") == []


async def test_websocket_handshakes_spend_from_the_organization(limited, upstreams, tokens, marker):
    token = tokens.mint(organization_id=uuid.uuid4())
    ws_url = limited.url.replace("http", "ws") + f"/v1/stream?m={marker}"
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            async with session.ws_connect(ws_url, headers=bearer(token)) as ws:
                await ws.receive(timeout=5)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(ws_url, headers=bearer(token))
    assert refused.value.status == 429
    assert refused.value.headers is not None
    assert refused.value.headers["retry-after"].isdigit()
    assert len(upstreams["conversations"].calls_with(marker)) == 2


# -- CORS ------------------------------------------------------------------------


async def test_no_cors_unless_origins_are_configured(upstreams):
    from pytake_api_gateway.app import create_app

    app = create_app(gateway_settings({n: f.url for n, f in upstreams.items()}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        response = await c.options(
            "/v1/auth/login",
            headers={"Origin": "https://console.example", "Access-Control-Request-Method": "POST"},
        )
    assert not [h for h in response.headers if h.startswith("access-control-")]
