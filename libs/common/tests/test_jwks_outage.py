"""The verifier while auth is slow or down: few fetches, held keys keep verifying.

Auth is a real local HTTP server (asyncio streams) that serves the JWKS, answers
503, or accepts connections and never answers; "refused" is a port nobody listens on.
"""

import asyncio
import contextlib
import json
import socket
import time
import uuid

import httpx
import pytest

import pytake_common.security as security
from pytake_common.errors import Unauthorized
from pytake_common.security import JWKSVerifier
from pytake_devstack.tokens import TokenFactory

CONCURRENCY = 200


class FakeAuth:
    def __init__(self, jwks: dict) -> None:
        self.jwks = json.dumps(jwks).encode()
        self.mode = "serve"
        self.requests = 0
        self._handlers: set[asyncio.Task] = set()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> "FakeAuth":
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/.well-known/jwks.json"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                self.requests += 1
                if self.mode == "hang":
                    await asyncio.Event().wait()
                if self.mode == "drip":  # a byte at a time, each well within a read timeout
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                    while True:
                        writer.write(b" ")
                        await writer.drain()
                        await asyncio.sleep(0.2)
                status, body = (
                    (b"200 OK", self.jwks) if self.mode == "serve" else (b"503 Unavailable", b"{}")
                )
                writer.write(
                    b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._handlers.discard(task)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/.well-known/jwks.json"


def tuned(url: str, factory: TokenFactory) -> JWKSVerifier:
    v = JWKSVerifier(url, issuer=factory.issuer, audience=factory.audience, cache_ttl_s=0.3)
    v.fetch_timeout_s = 1.0
    v.stale_wait_s = 0.1
    v.backoff_initial_s = 1.5
    v.cache_size = 0  # every verification goes through the keys, none through the cache
    return v


async def verify_all(v: JWKSVerifier, tokens: list[str]) -> list[object]:
    return await asyncio.wait_for(
        asyncio.gather(*(v.verify(t) for t in tokens), return_exceptions=True), 10
    )


@pytest.mark.parametrize("outage", ["503", "hang", "refused"])
async def test_auth_down_costs_a_handful_of_fetches_and_held_keys_keep_verifying(outage):
    f, stranger = TokenFactory(), TokenFactory()
    async with FakeAuth(f.jwks()) as auth:
        v = tuned(auth.url, f)
        try:
            await v.verify(f.mint(organization_id=uuid.uuid4()))
            assert auth.requests == 1
            if outage == "refused":
                v.jwks_url = closed_port_url()
            else:
                auth.mode = "hang" if outage == "hang" else "fail"
            await asyncio.sleep(0.35)  # the JWKS is stale now: a refresh is due
            fetches, requests = v.fetches, auth.requests

            tokens = [f.mint(organization_id=uuid.uuid4()) for _ in range(CONCURRENCY)]
            started = time.monotonic()
            results = await verify_all(v, tokens)
            elapsed = time.monotonic() - started
            assert all(isinstance(r, dict) for r in results), {repr(r) for r in results}
            assert v.fetches - fetches == 1  # one shared refresh, not one per request
            # A hanging auth delayed them by the stale wait, not by the fetch timeout.
            assert elapsed < 0.8, elapsed

            # Unknown kids: they wait for the one fetch in flight (or none, backing off).
            results = await verify_all(v, [stranger.mint(organization_id=uuid.uuid4())] * 50)
            assert all(isinstance(r, Unauthorized) for r in results)
            results = await verify_all(v, tokens)
            assert all(isinstance(r, dict) for r in results)
            assert v.fetches - fetches <= 2
            assert auth.requests - requests <= 2
        finally:
            await v.aclose()


async def test_failed_fetches_back_off_and_a_recovered_auth_is_used_again():
    f = TokenFactory()
    async with FakeAuth(f.jwks()) as auth:
        v = tuned(auth.url, f)
        v.backoff_initial_s = 0.4
        try:
            await v.verify(f.mint(organization_id=uuid.uuid4()))
            auth.mode = "fail"
            await asyncio.sleep(0.35)
            token = f.mint(organization_id=uuid.uuid4())
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:  # a steady stream of requests for 1.5 s
                await v.verify(token)
                await asyncio.sleep(0.005)
            # Backoff 0.2-0.4 s, then 0.4-0.8 s, then 0.8-1.6 s: three or four fetches
            # in 1.5 s, where one per request would be hundreds.
            assert 2 <= auth.requests - 1 <= 5, auth.requests
            # Auth is back: once the backoff ends, a rotated key is picked up.
            auth.mode = "serve"
            f2 = TokenFactory()
            auth.jwks = json.dumps({"keys": f.jwks()["keys"] + f2.jwks()["keys"]}).encode()
            await asyncio.sleep(1.7)
            assert (await v.verify(f2.mint(organization_id=uuid.uuid4())))["iss"] == f.issuer
        finally:
            await v.aclose()


async def test_an_unknown_kid_fetches_at_most_once_per_interval():
    f, stranger = TokenFactory(), TokenFactory()
    async with FakeAuth(f.jwks()) as auth:
        v = tuned(auth.url, f)
        v.cache_ttl_s = 300
        v.min_refresh_s = 0.5
        try:
            await v.verify(f.mint(organization_id=uuid.uuid4()))
            await asyncio.sleep(0.55)
            garbage = [stranger.mint(organization_id=uuid.uuid4()) for _ in range(CONCURRENCY)]
            results = await verify_all(v, garbage)
            assert all(isinstance(r, Unauthorized) for r in results)
            assert auth.requests == 2  # one refetch for the unknown kid, shared by all
            results = await verify_all(v, garbage)  # within min_refresh_s: no refetch
            assert auth.requests == 2
        finally:
            await v.aclose()


async def test_one_http_client_for_every_fetch(monkeypatch):
    created: list[httpx.AsyncClient] = []

    class CountingClient(httpx.AsyncClient):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            created.append(self)

    monkeypatch.setattr(security.httpx, "AsyncClient", CountingClient)
    f = TokenFactory()
    async with FakeAuth(f.jwks()) as auth:
        v = tuned(auth.url, f)
        v.backoff_initial_s = 0.05
        await v.verify(f.mint(organization_id=uuid.uuid4()))
        auth.mode = "fail"
        for _ in range(4):  # stale, refreshed (and failing) again and again
            await asyncio.sleep(0.35)
            await verify_all(v, [f.mint(organization_id=uuid.uuid4()) for _ in range(20)])
        assert v.fetches >= 4
        assert len(created) == 1
        await v.aclose()
        assert created[0].is_closed


async def test_a_fetch_is_bounded_as_a_whole_not_per_read():
    f = TokenFactory()
    async with FakeAuth(f.jwks()) as auth:
        auth.mode = "drip"
        v = tuned(auth.url, f)
        try:
            started = time.monotonic()
            with pytest.raises(Unauthorized, match="signing keys unavailable"):
                await v.verify(f.mint(organization_id=uuid.uuid4()))
            assert time.monotonic() - started < v.fetch_timeout_s + 0.5
        finally:
            await v.aclose()


async def test_no_keys_and_auth_down_is_refused_quickly():
    f = TokenFactory()
    v = tuned(closed_port_url(), f)
    try:
        results = await verify_all(v, [f.mint(organization_id=uuid.uuid4())] * CONCURRENCY)
        assert all(isinstance(r, Unauthorized) for r in results)
        assert {str(r) for r in results} == {"signing keys unavailable"}
        assert v.fetches == 1
        with contextlib.suppress(Unauthorized):
            await v.verify(f.mint(organization_id=uuid.uuid4()))
        assert v.fetches == 1  # backing off
    finally:
        await v.aclose()
