"""Issue #15's gateway findings, each through a running gateway: duplicate
Authorization headers, the upstream pool's wait bound, slow readers, WebSocket
streams per organization and at their token's expiry, withdrawn signing keys,
and what only the platform may ask."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import Callable

import aiohttp
import httpx
import pytest

from pytake_devstack.infra import free_port
from pytake_devstack.tokens import TokenFactory

from .conftest import FakeUpstream, gateway_settings, run_gateway


def assert_problem(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code
    return body


async def until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    """Wait for ``condition`` (polled), or fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if condition():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not met within {timeout} s")
        await asyncio.sleep(0.02)


def urls(upstreams: dict[str, FakeUpstream]) -> dict[str, str]:
    return {name: fake.url for name, fake in upstreams.items()}


# -- duplicate Authorization ------------------------------------------------------


@pytest.mark.parametrize("order", ["valid_first", "valid_last"])
async def test_two_authorization_headers_are_refused(client, upstreams, tokens, marker, order):
    valid = f"Bearer {tokens.mint(organization_id=uuid.uuid4())}"
    other = f"Bearer {tokens.mint(organization_id=uuid.uuid4(), role='super_admin')}"
    pair = [valid, other] if order == "valid_first" else [other, valid]
    response = await client.get(
        f"/v1/contacts/{marker}", headers=[("Authorization", v) for v in pair]
    )
    assert_problem(response, 400, "duplicate_authorization")
    assert upstreams["contacts"].calls_with(marker) == []


async def test_two_authorization_headers_on_a_public_route_are_refused(client, upstreams, marker):
    response = await client.post(
        f"/webhooks/whatsapp?m={marker}",
        content=b"{}",
        headers=[("Authorization", "Bearer a"), ("Authorization", "Bearer b")],
    )
    assert_problem(response, 400, "duplicate_authorization")
    assert upstreams["whatsapp-gateway"].calls_with(marker) == []


async def test_two_authorization_headers_on_a_websocket_are_refused(
    gateway, upstreams, tokens, marker
):
    token = tokens.mint(organization_id=uuid.uuid4())
    ws_url = gateway.url.replace("http", "ws") + f"/v1/stream?m={marker}"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(
                ws_url,
                headers=[("Authorization", f"Bearer {token}"), ("Authorization", "Bearer x")],
            )
    assert refused.value.status == 400
    assert upstreams["conversations"].calls_with(marker) == []


