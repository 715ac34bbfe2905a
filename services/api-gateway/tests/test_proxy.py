"""Forwarding through the running gateway to real upstream HTTP servers."""

from __future__ import annotations

import base64
import gzip
import json
import time
import uuid

import aiohttp
import httpx
import pytest

from pytake_devstack.tokens import TokenFactory

from .conftest import (
    claims_for,
    gateway_settings,
    hs256_with_public_key,
    run_gateway,
    sign,
    tampered,
    unsigned,
)

MIB = 1024 * 1024

ROUTED = [
    ("/v1/auth/me", "auth"),
    ("/v1/users", "auth"),
    ("/v1/organizations/me", "tenants"),
    ("/v1/plans", "tenants"),
    ("/v1/departments/123", "tenants"),
    ("/v1/contacts", "contacts"),
    ("/v1/contacts/", "contacts"),
    ("/v1/tags/9", "contacts"),
    ("/v1/conversations/1/messages", "conversations"),
    ("/v1/stream", "conversations"),
    ("/v1/whatsapp/numbers", "whatsapp-gateway"),
    ("/webhooks/whatsapp/extra", "whatsapp-gateway"),
    ("/v1/webhook-endpoints", "integrations"),
    ("/v1/webhook-endpoints/1/deliveries", "integrations"),
    ("/v1/campaigns", "campaigns"),
    ("/v1/campaigns/1/stats", "campaigns"),
]


