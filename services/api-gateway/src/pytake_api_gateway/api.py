"""The gateway's own endpoints: ``/readyz`` (with upstreams), ``/openapi.json``, ``/docs``."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from fastapi import APIRouter, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from pytake_api_gateway.config import Settings
from pytake_api_gateway.openapi import OpenAPIAggregator
from pytake_api_gateway.proxy import UpstreamClient
from pytake_api_gateway.routing import RoutingTable, Upstream
from pytake_common.errors import problem


def gateway_router(
    settings: Settings,
    table: RoutingTable,
    client: UpstreamClient,
    aggregator: OpenAPIAggregator,
) -> APIRouter:
    router = APIRouter()

    async def probe(upstream: Upstream) -> str:
        timeout = aiohttp.ClientTimeout(total=settings.upstream_probe_timeout_s)
        try:
            async with client.session.get(
                upstream.base_url + "/healthz", timeout=timeout, allow_redirects=False
            ) as response:
                await response.read()
                return "ok" if response.status == 200 else f"down: HTTP {response.status}"
        except TimeoutError:
            return "down: timeout"
        except aiohttp.ClientError as exc:
            return f"down: {type(exc).__name__}"

    @router.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        """Ready when every upstream answers its ``/healthz``."""
        upstreams = table.upstreams
        results = await asyncio.gather(*(probe(u) for u in upstreams))
        checks = {u.name: result for u, result in zip(upstreams, results, strict=True)}
        if all(result == "ok" for result in checks.values()):
            return Response(
                json.dumps({"status": "ok", "checks": checks}), media_type="application/json"
            )
        return problem(503, "not_ready", "Not ready", "an upstream is down", checks=checks)

    @router.get("/openapi.json", include_in_schema=False)
    async def openapi() -> Response:
        document = await aggregator.document()
        return Response(json.dumps(document), media_type="application/json")

    @router.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(openapi_url=root + "/openapi.json", title="PyTake API")

    return router
