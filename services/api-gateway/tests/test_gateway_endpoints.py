"""The gateway's own endpoints, a dead upstream, settings, and the pure parts."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from pytake_api_gateway.app import create_app
from pytake_api_gateway.config import Settings
from pytake_api_gateway.openapi import merge_openapi
from pytake_api_gateway.routing import RoutingTable
from pytake_api_gateway.tokens import MISSING, Identity, TokenGate
from pytake_devstack.infra import free_port

from .conftest import SERVICES, gateway_settings, openapi_of, run_gateway


@pytest.fixture(scope="module")
async def gateway_with_dead_tenants(upstreams):
    urls = {name: fake.url for name, fake in upstreams.items()}
    urls["tenants"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with run_gateway(gateway_settings(urls)) as running:
        yield running


async def test_healthz_and_metrics(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert "pytake_http_requests_total" in metrics.text


async def test_readyz_reports_every_upstream(client):
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": dict.fromkeys(SERVICES, "ok")}


async def test_merged_openapi_has_every_service(client):
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for path in (
        "/v1/auth/login",
        "/v1/users",
        "/v1/contacts",
        "/v1/contacts/{contact_id}",
        "/v1/plans",
        "/v1/conversations",
        "/v1/whatsapp/numbers",
        "/webhooks/whatsapp",
    ):
        assert path in paths, path
    # not reachable through the gateway: left out
    assert "/internal/only" not in paths
    assert "/healthz" not in paths
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" in schemas  # identical in every service: shared
    assert "Error" not in schemas  # differs per service: prefixed everywhere
    assert schemas["Contacts_Error"]["properties"] == {"contacts_field": {"type": "string"}}
    assert schemas["WhatsappGateway_Error"]["properties"] == {
        "whatsapp-gateway_field": {"type": "string"}
    }
    ref = paths["/v1/contacts"]["get"]["responses"]["200"]["content"]["application/json"]
    assert ref["schema"]["$ref"] == "#/components/schemas/Contacts_Error"
    ref = paths["/v1/users"]["get"]["responses"]["422"]["content"]["application/json"]
    assert ref["schema"]["$ref"] == "#/components/schemas/HTTPValidationError"
    assert "x-pytake-unavailable" not in doc
    assert {t["name"] for t in doc["tags"]} == set(SERVICES)


async def test_docs_is_swagger_over_the_merged_document(client):
    response = await client.get("/docs")
    assert response.status_code == 200
    assert "swagger-ui" in response.text
    assert "/openapi.json" in response.text


async def test_dead_upstream_is_502_and_reported(gateway_with_dead_tenants, auth_headers):
    async with gateway_with_dead_tenants.client() as c:
        response = await c.get("/v1/plans", headers=auth_headers)
        assert response.status_code == 502
        assert response.headers["content-type"].startswith("application/problem+json")
        body = response.json()
        assert body["code"] == "upstream_unavailable"
        assert body["upstream"] == "tenants"

        # the other upstreams still work
        assert (await c.get("/v1/contacts", headers=auth_headers)).status_code == 200

        ready = await c.get("/readyz")
        assert ready.status_code == 503
        checks = ready.json()["checks"]
        assert checks["tenants"].startswith("down")
        assert checks["contacts"] == "ok"

        doc = (await c.get("/openapi.json")).json()
        assert doc["x-pytake-unavailable"] == ["tenants"]
        assert "/v1/plans" not in doc["paths"]
        assert "/v1/contacts" in doc["paths"]


async def test_client_address_from_a_trusted_proxy(upstreams, auth_headers):
    """Behind a trusted proxy (uvicorn's FORWARDED_ALLOW_IPS), the client address is
    the one that proxy reports; the gateway still sends exactly one X-Forwarded-For."""
    settings = gateway_settings({n: f.url for n, f in upstreams.items()})
    async with run_gateway(settings, forwarded_allow_ips="127.0.0.1") as gw, gw.client() as c:
        marker = uuid.uuid4().hex
        response = await c.get(
            f"/v1/tags/{marker}",
            headers={
                **auth_headers,
                "X-Forwarded-For": "203.0.113.7",
                "X-Forwarded-Proto": "https",
            },
        )
    seen = {}
    for name, value in response.json()["headers"]:
        seen.setdefault(name.lower(), []).append(value)
    assert seen["x-forwarded-for"] == ["203.0.113.7"]
    assert seen["x-forwarded-proto"] == ["https"]


async def test_cors_preflight_when_origins_configured(upstreams):
    settings = gateway_settings(
        {n: f.url for n, f in upstreams.items()}, cors_allowed_origins=["https://console.example"]
    )
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        response = await c.options(
            "/v1/contacts",
            headers={
                "Origin": "https://console.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://console.example"
        assert "authorization" in response.headers["access-control-allow-headers"].lower()
        denied = await c.options(
            "/v1/contacts",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert denied.status_code == 400
        assert "access-control-allow-origin" not in denied.headers
        # the gateway's own endpoints follow the same policy
        own = await c.options(
            "/readyz",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert own.status_code == 400
        assert "access-control-allow-origin" not in own.headers


def test_settings_port_and_jwks_defaults(monkeypatch):
    for var in ("PYTAKE_GATEWAY_PORT", "PYTAKE_PORT", "PYTAKE_AUTH_URL", "PYTAKE_AUTH_JWKS_URL"):
        monkeypatch.delenv(var, raising=False)
    settings = Settings(env="test", secret_key="k" * 40)
    assert settings.port == 8000
    assert settings.service_name == "api-gateway"
    assert settings.auth_jwks_url == "http://127.0.0.1:8001/.well-known/jwks.json"
    assert settings.upstream_timeout_s == 15.0
    assert settings.api_body_limit_bytes == 1024 * 1024
    assert settings.webhook_body_limit_bytes == 3 * 1024 * 1024
    assert settings.cors_allowed_origins == []

    monkeypatch.setenv("PYTAKE_PORT", "9001")
    assert Settings(env="test", secret_key="k" * 40).port == 9001
    monkeypatch.setenv("PYTAKE_GATEWAY_PORT", "9000")
    monkeypatch.setenv("PYTAKE_AUTH_URL", "http://auth:8001/")
    monkeypatch.setenv("PYTAKE_CORS_ALLOWED_ORIGINS", "https://a.example, https://b.example")
    settings = Settings(env="test", secret_key="k" * 40)
    assert settings.port == 9000
    assert settings.auth_url == "http://auth:8001"
    assert settings.auth_jwks_url == "http://auth:8001/.well-known/jwks.json"
    assert settings.cors_allowed_origins == ["https://a.example", "https://b.example"]
    monkeypatch.setenv("PYTAKE_AUTH_JWKS_URL", "http://keys:1/jwks.json")
    assert Settings(env="test", secret_key="k" * 40).auth_jwks_url == "http://keys:1/jwks.json"


def test_routing_table_matches_whole_segments():
    table = RoutingTable.from_settings(Settings(env="test", secret_key="k" * 40))
    cases = {
        "/v1/contacts": "contacts",
        "/v1/contacts/": "contacts",
        "/v1/contacts/1/tags/2": "contacts",
        "/v1/contactsX": None,
        "/v1/contacts.json": None,
        "/v1": None,
        "/": None,
        "": None,
        "/.well-known/jwks.json": "auth",
        "/.well-known/jwks.jsonx": None,
        "/webhooks/whatsapp": "whatsapp-gateway",
        "/webhooks/whatsappx": None,
        "/webhooks": None,
        "//v1/contacts": None,
    }
    for path, expected in cases.items():
        entry = table.match(path)
        assert (entry.upstream.name if entry else None) == expected, path
    assert table.match("/webhooks/whatsapp").body_limit == 3 * 1024 * 1024
    assert table.match("/v1/auth/login").body_limit == 1024 * 1024


def test_merge_skips_missing_services_and_keeps_identical_components():
    table = RoutingTable.from_settings(Settings(env="test", secret_key="k" * 40))
    doc = merge_openapi([("auth", openapi_of("auth")), ("contacts", None)], table)
    assert doc["x-pytake-unavailable"] == ["contacts"]
    # alone, auth's Error clashes with nobody: it keeps its name
    assert "Error" in doc["components"]["schemas"]
    assert "/v1/contacts" not in doc["paths"]


async def test_token_gate_caches_until_expiry(tokens):
    calls = 0

    class CountingVerifier:
        def cached(self, token):
            return ({}, None)  # the verifier still holds every token (its key is known)

        async def verify(self, token):
            nonlocal calls
            calls += 1
            return {
                "sub": str(uuid.uuid4()),
                "org": str(uuid.uuid4()),
                "role": "agent",
                "exp": time.time() + 0.3,
            }

    gate = TokenGate(lambda: CountingVerifier(), cache_size=2)  # type: ignore[arg-type,return-value]
    assert isinstance(await gate.verify("t1"), Identity)
    assert isinstance(await gate.verify("t1"), Identity)
    assert calls == 1
    await gate.verify("t2")
    await gate.verify("t3")  # evicts t1 (size 2)
    await gate.verify("t1")
    assert calls == 4
    await asyncio.sleep(0.35)
    await gate.verify("t1")  # expired in the cache: verified again
    assert calls == 5
    assert await gate.verify(None) == MISSING
