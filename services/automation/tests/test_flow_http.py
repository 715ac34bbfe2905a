"""A flow's HTTP call against a real local server: mapping, refusals, timeouts, size."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from pytake_automation.flows.http import MAX_BODY, FlowHttpClient
from pytake_automation.flows.session import HttpRequest

HOST = "127.0.0.1"


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    async def order(request: web.Request) -> web.StreamResponse:
        seen.append(
            {
                "method": request.method,
                "headers": dict(request.headers),
                "body": await request.read(),
            }
        )
        return web.json_response({"order": {"id": request.match_info["id"], "status": "shipped"}})

    async def slow(_: web.Request) -> web.StreamResponse:
        await asyncio.sleep(2)
        return web.json_response({})

    async def huge(_: web.Request) -> web.StreamResponse:
        return web.Response(body=b"x" * (MAX_BODY + 10))

    async def moved(_: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data")

    app = web.Application()
    app.router.add_route("*", "/orders/{id}", order)
    app.router.add_get("/slow", slow)
    app.router.add_get("/huge", huge)
    app.router.add_get("/moved", moved)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://{HOST}:{port}", seen
    await runner.cleanup()


def request(url: str, **extra: Any) -> HttpRequest:
    fields: dict[str, Any] = {
        "wait": 3,
        "node_id": "h",
        "method": "GET",
        "url": url,
        "headers": {},
        "timeout_seconds": 1.0,
    }
    return HttpRequest.model_validate(fields | extra)


async def test_a_call_is_made_and_its_json_returned(
    server: tuple[str, list[dict[str, Any]]],
) -> None:
    base, seen = server
    client = FlowHttpClient(allow_loopback=True)
    try:
        result = await client.call(
            request(
                f"{base}/orders/A1",
                method="POST",
                headers={"X-Key": "k", "Host": "internal.admin"},
                body={"q": 1},
            ),
            [HOST],
        )
    finally:
        await client.close()
    assert result.wait == 3 and result.error is None and result.status == 200
    assert result.body == {"order": {"id": "A1", "status": "shipped"}}
    [call] = seen
    assert call["method"] == "POST" and json.loads(call["body"]) == {"q": 1}
    assert call["headers"]["X-Key"] == "k"
    assert call["headers"]["Host"].startswith(HOST)  # a flow cannot pick the virtual host


async def test_refusals_never_connect(server: tuple[str, list[dict[str, Any]]]) -> None:
    base, seen = server
    client = FlowHttpClient(allow_loopback=False)
    try:
        secure = base.replace("http://", "https://")
        plain = await client.call(request(f"{base}/orders/1"), [HOST])
        not_listed = await client.call(request(f"{secure}/orders/1"), ["api.example.com"])
        loopback = await client.call(request(f"{secure}/orders/1"), [HOST])
        metadata = await client.call(request("https://169.254.169.254/x"), ["169.254.169.254"])
    finally:
        await client.close()
    assert not_listed.error is not None and "allow-list" in not_listed.error
    assert plain.error == "the URL must be https:// with a host"
    assert loopback.error == "the URL's host is a loopback address"
    assert metadata.error == "the URL's host is a cloud metadata address"
    assert seen == []


async def test_an_allow_listed_name_that_resolves_privately_is_refused() -> None:
    async def lookup(host: str, port: int) -> list[str]:
        return ["10.0.0.5"]

    client = FlowHttpClient(lookup=lookup)
    try:
        result = await client.call(request("https://api.example.com/x"), ["api.example.com"])
    finally:
        await client.close()
    assert result.status is None and result.error is not None
    assert "private address" in result.error


async def test_timeouts_size_and_redirects(server: tuple[str, list[dict[str, Any]]]) -> None:
    base, _ = server
    client = FlowHttpClient(allow_loopback=True)
    try:
        slow = await client.call(request(f"{base}/slow", timeout_seconds=0.2), [HOST])
        huge = await client.call(request(f"{base}/huge"), [HOST])
        moved = await client.call(request(f"{base}/moved"), [HOST])
    finally:
        await client.close()
    assert slow.error == "timed out"
    assert huge.error == "answer too large"
    assert moved.status == 302 and moved.error is None  # not followed: the flow sees a failure
