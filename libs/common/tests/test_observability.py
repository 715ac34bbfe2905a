"""The request middleware: request id, trace context (recorded span or not), metrics."""

import httpx
import pytest
from fastapi import APIRouter
from prometheus_client import REGISTRY

from pytake_common.context import request_id_var
from pytake_common.tracing import inject_headers
from pytake_common.web import create_service_app

from .plumbing import settings_for

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def app_with(exporter: str):
    settings = settings_for("127.0.0.1:1", "observed").model_copy(
        update={"otel_exporter": exporter}
    )
    router = APIRouter()

    @router.get("/v1/echo")
    async def echo() -> dict[str, str | None]:
        carrier = inject_headers()
        return {
            "traceparent": carrier.get("traceparent"),
            "tracestate": carrier.get("tracestate"),
            "rid": request_id_var.get(),
        }

    return create_service_app(settings, title="t", routers=[router], db=None, check_broker=False)


@pytest.mark.parametrize("exporter", ["none", "console"])
async def test_the_server_span_continues_the_callers_trace_recorded_or_not(exporter):
    app = app_with(exporter)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        for flags in ("01", "00", "03", "02", "ff"):
            r = await c.get(
                "/v1/echo",
                headers={"traceparent": f"00-{TRACE}-{PARENT}-{flags}", "x-request-id": "abc-1"},
            )
            version, trace_id, span_id, got_flags = r.json()["traceparent"].split("-")
            # the SDK keeps only the sampled (01) and random trace id (02) bits
            expected = f"{int(flags, 16) & 3:02x}"
            assert (version, trace_id, got_flags) == ("00", TRACE, expected)
            assert span_id not in (PARENT, "0" * 16)  # the server's own span
            assert r.json()["rid"] == r.headers["x-request-id"] == "abc-1"
        r = await c.get(
            "/v1/echo", headers={"traceparent": f"00-{TRACE}-{PARENT}-01", "tracestate": "k=v"}
        )
        assert r.json()["tracestate"] == "k=v"
        assert r.json()["traceparent"].split("-")[1] == TRACE
        fresh = [(await c.get("/v1/echo")).json() for _ in range(2)]
        ids = [f["traceparent"].split("-") for f in fresh]
        # a new trace: sampled, and its id random (W3C trace context level 2)
        assert all(len(i[1]) == 32 and i[1] != "0" * 32 and i[3] == "03" for i in ids), fresh
        assert ids[0][1] != ids[1][1]  # no traceparent: a new trace each time
        assert fresh[0]["rid"] != fresh[1]["rid"]  # and a new request id
        bad = await c.get("/v1/echo", headers={"traceparent": "garbage", "x-request-id": "a b"})
        assert len(bad.json()["traceparent"].split("-")[1]) == 32
        assert bad.headers["x-request-id"] != "a b"
    count = REGISTRY.get_sample_value(
        "pytake_http_requests_total",
        {"service": "observed", "method": "GET", "route": "/v1/echo", "status": "200"},
    )
    assert count is not None and count >= 5
