"""Contact import: the gateway lets through what contacts accepts (64 MiB), on that
route only. Through the real contacts application (embedded PostgreSQL)."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn

import pytake_contacts
from pytake_api_gateway.routing import RoutingTable
from pytake_contacts.app import create_app as create_contacts_app
from pytake_contacts.config import Settings as ContactsSettings
from pytake_devstack.infra import free_port
from pytake_devstack.pytest_plugin import SERVICE_TEST_SETTINGS, migrated_database
from pytake_devstack.tokens import TokenFactory

from .conftest import FakeUpstream, gateway_settings, run_gateway, serve
from .test_hardening import until

MIB = 1024 * 1024
MIGRATIONS = Path(pytake_contacts.__file__).parent / "migrations"


@pytest.fixture
async def contacts_url(
    pg_url: str, kafka_bootstrap: str, tokens: TokenFactory
) -> AsyncIterator[str]:
    """The real contacts service in uvicorn, trusting the tests' token factory."""
    url = await migrated_database(pg_url, "contacts", MIGRATIONS)
    settings = ContactsSettings(
        own_database_url=url, kafka_bootstrap=kafka_bootstrap, **SERVICE_TEST_SETTINGS
    )
    app = create_contacts_app(settings)
    tokens.install(app)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=free_port(), lifespan="off", log_config=None, access_log=False
    )
    try:
        async with serve(config) as url:
            yield url
    finally:
        await app.state.db.dispose()


def big_csv(rows: int, notes: int) -> tuple[bytes, list[str]]:
    """A CSV of ``rows`` contacts with ``notes`` characters of notes each."""
    phones = [f"+1415{5550000 + i:07d}" for i in range(rows)]
    lines = ["phone,name,notes"]
    lines += [f"{phone},Customer {i},{'n' * notes}" for i, phone in enumerate(phones)]
    return ("\n".join(lines) + "\n").encode(), phones


async def test_a_large_import_goes_through_the_gateway(
    upstreams: dict[str, FakeUpstream], contacts_url: str, tokens: TokenFactory
) -> None:
    body, phones = big_csv(rows=400, notes=9000)
    assert len(body) > 3 * MIB
    settings = gateway_settings(
        {**{n: f.url for n, f in upstreams.items()}, "contacts": contacts_url},
        upstream_timeout_s=30.0,
    )
    org = uuid.uuid4()
    headers = tokens.headers(organization_id=org, role="agent") | {"Content-Type": "text/csv"}
    async with run_gateway(settings) as gw, gw.client(timeout=60.0) as c:
        response = await c.post("/v1/contacts/import", content=body, headers=headers)
        assert response.status_code == 200, response.text
        result = response.json()
        assert (result["created"], result["failed"]) == (len(phones), [])

        # the same file again: nothing changes (and it went through again)
        again = await c.post("/v1/contacts/import", content=body, headers=headers)
        assert again.json()["unchanged"] == len(phones)

        listed = await c.get("/v1/contacts", params={"q": phones[-1]}, headers=headers)
        assert [item["phone"] for item in listed.json()["items"]] == [phones[-1]]


async def test_only_the_import_route_gets_the_large_limit(client, upstreams, auth_headers, marker):
    two_mib = b"x" * (2 * MIB)
    other = await client.post(f"/v1/contacts/{marker}", content=two_mib, headers=auth_headers)
    assert other.status_code == 413
    not_post = await client.put("/v1/contacts/import", content=two_mib, headers=auth_headers)
    assert not_post.status_code == 413
    over = await client.post(
        "/v1/contacts/import",
        content=b"x" * (64 * MIB + 1),
        headers=auth_headers | {"Content-Type": "text/csv"},
    )
    assert over.status_code == 413
    assert over.json()["limit"] == 64 * MIB
    assert upstreams["contacts"].calls_with(marker) == []


async def test_an_import_is_streamed_to_contacts_not_held_whole(
    client, upstreams, auth_headers, marker
):
    """contacts sees the request while the client is still sending it."""
    piece = b"p" * (256 * 1024)
    path = f"/v1/contacts/import?m={marker}"

    async def body() -> AsyncIterator[bytes]:
        yield piece
        await until(lambda: any(marker in p for p in upstreams["contacts"].arrived))
        for _ in range(15):
            yield piece

    for framing in ({"Content-Length": str(16 * len(piece))}, {}):  # sized, then chunked
        upstreams["contacts"].arrived.clear()
        response = await client.post(
            path, content=body(), headers=auth_headers | {"Content-Type": "text/csv"} | framing
        )
        assert response.status_code == 200, response.text
        (call,) = [c for c in upstreams["contacts"].calls_with(marker)][-1:]
        assert base64.b64decode(call["body"]) == piece * 16


async def test_a_stalled_import_upload_is_cut(upstreams, auth_headers, marker):
    settings = gateway_settings({n: f.url for n, f in upstreams.items()}, upstream_timeout_s=0.3)

    async def body() -> AsyncIterator[bytes]:
        yield b"phone\n"
        await asyncio.sleep(2)
        yield b"+14155550100\n"

    async with run_gateway(settings) as gw, gw.client() as c:
        response = await c.post(
            f"/v1/contacts/import?m={marker}",
            content=body(),
            headers=auth_headers | {"Content-Type": "text/csv"},
        )
        assert response.status_code == 408
        assert response.json()["code"] == "request_timeout"
        assert gw.app.state.upstreams.pool.open_connections == 0  # not kept for reuse


def test_the_import_limit_follows_contacts_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTAKE_IMPORT_MAX_BYTES", str(8 * MIB))
    table = RoutingTable.from_settings(gateway_settings({}))
    assert table.body_limits == {("POST", "/v1/contacts/import"): 8 * MIB}
    monkeypatch.setenv("PYTAKE_IMPORT_BODY_LIMIT_BYTES", str(9 * MIB))  # the gateway's own wins
    table = RoutingTable.from_settings(gateway_settings({}))
    assert table.body_limits == {("POST", "/v1/contacts/import"): 9 * MIB}
