"""The hot-path HTTP/1.1 client: pooled keep-alive connections, responses parsed by llhttp.

Chosen by measurement (``bench/gateway_proxy.py --clients``): per forwarded
request it costs about a fifth of the CPU of ``aiohttp.ClientSession`` (which
still serves the gateway's WebSocket proxying, ``/readyz`` and the OpenAPI
aggregation). It does only what the proxy needs:

* the request head is written by the gateway from headers it has already
  filtered (all of them parsed by the server's strict llhttp parser, so no CR
  or LF can be in a name or a value; checked again here before writing);
* responses are parsed by ``httptools`` (llhttp, the parser uvicorn uses),
  strict mode: anything malformed fails the request (502) and closes the
  connection, which is never reused;
* a connection is reused only after a complete response that allows keep-alive,
  and only while it has been idle for less than ``keepalive_s`` (below the
  upstreams' own keep-alive, so the gateway is never the one writing to a
  connection being closed); a reused connection that turns out dead before any
  byte of the answer is retried once on a new one, for idempotent methods only;
* the answer must start within ``read_timeout_s`` and each later chunk of the
  body come within ``read_timeout_s`` of the previous one (:class:`UpstreamTimeout`);
  connecting has ``connect_timeout_s`` (past it, :class:`UpstreamError`: the
  upstream is unreachable, as when it refuses);
* at most ``limit`` connections are open to all upstreams together; more
  requests wait for one, strictly in arrival order, at most ``wait_timeout_s``
  in all (:class:`PoolExhausted`, 503). A connection given back goes to the
  oldest waiter when it wants the same upstream; when the oldest waiter wants
  another upstream the connection is closed and its slot reserved for that
  waiter, which connects. While anyone waits, a newcomer queues behind them
  (it never takes a slot freed for a waiter). With nobody waiting, an idle
  connection to another upstream is closed rather than making a request wait;
* a request body is written whole, or streamed as the client sends it (the
  routes with a large limit, see :mod:`pytake_api_gateway.proxy`), following the
  upstream's flow control; a streamed request is never retried;
* bodies are not decompressed or altered; reading pauses past
  ``_HIGH_WATER`` buffered bytes until the consumer catches up; an answer's
  head may take at most ``_MAX_HEAD`` bytes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httptools

_HIGH_WATER = 256 * 1024
#: Most bytes an answer's status line and headers may take (aiohttp: 8 KiB a line).
_MAX_HEAD = 64 * 1024
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_SENDS_LENGTH = frozenset({"POST", "PUT", "PATCH"})


class UpstreamError(Exception):
    """The upstream could not be reached, or its answer was broken (-> 502)."""


class UpstreamTimeout(TimeoutError):
    """The upstream did not answer, or keep its body flowing, in time (-> 504)."""


class PoolExhausted(Exception):
    """Every pooled connection stayed busy for ``wait_timeout_s`` (-> 503)."""


#: The pieces of a streamed request body, ``b""`` at its end.
BodyStream = Callable[[], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an upstream is: ``scheme://host[:port][/base]``."""

    host: str
    port: int
    tls: bool
    #: The ``Host`` header sent to it.
    host_header: bytes
    #: A path prefix put before every forwarded path (``""`` usually).
    base_path: bytes
    key: tuple[str, int, bool] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.host, self.port, self.tls))

    @classmethod
    def parse(cls, base_url: str) -> Origin:
        parts = urlsplit(base_url)
        tls = parts.scheme == "https"
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if tls else 80)
        default = 443 if tls else 80
        netloc = f"[{host}]" if ":" in host else host
        if port != default:
            netloc += f":{port}"
        return cls(host, port, tls, netloc.encode("ascii"), parts.path.rstrip("/").encode())


