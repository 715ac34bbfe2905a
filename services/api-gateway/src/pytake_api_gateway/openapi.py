"""One OpenAPI document for the whole platform, merged from every upstream's ``/openapi.json``.

Paths are taken from the service the gateway routes them to (a service's path
the gateway would not send to it is left out). Components with the same name
and the same definition are shared; names whose definitions differ between
services are prefixed with the service (``Contacts_Error``) in every service
that has them, and that service's ``$ref``\\ s are rewritten. A service that
does not answer is skipped and listed in ``x-pytake-unavailable``. The result
is cached for ``openapi_cache_ttl_s`` (5 s at most while a service is missing).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp

from pytake_api_gateway.config import Settings
from pytake_api_gateway.proxy import UpstreamClient
from pytake_api_gateway.routing import RoutingTable, Upstream

log = logging.getLogger(__name__)

OPENAPI_VERSION = "3.1.0"
INCOMPLETE_TTL_S = 5.0

Document = dict[str, Any]


def service_prefix(service: str) -> str:
    return "".join(part.capitalize() for part in service.replace("_", "-").split("-")) + "_"


def _rewrite_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value in renames:
                out[key] = renames[value]
            else:
                out[key] = _rewrite_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(item, renames) for item in node]
    return node


def _components(doc: Document) -> dict[str, dict[str, Any]]:
    components = doc.get("components")
    if not isinstance(components, dict):
        return {}
    return {k: v for k, v in components.items() if isinstance(v, dict)}


def merge_openapi(
    docs: list[tuple[str, Document | None]],
    table: RoutingTable,
    *,
    title: str = "PyTake API",
    version: str = "0.1.0",
) -> Document:
    available = [(name, doc) for name, doc in docs if doc is not None]
    unavailable = [name for name, doc in docs if doc is None]

    # Which component names mean different things in different services?
    seen: dict[tuple[str, str], dict[str, str]] = {}
    for service, doc in available:
        for section, items in _components(doc).items():
            for name, definition in items.items():
                canonical = json.dumps(definition, sort_keys=True)
                seen.setdefault((section, name), {})[service] = canonical
    clashing = {key for key, per_service in seen.items() if len(set(per_service.values())) > 1}

    paths: dict[str, Any] = {}
    components: dict[str, dict[str, Any]] = {}
    tags: list[Any] = []
    tag_names: set[str] = set()
    for service, doc in available:
        prefix = service_prefix(service)
        renames = {
            f"#/components/{section}/{name}": f"#/components/{section}/{prefix}{name}"
            for section, name in clashing
            if service in seen[(section, name)]
        }
        if renames:
            doc = _rewrite_refs(doc, renames)
        for path, item in doc["paths"].items():
            entry = table.match(path)
            if entry is None or entry.upstream.name != service:
                continue  # not reachable through the gateway at this path
            paths.setdefault(path, item)
        for section, items in _components(doc).items():
            target = components.setdefault(section, {})
            for name, definition in items.items():
                key = prefix + name if (section, name) in clashing else name
                target[key] = definition
        for tag in doc.get("tags") or ():
            tag_name = tag.get("name") if isinstance(tag, dict) else None
            if isinstance(tag_name, str) and tag_name not in tag_names:
                tag_names.add(tag_name)
                tags.append(tag)

    merged: Document = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": "Every PyTake service behind the API gateway.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            section: dict(sorted(items.items())) for section, items in sorted(components.items())
        },
    }
    if tags:
        merged["tags"] = tags
    if unavailable:
        merged["x-pytake-unavailable"] = unavailable
    return merged


class OpenAPIAggregator:
    def __init__(self, settings: Settings, table: RoutingTable, client: UpstreamClient) -> None:
        self.settings = settings
        self.table = table
        self.client = client
        self._document: Document | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def document(self) -> Document:
        if self._document is not None and time.monotonic() < self._expires:
            return self._document
        async with self._lock:  # one fetch at a time; the others reuse its result
            if self._document is not None and time.monotonic() < self._expires:
                return self._document
            upstreams = self.table.upstreams
            fetched = await asyncio.gather(*(self._fetch(u) for u in upstreams))
            docs = [(u.name, doc) for u, doc in zip(upstreams, fetched, strict=True)]
            document = merge_openapi(docs, self.table)
            ttl = self.settings.openapi_cache_ttl_s
            if "x-pytake-unavailable" in document:
                ttl = min(ttl, INCOMPLETE_TTL_S)
            self._document = document
            self._expires = time.monotonic() + ttl
            return document

    async def _fetch(self, upstream: Upstream) -> Document | None:
        url = upstream.base_url + "/openapi.json"
        timeout = aiohttp.ClientTimeout(total=self.settings.upstream_probe_timeout_s)
        try:
            async with self.client.session.get(url, timeout=timeout) as response:
                if response.status != 200:
                    log.warning("openapi of %s answered %s", upstream.name, response.status)
                    return None
                doc = json.loads(await response.read())
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            log.warning("openapi of %s unavailable: %s", upstream.name, type(exc).__name__)
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("paths"), dict):
            return None
        return doc
