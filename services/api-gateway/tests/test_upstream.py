"""The hot-path client (upstream.py) against raw TCP servers that answer exactly
the bytes each test scripts: reuse, retries, broken answers, timeouts, limits."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from pytake_api_gateway.upstream import (
    Origin,
    PoolExhausted,
    UpstreamError,
    UpstreamPool,
    UpstreamTimeout,
)

OK = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"

Answer = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class RawServer:
    """Counts connections and hands every request head to ``answer``."""

    answer: Answer
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    open_now: int = 0
    most_open: int = 0
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        await reader.readexactly(int(line.split(b":")[1]))
                self.requests.append(head)
                await self.answer(head, writer)
                if writer.is_closing():
                    return
        finally:
            self.open_now -= 1
            writer.close()


@contextlib.asynccontextmanager
async def raw_server(answer: Answer) -> AsyncIterator[RawServer]:
    raw = RawServer(answer)
    server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
    raw.port = server.sockets[0].getsockname()[1]
    try:
        yield raw
    finally:
        server.close()


async def answer_ok(head: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(OK)


def pool(**overrides: float) -> UpstreamPool:
    values = {
        "limit": 8,
        "keepalive_s": 4.0,
        "connect_timeout_s": 1.0,
        "read_timeout_s": 1.0,
        "wait_timeout_s": 5.0,
    }
    values.update(overrides)
    return UpstreamPool(
        limit=int(values["limit"]),
        keepalive_s=values["keepalive_s"],
        connect_timeout_s=values["connect_timeout_s"],
        read_timeout_s=values["read_timeout_s"],
        wait_timeout_s=values["wait_timeout_s"],
    )


async def fetch(
    client: UpstreamPool,
    port: int,
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
) -> tuple[int, bytes]:
    origin = Origin.parse(f"http://127.0.0.1:{port}")
    response = await client.request(origin, method, b"/v1/x?q=1", headers or [], body)
    try:
        return response.status, await response.read()
    finally:
        response.release()


async def test_keep_alive_connection_is_reused_and_head_is_exact() -> None:
    client = pool()
    async with raw_server(answer_ok) as server:
        assert await fetch(client, server.port, headers=[(b"x-a", b"1")]) == (200, b"ok")
        assert await fetch(client, server.port, "POST", body=b"{}") == (200, b"ok")
    assert server.connections == 1
    assert server.requests[0] == (
        b"GET /v1/x?q=1 HTTP/1.1\r\nhost: 127.0.0.1:%d\r\nx-a: 1\r\n\r\n" % server.port
    )
    assert b"content-length: 2\r\n" in server.requests[1]
    client.close()


async def test_base_path_and_default_port_in_origin() -> None:
    origin = Origin.parse("https://svc.internal/base/")
    assert (origin.host, origin.port, origin.tls) == ("svc.internal", 443, True)
    assert (origin.host_header, origin.base_path) == (b"svc.internal", b"/base")


@pytest.mark.parametrize(
    "bad", [(b"x-a", b"1\r\nx-injected: 1"), (b"x-a", b"1\nx-b: 2"), (b"x-a", b"1\rx")]
)
async def test_line_breaks_in_headers_are_refused_before_anything_is_sent(
    bad: tuple[bytes, bytes],
) -> None:
    client = pool()
    async with raw_server(answer_ok) as server:
        with pytest.raises(ValueError):
            await fetch(client, server.port, headers=[bad])
        await asyncio.sleep(0.05)
    assert server.requests == []
    assert client.open_connections == 0


async def test_malformed_answer_is_an_error_and_the_connection_is_dropped() -> None:
    async def garbage(head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: nope\r\n\r\n")

    client = pool()
    async with raw_server(garbage) as server:
        with pytest.raises(UpstreamError):
            await fetch(client, server.port)
        with pytest.raises(UpstreamError):
            await fetch(client, server.port)
    assert server.connections == 2
    assert client.open_connections == 0


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\n" + b"x-big: " + b"a" * 70_000 + b"\r\n\r\n",
        # both lengths: a smuggling attempt, never guessed at
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\nok",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\nconnection: upgrade\r\n\r\n",
    ],
)
async def test_oversized_or_ambiguous_answers_are_errors(answer: bytes) -> None:
    async def send_it(head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(answer)

    client = pool()
    async with raw_server(send_it) as server:
        with pytest.raises(UpstreamError):
            await fetch(client, server.port)
    assert client.open_connections == 0


async def test_dead_keep_alive_connection_is_retried_once_for_idempotent_methods() -> None:
    async def once_then_close(head: bytes, writer: asyncio.StreamWriter) -> None:
        if b"x-close" in head:
            writer.close()  # no answer, as an upstream closing an idle connection
        else:
            writer.write(OK)

    client = pool()
    async with raw_server(once_then_close) as server:
        assert await fetch(client, server.port) == (200, b"ok")
        # The next request goes to the same connection, which dies: retried on a new one.
        with pytest.raises(UpstreamError):
            # ...but a request that kills every connection it reaches fails after one retry.
            await fetch(client, server.port, headers=[(b"x-close", b"1")])
        assert server.connections == 2
        assert await fetch(client, server.port) == (200, b"ok")
        connections = server.connections
        with pytest.raises(UpstreamError):
            await fetch(client, server.port, "POST", headers=[(b"x-close", b"1")], body=b"x")
        assert server.connections == connections  # a POST is never sent twice


async def test_idle_connection_closed_by_the_upstream_is_not_used_again() -> None:
    async def answer_and_close(head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(OK)
        await writer.drain()
        writer.close()

    client = pool()
    async with raw_server(answer_and_close) as server:
        for _ in range(3):
            assert await fetch(client, server.port, "POST", body=b"x") == (200, b"ok")
            await asyncio.sleep(0.02)
    assert server.connections == 3


async def test_connection_close_answer_is_not_reused_and_keepalive_expiry() -> None:
    async def close_header(head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")

    client = pool(keepalive_s=0.05)
    async with raw_server(close_header) as server:
        assert await fetch(client, server.port) == (200, b"ok")
        assert await fetch(client, server.port) == (200, b"ok")
    assert server.connections == 2
    async with raw_server(answer_ok) as server:
        assert await fetch(client, server.port) == (200, b"ok")
        await asyncio.sleep(0.1)  # idle past keepalive_s: not reused
        assert await fetch(client, server.port) == (200, b"ok")
    assert server.connections == 2


async def test_no_answer_times_out_and_refused_connect_is_an_error() -> None:
    async def silent(head: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.5)

    client = pool(read_timeout_s=0.2)
    async with raw_server(silent) as server:
        with pytest.raises(UpstreamTimeout):
            await fetch(client, server.port)
        port = server.port
    assert client.open_connections == 0
    with pytest.raises(UpstreamError):
        await fetch(client, port)
    assert client.open_connections == 0


async def test_body_that_stops_flowing_times_out() -> None:
    async def stalls(head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
        await asyncio.sleep(0.5)

    client = pool(read_timeout_s=0.2)
    async with raw_server(stalls) as server:
        origin = Origin.parse(f"http://127.0.0.1:{server.port}")
        response = await client.request(origin, "GET", b"/", [])
        assert await response.next_chunk() == b"abc"
        with pytest.raises(UpstreamTimeout):
            await response.next_chunk()
        response.release()
    assert client.open_connections == 0


async def test_chunked_streamed_answer_and_informational_answers() -> None:
    async def chunked(head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"2\r\nde\r\n0\r\n\r\n")

    client = pool()
    async with raw_server(chunked) as server:
        origin = Origin.parse(f"http://127.0.0.1:{server.port}")
        response = await client.request(origin, "GET", b"/", [])
        assert response.status == 200
        assert (b"link", b"</a>") not in response.headers
        assert not response.complete
        assert await response.read() == b"abcde"
        response.release()
        assert await fetch(client, server.port) == (200, b"abc" + b"de")
    assert server.connections == 1


async def test_head_answer_ends_at_its_headers() -> None:
    async def head_answer(head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")

    client = pool()
    async with raw_server(head_answer) as server:
        assert await fetch(client, server.port, "HEAD") == (200, b"")
        assert await fetch(client, server.port, "HEAD") == (200, b"")
    assert server.connections == 2  # never reused after a HEAD


async def test_pool_limit_queues_requests() -> None:
    async def slow(head: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.02)
        writer.write(OK)

    client = pool(limit=2)
    async with raw_server(slow) as server:
        results = await asyncio.gather(*(fetch(client, server.port) for _ in range(10)))
    assert results == [(200, b"ok")] * 10
    assert server.most_open <= 2
    client.close()


def slow_answer(delay: float) -> Answer:
    async def answer(head: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(delay)
        writer.write(OK)

    return answer


async def test_waiting_for_a_connection_is_bounded() -> None:
    client = pool(limit=1, wait_timeout_s=0.2, read_timeout_s=5.0)
    async with raw_server(slow_answer(1.5)) as server:
        busy = asyncio.create_task(fetch(client, server.port))
        await asyncio.sleep(0.05)
        started = asyncio.get_running_loop().time()
        with pytest.raises(PoolExhausted):
            await fetch(client, server.port)
        waited = asyncio.get_running_loop().time() - started
        assert 0.15 < waited < 1.0  # refused after the bound, not after the busy answer
        assert await busy == (200, b"ok")
        assert await fetch(client, server.port) == (200, b"ok")  # the pool is usable again
    client.close()


async def test_a_waiter_for_another_upstream_gets_the_freed_slot() -> None:
    """The only connection is busy with upstream A; a request for B waits. When A's
    answer is complete B must get to connect (it used to be woken, find no idle
    connection of its own and go back to sleep for good)."""
    client = pool(limit=1, wait_timeout_s=3.0)
    async with raw_server(slow_answer(0.2)) as a, raw_server(answer_ok) as b:
        on_a = asyncio.create_task(fetch(client, a.port))
        await asyncio.sleep(0.05)
        async with asyncio.timeout(1.5):
            assert await fetch(client, b.port) == (200, b"ok")
        assert await on_a == (200, b"ok")
        assert client.open_connections <= 1
    client.close()


async def test_an_idle_connection_to_another_upstream_is_closed_to_make_room() -> None:
    client = pool(limit=1, wait_timeout_s=3.0)
    async with raw_server(answer_ok) as a, raw_server(answer_ok) as b:
        assert await fetch(client, a.port) == (200, b"ok")  # now idle, holding the slot
        async with asyncio.timeout(1.5):
            assert await fetch(client, b.port) == (200, b"ok")
        assert client.open_connections == 1
    client.close()


async def test_a_freed_connection_goes_to_the_oldest_waiter_if_it_wants_that_upstream() -> None:
    client = pool(limit=2, wait_timeout_s=3.0)
    async with raw_server(slow_answer(0.1)) as a, raw_server(slow_answer(0.3)) as b:
        results = await asyncio.gather(
            fetch(client, b.port), *(fetch(client, a.port) for _ in range(6))
        )
    assert results == [(200, b"ok")] * 7
    # A's connection went from one queued A request to the next (each the oldest
    # waiter); B's, freed while only A requests waited, was closed to let one more
    # A connection open.
    assert a.connections == 2
    assert b.connections == 1
    client.close()


async def test_waiters_for_other_upstreams_are_served_in_arrival_order() -> None:
    """One slow upstream A with a steady stream of requests holds the only slot.
    A request for B that arrived before later A requests is served before them:
    the freed A connection used to go to the next A waiter again and again, until
    B's wait ran out (503 for every upstream but the busy one)."""
    client = pool(limit=1, wait_timeout_s=1.0, read_timeout_s=5.0)
    loop = asyncio.get_running_loop()
    done: list[tuple[str, float]] = []

    async def timed(name: str, port: int) -> tuple[int, bytes]:
        started = loop.time()
        result = await fetch(client, port)
        done.append((name, started))
        return result

    async with raw_server(slow_answer(0.1)) as a, raw_server(answer_ok) as b:
        stream: list[asyncio.Task[tuple[int, bytes]]] = []

        async def keep_a_busy() -> None:
            for _ in range(50):
                stream.append(asyncio.create_task(timed("a", a.port)))
                await asyncio.sleep(0.03)

        feeder = asyncio.create_task(keep_a_busy())
        await asyncio.sleep(0.1)
        b_started = loop.time()
        assert await timed("b", b.port) == (200, b"ok")  # not PoolExhausted
        await feeder
        await asyncio.gather(*stream, return_exceptions=True)
    b_done = [n for n, _ in done].index("b")
    later_a = [i for i, (n, started) in enumerate(done) if n == "a" and started > b_started]
    assert later_a and all(i > b_done for i in later_a)
    client.close()


