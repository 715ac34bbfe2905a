"""The pacer's check sits inside the request: its bytes go when the gate returns, not before,
and a gate that fails sends not one byte."""

import asyncio
import time

import httpx
import pytest

from pytake_whatsapp_gateway.sending.graph import GraphClient, messages_session

BODY = b'{"messages":[{"id":"wamid.HBgL1"}]}'
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)


class Recorder(asyncio.Protocol):
    """A loopback server that keeps every byte it receives (and when) and answers."""

    received: list[tuple[float, bytes]]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received.append((time.monotonic(), data))
        if data.endswith(b"}"):  # the JSON body: the request is whole
            self.transport.write(ANSWER)  # type: ignore[attr-defined]


@pytest.fixture
async def graph():
    received: list[tuple[float, bytes]] = []

    def factory() -> Recorder:
        protocol = Recorder()
        protocol.received = received
        return protocol

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # a read timeout shorter than the gate's wait: the wait is before the request is sent
    session = messages_session(0.5, "test")
    async with httpx.AsyncClient() as client:
        yield GraphClient(client, f"http://127.0.0.1:{port}", "v21.0", messages=session), received
    await session.close()
    server.close()


async def test_the_request_leaves_when_its_gate_returns(graph):
    client, received = graph
    opened: list[float] = []

    async def gate(fresh: bool) -> None:
        opened.append(time.monotonic())
        await asyncio.sleep(1.0)  # the pacer's sleep until the slot
        opened.append(time.monotonic())

    result = await client.send("106540352242922", "token", {"to": "5511999990001"}, gate=gate)
    assert result.wamid == "wamid.HBgL1"
    first_byte_at = received[0][0]
    assert first_byte_at >= opened[1]  # nothing before the gate returned
    sent = b"".join(data for _, data in received)
    assert sent.startswith(b"POST /v21.0/106540352242922/messages HTTP/1.1\r\n")
    assert sent.endswith(b'{"to": "5511999990001"}')


async def test_a_gate_that_fails_sends_nothing_and_its_error_comes_out(graph):
    client, received = graph

    async def failing(fresh: bool) -> None:
        raise ConnectionRefusedError("the schedule's database is down")

    with pytest.raises(ConnectionRefusedError):
        await client.send("106540352242922", "token", {"to": "5511999990000"}, gate=failing)

    async def passing(fresh: bool) -> None:
        return None

    result = await client.send("106540352242922", "token", {"to": "5511999990001"}, gate=passing)
    assert result.wamid is not None
    sent = b"".join(data for _, data in received)
    assert b"5511999990000" not in sent and sent.count(b"POST ") == 1


async def test_the_gate_knows_a_new_connection_from_a_kept_alive_one(graph):
    client, _ = graph
    seen: list[bool] = []

    async def gate(fresh: bool) -> None:
        seen.append(fresh)

    for to in ("5511999990001", "5511999990002"):
        assert (await client.send("106540352242922", "token", {"to": to}, gate=gate)).wamid
    assert seen == [True, False]  # the second request reused the first one's connection
