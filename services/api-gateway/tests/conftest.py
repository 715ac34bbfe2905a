"""Real HTTP on both sides of the gateway.

Five fake upstreams (aiohttp.web servers on free 127.0.0.1 ports) echo what they
receive; the fake auth also serves the JWKS of a :class:`TokenFactory`. The
gateway itself runs in uvicorn on a free port, in the test event loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from aiohttp import WSMsgType, web
from cryptography.hazmat.primitives import serialization

from pytake_api_gateway.app import create_app
from pytake_api_gateway.config import Settings
from pytake_devstack.infra import free_port
from pytake_devstack.tokens import TokenFactory

SERVICES = (
    "auth",
    "tenants",
    "contacts",
    "conversations",
    "whatsapp-gateway",
    "integrations",
    "campaigns",
    "automation",
)
URL_FIELDS = {
    "auth": "auth_url",
    "tenants": "tenants_url",
    "contacts": "contacts_url",
    "conversations": "conversations_url",
    "whatsapp-gateway": "whatsapp_url",
    "integrations": "integrations_url",
    "campaigns": "campaigns_url",
    "automation": "automation_url",
}
UPSTREAM_TIMEOUT_S = 0.5

VALIDATION_ERROR = {
    "type": "object",
    "properties": {"detail": {"type": "array", "items": {"type": "string"}}},
}


def openapi_of(service: str) -> dict[str, Any]:
    """A small OpenAPI document per fake service, with one clashing component name."""
    paths = {
        "auth": ["/v1/auth/login", "/v1/users", "/internal/only"],
        "tenants": ["/v1/organizations/me", "/v1/plans"],
        "contacts": ["/v1/contacts", "/v1/contacts/{contact_id}", "/v1/tags"],
        "conversations": ["/v1/conversations"],
        "whatsapp-gateway": ["/v1/whatsapp/numbers", "/webhooks/whatsapp"],
        "integrations": ["/v1/webhook-endpoints"],
        "campaigns": ["/v1/campaigns"],
        "automation": ["/v1/automation/rules"],
    }[service]
    ok = {
        "description": "ok",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    bad = {
        "description": "invalid",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": f"PyTake {service}", "version": "0.1.0"},
        "paths": {
            p: {
                "get": {
                    "operationId": f"{service}_{p}",
                    "tags": [service],
                    "responses": {"200": ok, "422": bad},
                }
            }
            for p in [*paths, "/healthz"]
        },
        "components": {
            "schemas": {
                # Same name, different meaning in every service: must be prefixed.
                "Error": {"type": "object", "properties": {f"{service}_field": {"type": "string"}}},
                # Identical everywhere: must stay shared under its own name.
                "HTTPValidationError": VALIDATION_ERROR,
            }
        },
        "tags": [{"name": service}],
    }


@dataclass
class FakeUpstream:
    name: str
    tokens: TokenFactory | None = None
    port: int = field(default_factory=free_port)
    calls: list[dict[str, Any]] = field(default_factory=list)
    #: raw paths of requests whose head arrived (before their body is read)
    arrived: list[str] = field(default_factory=list)
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/openapi.json", self.openapi)
        if self.tokens is not None:
            app.router.add_get("/.well-known/jwks.json", self.jwks)
        app.router.add_route("*", "/{tail:.*}", self.echo)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def calls_with(self, marker: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if marker in c["raw_path"]]

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_of(self.name))

    async def jwks(self, request: web.Request) -> web.Response:
        assert self.tokens is not None
        self.calls.append({"raw_path": request.raw_path, "method": request.method})
        return web.json_response(self.tokens.jwks())

    async def echo(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self.websocket(request)
        self.arrived.append(request.raw_path)
        body = await request.read()
        record = {
            "service": self.name,
            "method": request.method,
            "raw_path": request.raw_path,
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.raw_headers],
            "body": base64.b64encode(body).decode(),
        }
        self.calls.append(record)
        mode = request.query.get("mode")
        if mode == "slow":
            await asyncio.sleep(float(request.query.get("delay", "2")))
        if mode == "stream":
            response = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            for i in range(3):
                await response.write(f"chunk-{i};".encode())
                await asyncio.sleep(0.05)
            await response.write_eof()
            return response
        if mode == "flood":  # far more than socket buffers hold, unsized
            response = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            piece = b"f" * (256 * 1024)
            with contextlib.suppress(ConnectionError):
                for _ in range(256):
                    await response.write(piece)
                await response.write_eof()
            return response
        if mode == "gzip":
            return web.Response(
                body=gzip.compress(b"hello gzip" * 10),
                headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"},
            )
        if mode == "big":
            return web.Response(body=b"x" * (1024 * 1024), content_type="application/octet-stream")
        headers = {"X-Request-Id": "set-by-upstream", "X-Upstream": self.name}
        if mode == "cookie":
            headers["Set-Cookie"] = "session=upstream-secret; Path=/"
        if mode == "redirect":
            headers["Location"] = "/elsewhere"
        status = int(request.query.get("status", "200"))
        return web.Response(
            status=status,
            body=json.dumps(record).encode(),
            headers=headers,
            content_type="application/json",
        )

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("pytake.v1",))
        await ws.prepare(request)
        self.calls.append({"raw_path": request.raw_path, "method": "WS"})
        await ws.send_json(
            {
                "service": self.name,
                "raw_path": request.raw_path,
                "headers": {k.lower(): v for k, v in request.headers.items()},
            }
        )
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                if msg.data == "close-me":
                    await ws.close(code=4001, message=b"bye")
                    break
                await ws.send_str("echo:" + msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(b"echo:" + msg.data)
        return ws


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # leave pytest's signal handlers alone
        yield


@dataclass
class RunningGateway:
    url: str
    app: Any
    settings: Settings

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, **{"timeout": 10.0, **kwargs})


@contextlib.asynccontextmanager
async def serve(config: uvicorn.Config) -> AsyncIterator[str]:
    """``config``'s app in uvicorn, in this event loop; yields its base URL."""
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://{config.host}:{config.port}"
    finally:
        server.should_exit = True
        try:  # bounded: a connection left open must not hold the suite until its timeout
            await asyncio.wait_for(asyncio.shield(task), 15)
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.asynccontextmanager
async def run_gateway(
    settings: Settings, forwarded_allow_ips: str = ""
) -> AsyncIterator[RunningGateway]:
    """The gateway in uvicorn. By default no peer is a trusted proxy (an edge
    deployment): uvicorn then never takes the client address from X-Forwarded-For."""
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=free_port(),
        log_config=None,
        access_log=False,
        lifespan="on",
        ws="auto",
        forwarded_allow_ips=forwarded_allow_ips,
    )
    async with serve(config) as url:
        yield RunningGateway(url, app, settings)