async def test_a_newcomer_does_not_take_the_slot_freed_for_a_waiter() -> None:
    """The only connection (to A) is freed while W waits for B; a newcomer for C
    runs before W resumes. W keeps its turn, and its wait is bounded by one
    deadline: it used to lose the slot to the newcomer and then wait a fresh
    ``wait_timeout_s`` all over again."""
    client = pool(limit=1, wait_timeout_s=0.5, read_timeout_s=5.0)
    loop = asyncio.get_running_loop()
    finished: list[str] = []
    async with (
        raw_server(answer_ok) as a,
        raw_server(slow_answer(0.05)) as b,
        raw_server(slow_answer(0.4)) as c,
    ):
        origin_a = Origin.parse(f"http://127.0.0.1:{a.port}")
        held = await client.request(origin_a, "GET", b"/", [])
        await held.read()  # complete, but not given back yet: the slot stays taken
        go = asyncio.Event()

        async def waiter() -> tuple[int, bytes] | str:
            try:
                return await fetch(client, b.port)
            except PoolExhausted:
                return "exhausted"
            finally:
                finished.append("w")

        async def newcomer() -> tuple[int, bytes]:
            await go.wait()
            try:
                return await fetch(client, c.port)
            finally:
                finished.append("n")

        started = loop.time()
        w = asyncio.create_task(waiter())
        n = asyncio.create_task(newcomer())
        await asyncio.sleep(0.3)  # W waits (its deadline is at 0.5 s)
        go.set()  # the newcomer is scheduled before W's wake-up
        held.release()
        w_result = await w
        w_time = loop.time() - started
        assert await n == (200, b"ok")
    assert w_result == (200, b"ok")
    assert finished == ["w", "n"]
    assert w_time < 0.5 + 0.15  # never more than one wait_timeout_s
    client.close()
