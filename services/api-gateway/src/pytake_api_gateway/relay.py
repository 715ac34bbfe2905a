"""Relay: send an admitted request upstream and its answer back to the client.

The request goes through :class:`pytake_api_gateway.upstream.UpstreamPool`.
Answers with a Content-Length up to ``BUFFER_LIMIT`` are read whole, the
upstream connection is given back, and only then is the answer written to the
client (a slow reader never holds an upstream connection for those). Larger or
unsized answers (media, exports) are streamed: each piece must be taken by the
client within ``write_timeout_s``, or the exchange is cut (the upstream
connection closed, the client's connection closed by the server as the answer
is incomplete). Failures before the answer started are problem+json: 504
``upstream_timeout``, 502 ``upstream_unavailable``, 503 ``upstream_busy``
(no pooled connection free in time, with ``Retry-After``).
"""

from __future__ import annotations

import asyncio
import logging

from starlette.types import Receive, Scope, Send

from pytake_api_gateway.headers import Headers, relayed_response
from pytake_api_gateway.metrics import UPSTREAM_ERRORS
from pytake_api_gateway.ratelimit import Decision
from pytake_api_gateway.routing import RouteEntry
from pytake_api_gateway.upstream import (
    BodyStream,
    Origin,
    PoolExhausted,
    UpstreamError,
    UpstreamPool,
    UpstreamResponse,
)
from pytake_common.errors import problem

log = logging.getLogger(__name__)

#: Upstream answers up to this size (with a Content-Length) are read whole and
#: sent in one ASGI message; larger or unsized ones are streamed as they arrive.
BUFFER_LIMIT = 256 * 1024
#: ``Retry-After`` of a 503 ``upstream_busy``.
BUSY_RETRY_AFTER_S = 1


class UpstreamBodyError(Exception):
    """The upstream connection broke while its body was being relayed."""


class Relay:
    def __init__(self, pool: UpstreamPool, write_timeout_s: float) -> None:
        self.pool = pool
        self.write_timeout_s = write_timeout_s

    async def __call__(
        self,
        entry: RouteEntry,
        origin: Origin,
        method: str,
        target: bytes,
        forward: Headers,
        body: bytes,
        decision: Decision | None,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        stream: BodyStream | None = None,
        length: int | None = None,
    ) -> None:
        try:
            response = await self.pool.request(
                origin, method, target, forward, body, stream=stream, length=length
            )
        except (TimeoutError, UpstreamError, PoolExhausted) as exc:
            await upstream_failed(entry, exc, scope, receive, send)
            return
        except ValueError as exc:  # a line break in a header: refused, never sent
            await problem(400, "bad_request", "Bad request", str(exc))(scope, receive, send)
            return

        try:
            headers, size = relayed_response(response.headers)
            if decision is not None:
                headers.extend(decision.headers())
            if response.complete or (size is not None and size <= BUFFER_LIMIT):
                try:
                    data = await response.read()
                except (TimeoutError, UpstreamError) as exc:
                    await upstream_failed(entry, exc, scope, receive, send)
                    return
                response.release()  # before the client is written to: it may read slowly
                await send(
                    {"type": "http.response.start", "status": response.status, "headers": headers}
                )
                await send({"type": "http.response.body", "body": data})
            else:
                await send(
                    {"type": "http.response.start", "status": response.status, "headers": headers}
                )
                await self._stream(entry, response, receive, send)
        finally:
            response.release()

    async def _stream(
        self, entry: RouteEntry, response: UpstreamResponse, receive: Receive, send: Send
    ) -> None:
        """Relay the body as it arrives; stop pulling from upstream if the client
        goes away or stops reading."""
        write_timeout_s = self.write_timeout_s

        async def pump() -> None:
            try:
                while chunk := await response.next_chunk():
                    try:
                        async with asyncio.timeout(write_timeout_s):
                            await send(
                                {"type": "http.response.body", "body": chunk, "more_body": True}
                            )
                    except TimeoutError:
                        # The client stopped reading: give up, leaving the answer
                        # incomplete (the server closes the client's connection).
                        log.warning(
                            "client too slow to read the response",
                            extra={"upstream": entry.upstream.name, "error": "write_timeout"},
                        )
                        return
            except (TimeoutError, UpstreamError) as exc:
                # Too late for a problem response: cut the connection so the
                # client sees a truncated body, not a complete one.
                kind = "timeout" if isinstance(exc, TimeoutError) else "unavailable"
                UPSTREAM_ERRORS.labels(entry.upstream.name, kind).inc()
                log.warning(
                    "upstream body interrupted",
                    extra={"upstream": entry.upstream.name, "error": type(exc).__name__},
                )
                raise
            await send({"type": "http.response.body", "body": b""})

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        pumping = asyncio.ensure_future(pump())
        watching = asyncio.ensure_future(watch())
        try:
            await asyncio.wait((pumping, watching), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pumping, watching):
                task.cancel()
            await asyncio.gather(pumping, watching, return_exceptions=True)
        if pumping.done() and not pumping.cancelled() and pumping.exception() is not None:
            raise UpstreamBodyError(entry.upstream.name)


async def upstream_failed(
    entry: RouteEntry, exc: Exception, scope: Scope, receive: Receive, send: Send
) -> None:
    """The problem answer of a request that got no answer from its upstream."""
    if isinstance(exc, TimeoutError):
        kind = "timeout"
    elif isinstance(exc, PoolExhausted):
        kind = "busy"
    else:
        kind = "unavailable"
    name = entry.upstream.name
    UPSTREAM_ERRORS.labels(name, kind).inc()
    log.warning("upstream %s", kind, extra={"upstream": name, "error": type(exc).__name__})
    if kind == "timeout":
        response = problem(
            504,
            "upstream_timeout",
            "Upstream timeout",
            f"{name} did not answer in time",
            upstream=name,
        )
    elif kind == "busy":
        response = problem(
            503,
            "upstream_busy",
            "Upstream busy",
            f"every connection to the upstreams stayed busy; retry in {BUSY_RETRY_AFTER_S} s",
            upstream=name,
            retry_after=BUSY_RETRY_AFTER_S,
        )
    else:
        response = problem(
            502,
            "upstream_unavailable",
            "Upstream unavailable",
            f"{name} could not be reached",
            upstream=name,
        )
    await response(scope, receive, send)