class UpstreamResponse:
    """An upstream's answer: status and raw headers, then the body."""

    __slots__ = (
        "_connection",
        "_waiter",
        "buffered",
        "chunks",
        "complete",
        "error",
        "head_bytes",
        "head_done",
        "headers",
        "informational",
        "keep_alive",
        "paused",
        "received",
        "status",
    )

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        self._waiter: asyncio.Future[None] | None = None
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.head_done = False
        self.head_bytes = 0
        self.complete = False
        self.keep_alive = False
        self.informational = False
        self.paused = False
        self.received = False
        self.error: BaseException | None = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, timeout: float) -> None:
        loop = self._connection.loop
        waiter = self._waiter = loop.create_future()
        handle = loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            self._waiter = None

    async def next_chunk(self) -> bytes:
        """The next piece of the body; ``b""`` once it is complete."""
        connection = self._connection
        while True:
            if self.chunks:
                data = b"".join(self.chunks) if len(self.chunks) > 1 else self.chunks[0]
                self.chunks.clear()
                self.buffered = 0
                if self.paused:
                    self.paused = False
                    connection.resume()
                return data
            if self.complete:
                return b""
            if self.error is not None:
                raise self.error
            await self._wait(connection.pool.read_timeout_s)

    async def read(self) -> bytes:
        """The whole body (for answers known to be small)."""
        parts: list[bytes] = []
        while chunk := await self.next_chunk():
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def release(self) -> None:
        """Give the connection back (complete answer, keep-alive) or close it."""
        connection = self._connection
        if connection.response is not self:
            return
        connection.response = None
        if (
            self.complete
            and self.keep_alive
            and not self.chunks
            and not connection.closed
            and connection.body_written
            # an early answer while the request body is still being written
            and not connection.transport.get_write_buffer_size()  # type: ignore[union-attr]
        ):
            connection.pool._park(connection)
        else:
            connection.close()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(UpstreamTimeout())