@pytest.mark.parametrize("with_header", [False, True])
async def test_two_access_tokens_on_a_websocket_are_refused(
    gateway, upstreams, tokens, marker, with_header
):
    """The gateway read the first ``access_token``, conversations the last: a valid
    token first and anything else after reached conversations with the latter."""
    token = tokens.mint(organization_id=uuid.uuid4())
    other = tokens.mint(organization_id=uuid.uuid4())
    ws_url = gateway.url.replace("http", "ws")
    ws_url += f"/v1/stream?m={marker}&access_token={token}&access_token={other}"
    headers = {"Authorization": f"Bearer {token}"} if with_header else {}
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(ws_url, headers=headers)
    assert refused.value.status == 400
    assert upstreams["conversations"].calls_with(marker) == []
    async with aiohttp.ClientSession() as session:
        answer = await session.get(
            ws_url.replace("ws", "http", 1),
            headers={
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
        )
        assert answer.status == 400
        assert (await answer.json())["code"] == "duplicate_access_token"


# -- the upstream pool ----------------------------------------------------------


async def test_no_free_upstream_connection_in_time_is_503_with_retry_after(
    upstreams, auth_headers, marker
):
    settings = gateway_settings(
        urls(upstreams), upstream_pool_size=1, upstream_pool_wait_s=0.2, upstream_timeout_s=3.0
    )
    async with run_gateway(settings) as gw, gw.client() as c:
        busy = asyncio.create_task(
            c.get(f"/v1/contacts/{marker}?mode=slow&delay=1.5", headers=auth_headers)
        )
        await asyncio.sleep(0.2)
        started = asyncio.get_running_loop().time()
        response = await c.get(f"/v1/tags/{marker}-second", headers=auth_headers)
        assert asyncio.get_running_loop().time() - started < 1.0
        body = assert_problem(response, 503, "upstream_busy")
        assert response.headers["retry-after"] == "1"
        assert body["retry_after"] == 1
        assert (await busy).status_code == 200
        # the pool recovers: the next request gets the connection
        assert (await c.get(f"/v1/tags/{marker}-third", headers=auth_headers)).status_code == 200


async def test_a_client_that_stops_reading_frees_its_upstream_connection(upstreams, tokens, marker):
    settings = gateway_settings(urls(upstreams), client_write_timeout_s=0.3)
    async with run_gateway(settings) as gw:
        pool = gw.app.state.upstreams.pool
        port = int(gw.url.rsplit(":", 1)[1])
        token = tokens.mint(organization_id=uuid.uuid4())
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", port))
        request = (
            f"GET /v1/contacts/{marker}?mode=flood HTTP/1.1\r\nhost: gw\r\n"
            f"authorization: Bearer {token}\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        try:
            # the answer starts streaming: one upstream connection in use ...
            await until(lambda: pool.open_connections > 0)
            # ... and the client reads nothing: within the write timeout it is cut
            await until(lambda: pool.open_connections == 0)
        finally:
            sock.close()
        assert upstreams["contacts"].calls_with(marker)


# -- WebSocket streams ------------------------------------------------------------


async def test_open_streams_per_organization_are_capped(upstreams, tokens, marker):
    settings = gateway_settings(urls(upstreams), ws_max_streams_per_organization=2)
    org = uuid.uuid4()
    async with run_gateway(settings) as gw, aiohttp.ClientSession() as session:
        ws_url = gw.url.replace("http", "ws") + f"/v1/stream?m={marker}"
        headers = tokens.headers(organization_id=org)
        first = await session.ws_connect(ws_url, headers=headers)
        second = await session.ws_connect(ws_url, headers=headers)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(ws_url, headers=headers)
        assert refused.value.status == 429
        # another organization is not affected
        other = await session.ws_connect(
            ws_url, headers=tokens.headers(organization_id=uuid.uuid4())
        )
        await other.close()
        # closing one frees its place
        await first.close()
        streams = gw.app.state.proxy.websocket.open_streams
        await until(lambda: streams.get(str(org)) == 1)
        third = await session.ws_connect(ws_url, headers=headers)
        assert json.loads((await third.receive(timeout=5)).data)["service"] == "conversations"
        await third.close()
        await second.close()
    assert len(upstreams["conversations"].calls_with(marker)) == 4


async def test_a_stream_closes_when_its_token_expires(gateway, tokens, marker):
    token = tokens.mint(organization_id=uuid.uuid4(), ttl=2)
    ws_url = gateway.url.replace("http", "ws") + f"/v1/stream?m={marker}"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(ws_url, headers={"Authorization": f"Bearer {token}"}) as ws,
    ):
        assert json.loads((await ws.receive(timeout=5)).data)["service"] == "conversations"
        await ws.send_str("still valid")
        assert (await ws.receive(timeout=5)).data == "echo:still valid"
        closing = await ws.receive(timeout=4)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == 1008


# -- signing keys withdrawn -------------------------------------------------------


async def test_cached_tokens_of_a_withdrawn_key_are_refused(upstreams, marker):
    old_key, new_key = TokenFactory(), TokenFactory()
    auth = FakeUpstream("auth", old_key)
    await auth.start()
    try:
        settings = gateway_settings({**urls(upstreams), "auth": auth.url}, jwks_cache_ttl_s=0.3)
        async with run_gateway(settings) as gw, gw.client() as c:
            headers = old_key.headers(organization_id=uuid.uuid4())
            assert (await c.get(f"/v1/tags/{marker}", headers=headers)).status_code == 200
            assert (await c.get(f"/v1/tags/{marker}", headers=headers)).status_code == 200
            auth.tokens = new_key  # auth rotated: the old key is no longer published
            await asyncio.sleep(0.5)
            response = await c.get(f"/v1/tags/{marker}-after", headers=headers)
            assert_problem(response, 401, "unauthorized")
            fresh = new_key.headers(organization_id=uuid.uuid4())
            assert (await c.get(f"/v1/tags/{marker}", headers=fresh)).status_code == 200
        assert upstreams["contacts"].calls_with(f"{marker}-after") == []
    finally:
        await auth.stop()


# -- what only the platform may ask -------------------------------------------------


async def test_metrics_and_readiness_are_internal(upstreams, auth_headers):
    internal_port = free_port()
    settings = gateway_settings(urls(upstreams), internal_port=internal_port)
    async with run_gateway(settings, forwarded_allow_ips="127.0.0.1") as gw, gw.client() as c:
        # the public side, as the Ingress (or a sidecar) relays a client
        relayed = {"X-Forwarded-For": "203.0.113.9"}
        for path in ("/metrics", "/readyz"):
            assert_problem(await c.get(path, headers=relayed), 404, "not_found")
            assert_problem(
                await c.get(path, headers={"X-Real-IP": "203.0.113.9"}), 404, "not_found"
            )
        assert (await c.get("/healthz", headers=relayed)).status_code == 200
        assert (await c.get("/docs", headers=relayed)).status_code == 200

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{internal_port}") as inner:
            metrics = await inner.get("/metrics")
            assert metrics.status_code == 200
            assert "pytake_http_requests_total" in metrics.text
            assert (await inner.get("/readyz")).json()["status"] == "ok"
            assert (await inner.get("/healthz")).status_code == 200
            # nothing else on the internal listener: no proxying, no docs
            assert (await inner.get("/v1/tags", headers=auth_headers)).status_code == 404
            assert (await inner.get("/docs")).status_code == 404