def gateway_settings(upstreams: dict[str, str], **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "secret_key": "test-secret-key-" + "x" * 32,
        "upstream_timeout_s": UPSTREAM_TIMEOUT_S,
        "upstream_connect_timeout_s": 1.0,
        "upstream_probe_timeout_s": 1.0,
        "log_level": "WARNING",
        "gc_freeze": False,
        # No broker in these tests: revocation and organization replicas are
        # fakes set on app.state by the tests that need them.
        "run_workers": False,
        # Shared gateways serve every test from 127.0.0.1: rate limits are
        # exercised by their own gateways (test_edge_policy.py).
        "ratelimit_client_per_minute": 1_000_000,
        "ratelimit_client_burst": 1_000_000,
    }
    values.update({URL_FIELDS[name]: url for name, url in upstreams.items()})
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def tokens() -> TokenFactory:
    return TokenFactory()


@pytest.fixture(scope="session")
async def upstreams(tokens: TokenFactory) -> AsyncIterator[dict[str, FakeUpstream]]:
    fakes = {name: FakeUpstream(name, tokens if name == "auth" else None) for name in SERVICES}
    for fake in fakes.values():
        await fake.start()
    yield fakes
    for fake in fakes.values():
        await fake.stop()


@pytest.fixture(scope="session")
async def gateway(upstreams: dict[str, FakeUpstream]) -> AsyncIterator[RunningGateway]:
    settings = gateway_settings({name: fake.url for name, fake in upstreams.items()})
    async with run_gateway(settings) as running:
        yield running


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway.client() as c:
        yield c


@pytest.fixture
def auth_headers(tokens: TokenFactory) -> dict[str, str]:
    return tokens.headers(organization_id=uuid.uuid4())


@pytest.fixture
def marker() -> str:
    """A unique path segment: tells this test's upstream calls from the others'."""
    return "m" + uuid.uuid4().hex[:12]


# -- forged and odd tokens ------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_for(tokens: TokenFactory, **overrides: Any) -> dict[str, Any]:
    """The claims :meth:`TokenFactory.mint` would sign, with ``overrides``."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": tokens.issuer,
        "aud": tokens.audience,
        "sub": str(uuid.uuid4()),
        "org": str(uuid.uuid4()),
        "role": "org_admin",
        "sid": uuid.uuid4().hex,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    claims.update(overrides)
    return claims


def sign(tokens: TokenFactory, claims: dict[str, Any]) -> str:
    """Correctly signed with the factory's key (EdDSA, its kid)."""
    return jwt.encode(claims, tokens.key, algorithm="EdDSA", headers={"kid": tokens.kid})


def unsigned(tokens: TokenFactory) -> str:
    """``alg: none`` with the real kid and an empty signature."""
    header = {"alg": "none", "typ": "JWT", "kid": tokens.kid}
    body = claims_for(tokens)
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(body).encode())}."


def public_key_bytes(tokens: TokenFactory, form: str) -> bytes:
    public = tokens.key.public_key()
    if form == "pem":
        return public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    if form == "raw":
        return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    # the JWK's "x", as a client would copy it from /.well-known/jwks.json
    return str(tokens.jwks()["keys"][0]["x"]).encode()


def hs256_with_public_key(tokens: TokenFactory, form: str) -> str:
    """The key-confusion attack: HMAC-SHA256 keyed with the *public* key's bytes."""
    header = {"alg": "HS256", "typ": "JWT", "kid": tokens.kid}
    signing_input = (
        f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims_for(tokens)).encode())}"
    )
    mac = hmac.new(public_key_bytes(tokens, form), signing_input.encode(), hashlib.sha256)
    return f"{signing_input}.{b64url(mac.digest())}"


def tampered(token: str, **changes: Any) -> str:
    """The payload changed, the original signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    # PyJWT's own encoding: with no changes the token comes back byte for byte.
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
    return f"{header}.{payload}.{signature}"