class _Connection(asyncio.Protocol):
    def __init__(self, pool: UpstreamPool, origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: UpstreamResponse | None = None
        self.head_request = False
        self.closed = False
        self.idle_since = 0.0
        #: False while a streamed request body is being written (then never reused).
        self.body_written = True
        self.write_paused = False
        self._drain: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None or response.complete:
            self.close()  # bytes nobody asked for: the connection cannot be trusted
            return
        response.received = True
        if not response.head_done:
            response.head_bytes += len(data)  # an upper bound of the head's size so far
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if not response.complete:
                response.error = UpstreamError(f"invalid HTTP response: {exc}")
                response._wake()
            self.close()
            return
        if not response.head_done and response.head_bytes > _MAX_HEAD:
            response.error = UpstreamError("response head too large")
            response._wake()
            self.close()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    async def drained(self, timeout: float) -> None:
        """Until the transport's write buffer is below its low-water mark again."""
        if not self.write_paused:
            return
        drain = self._drain = self.loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                await drain
        finally:
            self._drain = None
        if self.closed:
            raise UpstreamError("the upstream closed the connection")

    def eof_received(self) -> bool:
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            self.pool._forget(self)
        self.resume_writing()
        response = self.response
        if response is not None and not response.complete and response.error is None:
            if response.head_done and not any(
                n.lower() in (b"content-length", b"transfer-encoding") for n, _ in response.headers
            ):
                response.complete = True  # a body delimited by the end of the connection
                response.keep_alive = False
            else:
                response.error = UpstreamError("the upstream closed the connection")
            response._wake()

    # -- llhttp callbacks -----------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.response.headers.append((name, value))  # type: ignore[union-attr]

    def on_headers_complete(self) -> None:
        response: UpstreamResponse = self.response  # type: ignore[assignment]
        if response.head_bytes > _MAX_HEAD and (
            sum(len(n) + len(v) + 4 for n, v in response.headers) > _MAX_HEAD
        ):
            raise UpstreamError("response head too large")  # -> HttpParserCallbackError
        status = self.parser.get_status_code()
        if status < 200:  # 1xx: informational, the real answer follows
            response.headers = []
            response.informational = True
            return
        response.status = status
        response.keep_alive = self.parser.should_keep_alive()
        response.head_done = True
        if self.head_request:
            # llhttp cannot be told a HEAD answer has no body: end here and
            # never reuse the connection.
            response.complete = True
            response.keep_alive = False
        response._wake()

    def on_body(self, body: bytes) -> None:
        response: UpstreamResponse = self.response  # type: ignore[assignment]
        if response.complete:
            return
        response.chunks.append(body)
        response.buffered += len(body)
        if response.buffered > _HIGH_WATER and not response.paused:
            response.paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        response._wake()

    def on_message_complete(self) -> None:
        response: UpstreamResponse = self.response  # type: ignore[assignment]
        if response.informational:
            response.informational = False
            return
        if not response.complete:
            response.complete = True
            response._wake()

    # -- helpers --------------------------------------------------------------------

    def resume(self) -> None:
        if not self.closed and self.transport is not None:
            self.transport.resume_reading()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pool._forget(self)
        if self.transport is not None:
            self.transport.close()


@dataclass(slots=True)
class _Waiter:
    key: tuple[str, int, bool]
    future: asyncio.Future[_Connection | None]


class UpstreamPool:
    """Keep-alive connections to every upstream, shared by all forwarded requests."""

    def __init__(
        self,
        *,
        limit: int,
        keepalive_s: float,
        connect_timeout_s: float,
        read_timeout_s: float,
        wait_timeout_s: float = 5.0,
    ) -> None:
        self.limit = max(1, limit)
        self.keepalive_s = keepalive_s
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.wait_timeout_s = wait_timeout_s
        self._idle: dict[tuple[str, int, bool], collections.deque[_Connection]] = {}
        self._open = 0
        #: Requests waiting for a connection, oldest first: their upstream and
        #: the future that gets a connection handed over, or ``None`` when a
        #: slot is free and it may connect.
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._ssl: ssl.SSLContext | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    @property
    def open_connections(self) -> int:
        return self._open

    async def request(
        self,
        origin: Origin,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes = b"",
        *,
        stream: BodyStream | None = None,
        length: int | None = None,
    ) -> UpstreamResponse:
        """Send one request; returns once the status line and headers are in.

        The body is ``body``, or, with ``stream``, pulled from it piece by piece
        (``b""`` ends it) while it is written: ``length`` bytes as announced, or
        chunked when ``length`` is None. A streamed request is never retried, and
        its connection is reused only when the whole body was written.
        """
        parts = [method.encode("ascii"), b" ", origin.base_path, target, b" HTTP/1.1\r\nhost: "]
        parts.append(origin.host_header)
        extend = parts.extend
        for name, value in headers:
            extend((b"\r\n", name, b": ", value))
        framed = True
        if stream is not None:
            if length is None:
                parts.append(b"\r\ntransfer-encoding: chunked")
            else:
                extend((b"\r\ncontent-length: ", b"%d" % length))
        elif body or method in _SENDS_LENGTH:
            extend((b"\r\ncontent-length: ", b"%d" % len(body)))
        else:
            framed = False
        parts.append(b"\r\n\r\n")
        head = b"".join(parts)
        # Exactly one line feed per header line, and no carriage return elsewhere:
        # nothing can smuggle a header or a second request in.
        lines = len(headers) + (3 if framed else 2)
        if head.count(b"\n") != lines + 1 or head.count(b"\r") != lines + 1:
            raise ValueError("line break in a request header or target")
        # Small bodies go in the same write (one segment), large ones after the head.
        data = [head, body] if len(body) > 64 * 1024 else [head + body]
        attempts = 2 if method in IDEMPOTENT and stream is None else 1
        while True:
            attempts -= 1
            connection, reused = await self._acquire(origin)
            response = UpstreamResponse(connection)
            connection.response = response
            connection.head_request = method == "HEAD"
            transport = connection.transport
            assert transport is not None
            for chunk in data:
                transport.write(chunk)
            try:
                if stream is not None:
                    await self._send_body(connection, response, stream, chunked=length is None)
                while not response.head_done:
                    if response.error is not None:
                        raise response.error
                    await response._wait(self.read_timeout_s)
            except UpstreamError:
                response.release()
                if reused and attempts > 0 and not response.received:
                    continue  # a dead keep-alive connection: once more on a new one
                raise
            except BaseException:
                response.release()
                raise
            return response

    async def _send_body(
        self,
        connection: _Connection,
        response: UpstreamResponse,
        stream: BodyStream,
        *,
        chunked: bool,
    ) -> None:
        """Write the pieces of ``stream`` as the upstream takes them (its flow control)."""
        connection.body_written = False
        transport = connection.transport
        assert transport is not None
        while not response.head_done:  # an early answer ends the upload
            if response.error is not None:
                raise response.error
            chunk = await stream()
            if not chunk:
                if chunked:
                    transport.write(b"0\r\n\r\n")
                connection.body_written = True
                return
            if chunked:
                transport.write(b"%x\r\n" % len(chunk))
                transport.write(chunk)
                transport.write(b"\r\n")
            else:
                transport.write(chunk)
            if connection.write_paused:
                await connection.drained(self.read_timeout_s)

    async def _acquire(self, origin: Origin) -> tuple[_Connection, bool]:
        key = origin.key
        idle = self._idle.get(key)
        if idle:
            now = self.loop.time()
            while idle:
                connection = idle.pop()
                if not connection.closed and now - connection.idle_since < self.keepalive_s:
                    return connection, True
                connection.close()
        if not self._someone_waits():
            if self._open >= self.limit:
                self._close_idle_elsewhere(key)
            if self._open < self.limit:
                return await self._connect(origin), False
        # One deadline for the whole wait, however often the request is woken.
        deadline = self.loop.time() + self.wait_timeout_s
        front = False
        while True:
            handed = await self._wait_for_slot(key, deadline, front=front)
            if handed is None:
                return await self._connect(origin, reserved=True), False
            if not handed.closed:
                return handed, True
            # Closed by the upstream between the hand-over and now: its slot went
            # to the next waiter; wait again, first in line.
            front = True

    def _someone_waits(self) -> bool:
        waiters = self._waiters
        while waiters and waiters[0].future.done():
            waiters.popleft()
        return bool(waiters)

    async def _wait_for_slot(
        self, key: tuple[str, int, bool], deadline: float, *, front: bool = False
    ) -> _Connection | None:
        """Wait in line: a connection to ``key`` handed over, or ``None``: a slot
        was freed and reserved for this request (it is counted open already)."""
        waiter = _Waiter(key, self.loop.create_future())
        if front:
            self._waiters.appendleft(waiter)
        else:
            self._waiters.append(waiter)
        future = waiter.future
        try:
            async with asyncio.timeout_at(deadline):
                return await future
        except BaseException as exc:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            if future.done() and not future.cancelled():
                # Woken, then cancelled or timed out before it could use the
                # wake-up: pass it on instead of losing it.
                handed = future.result()
                if handed is not None:
                    self._park(handed)
                else:
                    self._open -= 1  # give the reserved slot back
                    self._wake_one()
            else:
                future.cancel()
            if isinstance(exc, TimeoutError):
                raise PoolExhausted(
                    f"no upstream connection free within {self.wait_timeout_s} s"
                ) from None
            raise

    def _close_idle_elsewhere(self, key: tuple[str, int, bool]) -> None:
        """Free a slot held by an idle connection to another upstream (the oldest)."""
        for other, idle in self._idle.items():
            if other != key and idle:
                idle.popleft().close()
                return

    async def _connect(self, origin: Origin, *, reserved: bool = False) -> _Connection:
        """Open a connection; ``reserved``: its slot was already counted for it."""
        tls: ssl.SSLContext | None = None
        if origin.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            tls = self._ssl
        connection = _Connection(self, origin)
        if not reserved:
            self._open += 1
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await self.loop.create_connection(
                    lambda: connection,
                    origin.host,
                    origin.port,
                    ssl=tls,
                    server_hostname=origin.host if tls else None,
                )
        except BaseException as exc:
            connection.close()  # frees the slot (once)
            if isinstance(exc, TimeoutError):  # not reachable: 502, like a refusal
                raise UpstreamError("connect timeout") from exc
            if isinstance(exc, OSError):
                raise UpstreamError(str(exc) or type(exc).__name__) from exc
            raise
        return connection

    def _park(self, connection: _Connection) -> None:
        """A connection is free again: to the oldest waiter if it wants this
        upstream; closed (its slot reserved for that waiter) if it wants another;
        idle when nobody waits."""
        if self._someone_waits():
            waiter = self._waiters[0]
            if waiter.key == connection.origin.key:
                self._waiters.popleft()
                waiter.future.set_result(connection)
            else:
                connection.close()  # -> _forget -> _wake_one: the slot is the waiter's
            return
        key = connection.origin.key
        connection.idle_since = self.loop.time()
        idle = self._idle.get(key)
        if idle is None:
            idle = self._idle[key] = collections.deque()
        idle.append(connection)

    def _forget(self, connection: _Connection) -> None:
        """A connection closed (by either side): it frees a slot."""
        self._open -= 1
        idle = self._idle.get(connection.origin.key)
        if idle:
            with contextlib.suppress(ValueError):
                idle.remove(connection)
        self._wake_one()

    def _wake_one(self) -> None:
        """A slot is free: reserve it for the oldest waiter (it connects to its own
        upstream), so that no newcomer can take it before that waiter runs."""
        if self._someone_waits():
            self._open += 1
            self._waiters.popleft().future.set_result(None)

    def close(self) -> None:
        for idle in list(self._idle.values()):
            for connection in list(idle):
                connection.close()
        self._idle.clear()