def headers_of(record: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in record["headers"]:
        out.setdefault(name.lower(), []).append(value)
    return out


def assert_problem(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    return body


@pytest.mark.parametrize(("path", "service"), ROUTED)
async def test_routes_each_prefix_to_its_upstream(client, auth_headers, path, service):
    response = await client.get(path, headers=auth_headers)
    assert response.status_code == 200, response.text
    record = response.json()
    assert record["service"] == service
    assert record["raw_path"] == path
    assert response.headers["x-upstream"] == service


async def test_jwks_is_public_and_served_by_auth(client, tokens):
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.json()["keys"][0]["kid"] == tokens.kid


@pytest.mark.parametrize(
    "path",
    ["/v1/contactsX", "/v1/contacts-old/1", "/v1/authors", "/v1", "/", "/nope", "/v2/contacts"],
)
async def test_segment_boundaries_and_unknown_paths_are_404_problems(
    client, auth_headers, upstreams, path
):
    before = sum(len(u.calls) for u in upstreams.values())
    response = await client.get(path, headers=auth_headers)
    assert_problem(response, 404, "not_found")
    assert sum(len(u.calls) for u in upstreams.values()) == before


async def test_dot_segments_are_refused(gateway, upstreams, auth_headers, marker):
    # httpx normalises "..", so speak HTTP by hand.
    reader_writer = await _raw_request(
        gateway.url,
        f"GET /webhooks/whatsapp/../../v1/users/{marker} HTTP/1.1\r\nHost: gw\r\n"
        "Connection: close\r\n\r\n".encode(),
    )
    assert reader_writer.startswith(b"HTTP/1.1 400")
    assert not upstreams["auth"].calls_with(marker)
    assert not upstreams["whatsapp-gateway"].calls_with(marker)


async def _raw_request(base_url: str, payload: bytes) -> bytes:
    import asyncio

    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(payload)
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


def _other_key_same_kid(tokens: TokenFactory) -> TokenFactory:
    forged = TokenFactory()
    forged.kid = tokens.kid
    return forged


def _wrong_audience(tokens: TokenFactory) -> TokenFactory:
    other = TokenFactory(audience="someone-else")
    other.key, other.kid = tokens.key, tokens.kid
    return other


def _wrong_issuer(tokens: TokenFactory) -> TokenFactory:
    other = TokenFactory(issuer="not-auth")
    other.key, other.kid = tokens.key, tokens.kid
    return other


@pytest.mark.parametrize(
    "make_header",
    [
        pytest.param(lambda t: None, id="missing"),
        pytest.param(lambda t: "Bearer not-a-jwt", id="garbage"),
        pytest.param(lambda t: "Bearer", id="empty"),
        pytest.param(lambda t: "Basic dXNlcjpwYXNz", id="basic-scheme"),
        pytest.param(
            lambda t: "Bearer " + t.mint(organization_id=uuid.uuid4(), ttl=-60), id="expired"
        ),
        pytest.param(
            lambda t: "Bearer " + _wrong_audience(t).mint(organization_id=uuid.uuid4()),
            id="wrong-audience",
        ),
        pytest.param(
            lambda t: "Bearer " + _wrong_issuer(t).mint(organization_id=uuid.uuid4()),
            id="wrong-issuer",
        ),
        pytest.param(
            lambda t: "Bearer " + _other_key_same_kid(t).mint(organization_id=uuid.uuid4()),
            id="forged-signature",
        ),
        pytest.param(
            lambda t: "Bearer " + TokenFactory().mint(organization_id=uuid.uuid4()),
            id="unknown-kid",
        ),
        pytest.param(lambda t: "Bearer " + unsigned(t), id="alg-none"),
        pytest.param(lambda t: "Bearer " + hs256_with_public_key(t, "pem"), id="hs256-pem-key"),
        pytest.param(lambda t: "Bearer " + hs256_with_public_key(t, "raw"), id="hs256-raw-key"),
        pytest.param(lambda t: "Bearer " + hs256_with_public_key(t, "jwk"), id="hs256-jwk-x"),
        pytest.param(
            lambda t: "Bearer " + sign(t, claims_for(t, nbf=int(time.time()) + 300)),
            id="not-yet-valid",
        ),
        pytest.param(
            lambda t: (
                "Bearer " + tampered(t.mint(organization_id=uuid.uuid4()), role="super_admin")
            ),
            id="tampered-role",
        ),
        pytest.param(
            lambda t: (
                "Bearer " + tampered(t.mint(organization_id=uuid.uuid4()), org=str(uuid.uuid4()))
            ),
            id="tampered-organization",
        ),
        pytest.param(
            lambda t: "Bearer " + sign(t, {k: v for k, v in claims_for(t).items() if k != "org"}),
            id="missing-organization-claim",
        ),
    ],
)
@pytest.mark.parametrize(
    ("method", "path", "service"),
    [
        ("GET", "/v1/contacts", "contacts"),
        ("POST", "/v1/auth/logout", "auth"),
        ("GET", "/v1/auth/login", "auth"),  # login is public for POST only
        ("GET", "/webhooks/whatsapp/other", "whatsapp-gateway"),
    ],
)
async def test_protected_routes_reject_bad_tokens_before_forwarding(
    client, upstreams, tokens, marker, make_header, method, path, service
):
    header = make_header(tokens)
    headers = {"Authorization": header} if header is not None else {}
    response = await client.request(method, f"{path}/{marker}", headers=headers)
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    assert upstreams[service].calls_with(marker) == []


async def test_forging_helpers_produce_valid_tokens_when_nothing_is_forged(
    client, upstreams, tokens, marker
):
    """Controls for the rejections above: the same helpers, used honestly, pass."""
    token = tokens.mint(organization_id=uuid.uuid4())
    assert tampered(token) == token
    for good in (token, sign(tokens, claims_for(tokens))):
        response = await client.get(
            f"/v1/contacts/{marker}", headers={"Authorization": f"Bearer {good}"}
        )
        assert response.status_code == 200, response.text
    assert len(upstreams["contacts"].calls_with(marker)) == 2


async def test_valid_token_is_forwarded_with_method_path_query_and_body(
    client, upstreams, auth_headers, marker
):
    body = b'{"name": "Ana"}'
    response = await client.request(
        "PATCH",
        f"/v1/contacts/{marker}/a%2Fb%20c?q=caf%C3%A9&x=1&x=2&empty=",
        headers={**auth_headers, "Content-Type": "application/json", "Idempotency-Key": "k-1"},
        content=body,
    )
    assert response.status_code == 200
    record = response.json()
    assert record["method"] == "PATCH"
    assert record["raw_path"] == f"/v1/contacts/{marker}/a%2Fb%20c?q=caf%C3%A9&x=1&x=2&empty="
    assert base64.b64decode(record["body"]) == body
    seen = headers_of(record)
    assert seen["authorization"] == [auth_headers["Authorization"]]
    assert seen["content-type"] == ["application/json"]
    assert seen["idempotency-key"] == ["k-1"]
    assert seen["content-length"] == [str(len(body))]


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
async def test_methods_are_forwarded(client, upstreams, auth_headers, marker, method):
    response = await client.request(method, f"/v1/tags/{marker}", headers=auth_headers)
    assert response.status_code == 200
    (call,) = upstreams["contacts"].calls_with(marker)
    assert call["method"] == method


async def test_public_routes_need_no_token(client, upstreams, marker):
    for path in ("/v1/auth/login", "/v1/auth/register", "/v1/auth/refresh"):
        response = await client.post(path, params={"m": marker}, json={"email": "a@b.c"})
        assert response.status_code == 200, response.text
        assert response.json()["service"] == "auth"
    # exact paths only: a longer path is not public
    response = await client.post(f"/v1/auth/login/{marker}")
    assert_problem(response, 401, "unauthorized")


async def test_spoofed_platform_and_proxy_headers_are_replaced(
    client, upstreams, auth_headers, marker
):
    spoofed_trace = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    response = await client.get(
        f"/v1/contacts/{marker}",
        headers={
            **auth_headers,
            "X-Pytake-Organization-Id": "00000000-0000-0000-0000-000000000000",
            "X-PyTake-Role": "super_admin",
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Prefix": "/admin",
            "Forwarded": "for=6.6.6.6;proto=https",
            "X-Real-IP": "6.6.6.6",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "Traceparent": spoofed_trace,
            "Connection": "keep-alive, X-Secret-Hop",
            "X-Secret-Hop": "must-not-pass",
            "X-Custom": "kept",
            "X-Utf8": "olá ✓".encode(),
            "Accept": "application/json",
        },
    )
    assert response.status_code == 200
    seen = headers_of(response.json())
    assert not [h for h in seen if h.startswith("x-pytake-")]
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["x-forwarded-host"] == [client.base_url.netloc.decode()]
    for dropped in (
        "x-forwarded-prefix",
        "forwarded",
        "x-real-ip",
        "proxy-authorization",
        "x-secret-hop",
        "keep-alive",
        "transfer-encoding",
    ):
        assert dropped not in seen, dropped
    assert seen["traceparent"] != [spoofed_trace]
    assert len(seen["traceparent"]) == 1
    assert seen["traceparent"][0].startswith("00-")
    assert seen["x-custom"] == ["kept"]
    # the upstream received exactly the client's bytes (the echo shows them as latin-1)
    assert seen["x-utf8"] == ["olá ✓".encode().decode("latin-1")]
    assert seen["accept"] == ["application/json"]
    assert seen["host"] == [upstreams["contacts"].url.removeprefix("http://")]
    # nothing the client did not send is invented by the client library
    assert "user-agent" in seen  # httpx's own, relayed as sent
    assert seen["user-agent"][0].startswith("python-httpx")
    assert "accept-encoding" in seen  # httpx sent one; relayed, not aiohttp's


async def test_the_gateways_span_continues_the_clients_trace(client, auth_headers, marker):
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    response = await client.get(
        f"/v1/contacts/{marker}",
        headers={**auth_headers, "traceparent": f"00-{trace_id}-{parent}-01"},
    )
    (forwarded,) = headers_of(response.json())["traceparent"]
    version, forwarded_trace, span, _flags = forwarded.split("-")
    assert (version, forwarded_trace) == ("00", trace_id)
    assert span != parent  # the gateway's own span, child of the client's

    response = await client.get(f"/v1/contacts/{marker}/fresh", headers=auth_headers)
    (fresh,) = headers_of(response.json())["traceparent"]
    assert fresh.split("-")[1] != trace_id  # no client context: a new trace


async def test_client_tracestate_and_sampling_flag_are_carried(client, auth_headers, marker):
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    response = await client.get(
        f"/v1/contacts/{marker}",
        headers={
            **auth_headers,
            "traceparent": f"00-{trace_id}-{parent}-00",
            "tracestate": "vendor=abc,other=1",
        },
    )
    seen = headers_of(response.json())
    (forwarded,) = seen["traceparent"]
    assert forwarded.startswith(f"00-{trace_id}-") and forwarded.endswith("-00")
    assert seen["tracestate"] == ["vendor=abc,other=1"]
    response = await client.get(
        f"/v1/contacts/{marker}/bad", headers={**auth_headers, "traceparent": "00-zz-yy-01"}
    )
    (fresh,) = headers_of(response.json())["traceparent"]
    # malformed: a new trace, sampled with a random id (03), as the SDK and every service write it
    assert len(fresh.split("-")[1]) == 32 and fresh.endswith("-03")


async def test_recorded_spans_continue_the_clients_trace_too(upstreams, auth_headers, marker):
    """With an exporter configured the gateway records an SDK span (the test above
    covers the context-only path of ``PYTAKE_OTEL_EXPORTER=none``)."""
    settings = gateway_settings(
        {name: fake.url for name, fake in upstreams.items()}, otel_exporter="console"
    )
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    async with run_gateway(settings) as running, running.client() as client:
        response = await client.get(
            f"/v1/contacts/{marker}",
            headers={**auth_headers, "traceparent": f"00-{trace_id}-{parent}-01"},
        )
    (forwarded,) = headers_of(response.json())["traceparent"]
    version, forwarded_trace, span, flags = forwarded.split("-")
    assert (version, forwarded_trace, flags) == ("00", trace_id, "01")
    assert span != parent


async def test_client_library_adds_no_headers_of_its_own(gateway, upstreams, auth_headers, marker):
    token = auth_headers["Authorization"]
    raw = await _raw_request(
        gateway.url,
        (
            f"POST /v1/contacts/{marker} HTTP/1.1\r\nHost: gw\r\nAuthorization: {token}\r\n"
            "Content-Length: 2\r\nConnection: close\r\n\r\nhi"
        ).encode(),
    )
    assert raw.startswith(b"HTTP/1.1 200")
    (call,) = upstreams["contacts"].calls_with(marker)
    names = sorted(name.lower() for name, _ in call["headers"])
    assert names == sorted(
        [
            "host",
            "authorization",
            "content-length",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "x-request-id",
            "traceparent",
        ]
    )
    assert base64.b64decode(call["body"]) == b"hi"


async def test_request_id_kept_when_well_formed(client, upstreams, auth_headers, marker):
    rid = "client-req.42:abc_DEF"
    response = await client.get(
        f"/v1/plans/{marker}", headers={**auth_headers, "X-Request-Id": rid}
    )
    assert response.headers.get_list("x-request-id") == [rid]
    assert headers_of(response.json())["x-request-id"] == [rid]


@pytest.mark.parametrize("bad", ["has space", "x" * 200, "-leading-dash", "émoji", "a;b"])
async def test_request_id_replaced_when_malformed(client, auth_headers, marker, bad):
    response = await client.get(
        f"/v1/plans/{marker}", headers={**auth_headers, "X-Request-Id": bad.encode("utf-8")}
    )
    (rid,) = response.headers.get_list("x-request-id")
    assert rid != bad
    assert len(rid) == 32
    assert headers_of(response.json())["x-request-id"] == [rid]


async def test_request_id_generated_when_missing_and_upstream_one_not_duplicated(
    client, auth_headers, marker
):
    response = await client.get(f"/v1/plans/{marker}", headers=auth_headers)
    (rid,) = response.headers.get_list("x-request-id")  # upstream's own id is not relayed
    assert rid != "set-by-upstream"
    assert headers_of(response.json())["x-request-id"] == [rid]


WEBHOOK_BODY = (
    '{ "object":"whatsapp_business_account" ,\r\n\t"entry" : [ {"id":"1",   '
    '"text":"Olá, ação! 你好 👋 \\u00e9 \\"quoted\\"" } ]   }\n\n   '
).encode() + b"\x00\xff trailing bytes"


async def test_webhook_raw_body_arrives_byte_for_byte(client, upstreams, marker):
    response = await client.post(
        "/webhooks/whatsapp",
        params={"m": marker},
        content=WEBHOOK_BODY,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + "ab" * 32},
    )
    assert response.status_code == 200
    (call,) = upstreams["whatsapp-gateway"].calls_with(marker)
    assert base64.b64decode(call["body"]) == WEBHOOK_BODY
    seen = headers_of(call)
    assert seen["x-hub-signature-256"] == ["sha256=" + "ab" * 32]
    assert seen["content-type"] == ["application/json"]
    assert "authorization" not in seen


async def test_webhook_chunked_body_arrives_byte_for_byte(client, upstreams, marker):
    async def chunks():
        for i in range(0, len(WEBHOOK_BODY), 7):
            yield WEBHOOK_BODY[i : i + 7]

    response = await client.post("/webhooks/whatsapp", params={"m": marker}, content=chunks())
    assert response.status_code == 200
    (call,) = upstreams["whatsapp-gateway"].calls_with(marker)
    assert base64.b64decode(call["body"]) == WEBHOOK_BODY


async def test_webhook_verification_get_keeps_query(client, upstreams, marker):
    query = f"hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={marker}"
    response = await client.get(f"/webhooks/whatsapp?{query}")
    assert response.status_code == 200
    assert response.json()["raw_path"] == f"/webhooks/whatsapp?{query}"


async def test_api_body_over_1_mib_is_413(client, upstreams, auth_headers, marker):
    response = await client.post(
        f"/v1/contacts/{marker}", headers=auth_headers, content=b"x" * (MIB + 1)
    )
    body = assert_problem(response, 413, "payload_too_large")
    assert body["limit"] == MIB
    assert upstreams["contacts"].calls_with(marker) == []
    ok = await client.post(f"/v1/contacts/{marker}/ok", headers=auth_headers, content=b"x" * MIB)
    assert ok.status_code == 200


async def test_streamed_api_body_over_limit_is_413(client, upstreams, auth_headers, marker):
    async def chunks():
        for _ in range(17):
            yield b"y" * (64 * 1024)  # 1 MiB + 64 KiB, no Content-Length

    response = await client.post(f"/v1/contacts/{marker}", headers=auth_headers, content=chunks())
    assert_problem(response, 413, "payload_too_large")
    assert upstreams["contacts"].calls_with(marker) == []


async def test_webhook_limit_is_3_mib(client, upstreams, marker):
    big = b'{"pad":"' + b"z" * (2 * MIB) + b'"}'  # over the API limit, under the webhook one
    response = await client.post("/webhooks/whatsapp", params={"m": marker}, content=big)
    assert response.status_code == 200
    (call,) = upstreams["whatsapp-gateway"].calls_with(marker)
    assert base64.b64decode(call["body"]) == big

    over = f"{marker}-over"
    response = await client.post(
        "/webhooks/whatsapp", params={"m": over}, content=b"z" * (3 * MIB + 1)
    )
    assert_problem(response, 413, "payload_too_large")
    assert upstreams["whatsapp-gateway"].calls_with(over) == []


async def test_slow_upstream_is_504(client, auth_headers, marker):
    response = await client.get(
        f"/v1/conversations/{marker}", params={"mode": "slow", "delay": "2"}, headers=auth_headers
    )
    body = assert_problem(response, 504, "upstream_timeout")
    assert body["upstream"] == "conversations"


async def test_upstream_status_and_body_are_relayed(client, auth_headers, marker):
    response = await client.post(
        f"/v1/departments/{marker}", params={"status": "201"}, headers=auth_headers
    )
    assert response.status_code == 201
    response = await client.get(
        f"/v1/departments/{marker}", params={"status": "404"}, headers=auth_headers
    )
    assert response.status_code == 404
    assert response.json()["service"] == "tenants"  # upstream's body, not the gateway's


async def test_redirects_are_relayed_not_followed(client, auth_headers, marker):
    response = await client.get(
        f"/v1/plans/{marker}", params={"mode": "redirect", "status": "307"}, headers=auth_headers
    )
    assert response.status_code == 307
    assert response.headers["location"] == "/elsewhere"


async def test_compressed_response_is_relayed_untouched(gateway, auth_headers, marker):
    async with httpx.AsyncClient(base_url=gateway.url) as raw_client:
        request = raw_client.build_request(
            "GET", f"/v1/plans/{marker}", params={"mode": "gzip"}, headers=auth_headers
        )
        response = await raw_client.send(request, stream=True)
        compressed = b"".join([chunk async for chunk in response.aiter_raw()])
        await response.aclose()
    assert response.headers["content-encoding"] == "gzip"
    assert gzip.decompress(compressed) == b"hello gzip" * 10
    assert response.headers["content-length"] == str(len(compressed))


async def test_streamed_and_large_responses(client, auth_headers, marker):
    response = await client.get(
        f"/v1/plans/{marker}", params={"mode": "stream"}, headers=auth_headers
    )
    assert response.status_code == 200
    assert response.text == "chunk-0;chunk-1;chunk-2;"
    response = await client.get(f"/v1/plans/{marker}", params={"mode": "big"}, headers=auth_headers)
    assert response.content == b"x" * MIB


async def test_cookies_are_relayed_but_never_kept_by_the_gateway(
    gateway, upstreams, auth_headers, marker
):
    async with gateway.client() as c:
        first = await c.get(f"/v1/plans/{marker}", params={"mode": "cookie"}, headers=auth_headers)
        assert "session=upstream-secret" in first.headers["set-cookie"]
    async with gateway.client() as other_client:
        await other_client.get(f"/v1/plans/{marker}/second", headers=auth_headers)
    (second,) = upstreams["tenants"].calls_with(f"{marker}/second")
    assert "cookie" not in headers_of(second)


async def test_metrics_label_proxied_requests_by_prefix(client, auth_headers, marker):
    await client.get(f"/v1/tags/{marker}", headers=auth_headers)
    metrics = (await client.get("/metrics")).text
    assert 'service="api-gateway"' in metrics
    assert 'route="/v1/tags"' in metrics
    assert f"{marker}" not in metrics


async def test_websocket_is_proxied_with_token(gateway, upstreams, auth_headers, marker):
    ws_url = gateway.url.replace("http", "ws") + f"/v1/stream?m={marker}"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(ws_url, headers=auth_headers, protocols=("pytake.v1",)) as ws,
    ):
        assert ws.protocol == "pytake.v1"
        hello = json.loads((await ws.receive(timeout=5)).data)
        assert hello["service"] == "conversations"
        assert hello["raw_path"] == f"/v1/stream?m={marker}"
        assert hello["headers"]["authorization"] == auth_headers["Authorization"]
        assert hello["headers"]["x-forwarded-for"] == "127.0.0.1"
        await ws.send_str("ping")
        assert (await ws.receive(timeout=5)).data == "echo:ping"
        await ws.send_bytes(b"\x00\x01")
        assert (await ws.receive(timeout=5)).data == b"echo:\x00\x01"
        # idle for longer than the HTTP upstream timeout: a stream must survive it
        import asyncio

        await asyncio.sleep(0.8)
        await ws.send_str("still there")
        assert (await ws.receive(timeout=5)).data == "echo:still there"
        await ws.send_str("close-me")
        closing = await ws.receive(timeout=5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == 4001


async def test_websocket_token_in_query(gateway, tokens):
    token = tokens.mint(organization_id=uuid.uuid4())
    ws_url = gateway.url.replace("http", "ws") + f"/v1/stream?access_token={token}"
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
        hello = json.loads((await ws.receive(timeout=5)).data)
        assert hello["raw_path"] == f"/v1/stream?access_token={token}"


async def test_websocket_without_token_is_refused(gateway, upstreams, marker):
    ws_url = gateway.url.replace("http", "ws") + f"/v1/stream?m={marker}"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(ws_url)
    assert refused.value.status == 401
    assert upstreams["conversations"].calls_with(marker) == []
