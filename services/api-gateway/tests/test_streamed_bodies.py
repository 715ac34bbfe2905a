"""Streamed bodies (large uploads, streamed answers) hold an upstream connection as
long as the client takes: they have their own caps, in all and per organization,
and a minimum average pace (relay.StreamedBodies, relay.Pace)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx

from pytake_devstack.tokens import TokenFactory

from .conftest import FakeUpstream, gateway_settings, run_gateway
from .test_hardening import until, urls

CSV = {"Content-Type": "text/csv"}


async def test_a_trickling_upload_is_cut(
    upstreams: dict[str, FakeUpstream], auth_headers: dict[str, str], marker: str
) -> None:
    """Each piece comes well within the per-piece bound, but the upload as a
    whole crawls (about 1 KiB/s): it is cut once the grace is used up."""
    settings = gateway_settings(
        urls(upstreams),
        upstream_timeout_s=2.0,
        streamed_body_min_bytes_per_s=64 * 1024,
        streamed_body_grace_s=0.5,
    )

    async def body() -> AsyncIterator[bytes]:
        yield b"phone\n"
        for _ in range(40):  # 4 s in all
            await asyncio.sleep(0.1)
            yield b"+14155550100\n" * 8

    async with run_gateway(settings) as gw, gw.client() as c:
        response = await c.post(
            f"/v1/contacts/import?m={marker}", content=body(), headers=auth_headers | CSV
        )
        assert response.status_code == 408, response.text
        assert response.json()["code"] == "request_timeout"
        assert "slower than" in response.json()["detail"]
        assert not upstreams["contacts"].calls_with(marker)  # never got to contacts whole
        await until(lambda: gw.app.state.upstreams.pool.open_connections == 0)


async def test_streamed_uploads_are_capped_per_organization_and_in_all(
    upstreams: dict[str, FakeUpstream], tokens: TokenFactory, marker: str
) -> None:
    settings = gateway_settings(
        urls(upstreams),
        upstream_timeout_s=5.0,
        streamed_bodies_per_organization=2,
        streamed_bodies_max=3,
    )
    crowded = tokens.headers(organization_id=uuid.uuid4())
    other = tokens.headers(organization_id=uuid.uuid4())
    third = tokens.headers(organization_id=uuid.uuid4())
    release = asyncio.Event()

    async def held() -> AsyncIterator[bytes]:
        yield b"phone\n"
        await release.wait()
        yield b"+14155550100\n"

    path = f"/v1/contacts/import?m={marker}"
    async with run_gateway(settings) as gw, gw.client() as c:

        async def upload(headers: dict[str, str]) -> httpx.Response:
            return await c.post(path, content=held(), headers=headers | CSV)

        def arrived() -> int:
            return sum(marker in p for p in upstreams["contacts"].arrived)

        slow = [asyncio.create_task(upload(crowded)) for _ in range(2)]
        await until(lambda: arrived() == 2)
        # a third upload of the same organization: its cap
        refused = await c.post(path, content=b"phone\n", headers=crowded | CSV)
        assert refused.status_code == 429, refused.text
        assert refused.json()["code"] == "too_many_streams"
        assert refused.headers["retry-after"] == "1"
        # another organization still uploads (the third slot of the replica) ...
        slow.append(asyncio.create_task(upload(other)))
        await until(lambda: arrived() == 3)
        # ... and now the replica's cap is reached for everyone
        busy = await c.post(path, content=b"phone\n", headers=third | CSV)
        assert busy.status_code == 503, busy.text
        assert busy.json()["code"] == "streams_busy"
        # normal requests are not streamed bodies: they still pass
        normal = await c.post(f"/v1/contacts/{marker}", json={"a": 1}, headers=crowded)
        assert normal.status_code == 200, normal.text
        release.set()
        assert [r.status_code for r in await asyncio.gather(*slow)] == [200, 200, 200]
        # the slots were given back
        again = await c.post(path, content=b"phone\n", headers=crowded | CSV)
        assert again.status_code == 200, again.text
        await until(lambda: gw.app.state.proxy.streams.active == 0)


async def test_streamed_answers_count_too_and_a_slow_reader_is_cut(
    upstreams: dict[str, FakeUpstream], auth_headers: dict[str, str], marker: str
) -> None:
    settings = gateway_settings(
        urls(upstreams),
        streamed_bodies_per_organization=1,
        client_write_timeout_s=30.0,
        streamed_body_min_bytes_per_s=4 * 1024 * 1024,
        streamed_body_grace_s=0.5,
    )
    path = f"/v1/contacts/{marker}?mode=flood"  # 64 MiB, unsized: streamed
    async with run_gateway(settings) as gw, gw.client() as c:
        async with c.stream("GET", path, headers=auth_headers) as reading:
            assert reading.status_code == 200
            # not read: the gateway's writes block on the client
            second = await c.get(path, headers=auth_headers)
            assert second.status_code == 429, second.text
            assert second.json()["code"] == "too_many_streams"
            started = asyncio.get_running_loop().time()
            received = 0
            try:
                async for piece in reading.aiter_raw():
                    received += len(piece)
                    await asyncio.sleep(0.1)  # well below 4 MiB/s
                    if asyncio.get_running_loop().time() - started > 15:
                        break
            except httpx.HTTPError:
                pass
            took = asyncio.get_running_loop().time() - started
        assert received < 64 * 1024 * 1024  # cut, not delivered
        assert took < 15.0
        # the slot was given back
        again = await c.get(f"/v1/contacts/{marker}?mode=stream", headers=auth_headers)
        assert again.status_code == 200
