"""Relay: send an admitted request upstream and its answer back to the client.

The request goes through :class:`pytake_api_gateway.upstream.UpstreamPool`.
Answers with a Content-Length up to ``BUFFER_LIMIT`` are read whole, the
upstream connection is given back, and only then is the answer written to the
client (a slow reader never holds an upstream connection for those). Larger or
unsized answers (media, exports) are streamed: each piece must be taken by the
client within ``write_timeout_s``, and the client must keep up a minimum
average pace (:class:`Pace`), or the exchange is cut (the upstream connection
closed, the client's connection closed by the server as the answer is
incomplete). Streamed bodies, both ways, are capped in number, in all and per
organization (:class:`StreamedBodies`): a slow reader or uploader holds an
upstream connection, and the pool is shared by every request (429
``too_many_streams`` / 503 ``streams_busy`` past the caps). Failures before the
answer started are problem+json: 504 ``upstream_timeout``, 502
``upstream_unavailable``, 503 ``upstream_busy`` (no pooled connection free in
time, with ``Retry-After``).
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass

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


class StreamsBusy(Exception):
    """No streamed body may start now: the organization's cap (``per_organization``)
    or the replica's is reached."""

    def __init__(self, per_organization: bool) -> None:
        super().__init__("per organization" if per_organization else "in all")
        self.per_organization = per_organization


class StreamedBodies:
    """The streamed bodies in flight on this replica, in all and per organization."""

    def __init__(self, total: int, per_organization: int) -> None:
        self.total = total
        self.per_organization = per_organization
        self.active = 0
        self._by_organization: dict[str, int] = {}

    def take(self, organization: str | None) -> None:
        """Take one (give it back with :meth:`give_back`); raises :class:`StreamsBusy`."""
        counts = self._by_organization
        if organization is not None and counts.get(organization, 0) >= self.per_organization:
            raise StreamsBusy(per_organization=True)
        if self.active >= self.total:
            raise StreamsBusy(per_organization=False)
        self.active += 1
        if organization is not None:
            counts[organization] = counts.get(organization, 0) + 1

    def give_back(self, organization: str | None) -> None:
        self.active -= 1
        if organization is not None:
            counts = self._by_organization
            left = counts[organization] - 1
            if left:
                counts[organization] = left
            else:
                del counts[organization]


@dataclass(slots=True)
class Pace:
    """The minimum average pace of a streamed body: ``min_bytes_per_s``, counting
    only the time spent waiting on the client, after ``grace_s`` of it."""

    min_bytes_per_s: int
    grace_s: float
    moved: int = 0
    waited: float = 0.0

    def allowance(self) -> float:
        """Seconds the client may still take before it falls below the pace."""
        if self.min_bytes_per_s <= 0:
            return math.inf
        return self.grace_s + self.moved / self.min_bytes_per_s - self.waited


class Relay:
    def __init__(
        self,
        pool: UpstreamPool,
        write_timeout_s: float,
        streams: StreamedBodies,
        min_bytes_per_s: int = 0,
        grace_s: float = 0.0,
    ) -> None:
        self.pool = pool
        self.write_timeout_s = write_timeout_s
        self.streams = streams
        self.min_bytes_per_s = min_bytes_per_s
        self.grace_s = grace_s

    def pace(self) -> Pace:
        return Pace(self.min_bytes_per_s, self.grace_s)

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
        organization: str | None = None,
        holds_stream: bool = False,
    ) -> None:
        """``holds_stream``: the caller holds a :class:`StreamedBodies` slot (an
        upload) that covers a streamed answer too."""
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
            elif holds_stream:
                await send(
                    {"type": "http.response.start", "status": response.status, "headers": headers}
                )
                await self._stream(entry, response, receive, send)
            else:
                try:
                    self.streams.take(organization)
                except StreamsBusy as busy:
                    await streams_busy(busy, scope, receive, send)
                    return
                try:
                    await send(
                        {
                            "type": "http.response.start",
                            "status": response.status,
                            "headers": headers,
                        }
                    )
                    await self._stream(entry, response, receive, send)
                finally:
                    self.streams.give_back(organization)
        finally:
            response.release()

    async def _stream(
        self, entry: RouteEntry, response: UpstreamResponse, receive: Receive, send: Send
    ) -> None:
        """Relay the body as it arrives; stop pulling from upstream if the client
        goes away or stops reading."""
        write_timeout_s = self.write_timeout_s
        pace = self.pace()
        loop = asyncio.get_running_loop()

        async def pump() -> None:
            try:
                while chunk := await response.next_chunk():
                    started = loop.time()
                    try:
                        async with asyncio.timeout(min(write_timeout_s, pace.allowance())):
                            await send(
                                {"type": "http.response.body", "body": chunk, "more_body": True}
                            )
                    except TimeoutError:
                        # The client stopped reading, or reads too slowly: give up,
                        # leaving the answer incomplete (the server closes the
                        # client's connection).
                        log.warning(
                            "client too slow to read the response",
                            extra={"upstream": entry.upstream.name, "error": "write_timeout"},
                        )
                        return
                    pace.waited += loop.time() - started
                    pace.moved += len(chunk)
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


async def streams_busy(busy: StreamsBusy, scope: Scope, receive: Receive, send: Send) -> None:
    """The answer when no streamed body may start: 429 for the organization's own
    cap, 503 for the replica's."""
    if busy.per_organization:
        response = problem(
            429,
            "too_many_streams",
            "Too many streams",
            "this organization has as many uploads and streamed downloads in flight as "
            f"allowed; retry in {BUSY_RETRY_AFTER_S} s",
            retry_after=BUSY_RETRY_AFTER_S,
        )
    else:
        response = problem(
            503,
            "streams_busy",
            "Streams busy",
            f"too many uploads and streamed downloads in flight; retry in {BUSY_RETRY_AFTER_S} s",
            retry_after=BUSY_RETRY_AFTER_S,
        )
    await response(scope, receive, send)
