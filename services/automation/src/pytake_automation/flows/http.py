"""Making a flow's HTTP call: allow-listed hosts, vetted addresses, bounded time and size.

The interpreter asks for a call (:class:`HttpRequest`); this answers it with an
:class:`HttpResult` and never raises for anything the far end does. The host is checked
against the organization's allow-list again here (the list may have changed since the
flow was published), the address by :class:`pytake_common.ssrf.VettingResolver` (so an
allow-listed name that resolves to a private address is still refused), redirects are
not followed, and the answer is read up to :data:`MAX_BODY` bytes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from pytake_automation.flows.session import HttpRequest, HttpResult
from pytake_common import ssrf

MAX_BODY = 256 * 1024
#: headers a flow may not set: the connection's own, and Host (which names the vhost)
FORBIDDEN_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer"}
)
USER_AGENT = "PyTake-Flows/1"


class FlowHttpClient:
    """One aiohttp session for every flow call of the process (close it on shutdown)."""

    def __init__(
        self, *, allow_loopback: bool = False, lookup: ssrf.Lookup = ssrf.system_lookup
    ) -> None:
        self.allow_loopback = allow_loopback
        self.resolver = ssrf.VettingResolver(lookup, allow_loopback=allow_loopback)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(resolver=self.resolver, limit=100, use_dns_cache=False)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def refusal(self, url: str, allowed_hosts: Iterable[str]) -> str | None:
        """Why ``url`` may not be called, or None."""
        parts = urlsplit(url)
        schemes = ("https", "http") if self.allow_loopback else ("https",)
        if parts.scheme not in schemes or not parts.hostname:
            return "the URL must be https:// with a host"
        if parts.username or parts.password:
            return "the URL must not carry credentials"
        if parts.hostname.lower() not in {h.lower() for h in allowed_hosts}:
            return f"host {parts.hostname} is not in the organization's allow-list"
        address = ssrf.literal(parts.hostname)
        if address is not None:
            why = ssrf.refusal(address, allow_loopback=self.allow_loopback)
            if why:
                return f"the URL's host is {why}"
        return None

    async def call(self, request: HttpRequest, allowed_hosts: Iterable[str]) -> HttpResult:
        why = self.refusal(request.url, allowed_hosts)
        if why is not None:
            return HttpResult(wait=request.wait, error=why)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in FORBIDDEN_HEADERS}
        headers.setdefault("User-Agent", USER_AGENT)
        headers.setdefault("Accept", "application/json")
        body: bytes | None = None
        if request.body is not None and request.method != "GET":
            body = json.dumps(request.body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        timeout = aiohttp.ClientTimeout(total=request.timeout_seconds)
        try:
            async with self._client().request(
                request.method,
                request.url,
                headers=headers,
                data=body,
                allow_redirects=False,
                timeout=timeout,
            ) as response:
                raw = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    raw += chunk
                    if len(raw) > MAX_BODY:
                        return HttpResult(
                            wait=request.wait, status=response.status, error="answer too large"
                        )
                return HttpResult(
                    wait=request.wait, status=response.status, body=_decode(bytes(raw))
                )
        except TimeoutError:
            return HttpResult(wait=request.wait, error="timed out")
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
            why = ssrf.refusal_in(exc) or f"{type(exc).__name__}: {exc}"
            return HttpResult(wait=request.wait, error=why[:300])


def _decode(raw: bytes) -> Any:
    """JSON when the answer is JSON, else its text (JSON paths then find nothing)."""
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text
