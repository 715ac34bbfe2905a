"""The pacer's last check sits at the socket: a send held back there sends not one byte."""

import asyncio

import httpx
import pytest

from pytake_whatsapp_gateway.sending.graph import GraphClient, messages_session
from pytake_whatsapp_gateway.sending.pacing import MissedSlot

BODY = b'{"messages":[{"id":"wamid.HBgL1"}]}'
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)


class Recorder(asyncio.Protocol):
    """A loopback server that keeps every byte it receives and answers each request."""

    received: list[bytes]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received.append(data)
        if b"\r\n\r\n" in data:
            self.transport.write(ANSWER)  # type: ignore[attr-defined]


@pytest.fixture
async def graph():
    received: list[bytes] = []

    def factory() -> Recorder:
        protocol = Recorder()
        protocol.received = received
        return protocol

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    session = messages_session(2.0, "test")
    async with httpx.AsyncClient() as client:
        yield GraphClient(client, f"http://127.0.0.1:{port}", "v21.0", messages=session), received
    await session.close()
    server.close()


def late() -> None:
    raise MissedSlot


async def test_a_send_held_back_at_the_socket_writes_nothing(graph):
    client, received = graph
    with pytest.raises(MissedSlot):
        await client.send("106540352242922", "token", {"to": "5511999990000"}, gate=late)
    await asyncio.sleep(0.05)
    assert received == []


async def test_a_send_let_through_goes_whole_and_later_sends_still_go(graph):
    client, received = graph
    with pytest.raises(MissedSlot):
        await client.send("106540352242922", "token", {"to": "5511999990000"}, gate=late)
    passed: list[bool] = []
    result = await client.send(
        "106540352242922", "token", {"to": "5511999990001"}, gate=lambda: passed.append(True)
    )
    assert passed == [True] and result.wamid is not None
    sent = b"".join(received)
    assert sent.startswith(b"POST /v21.0/106540352242922/messages HTTP/1.1\r\n")
    assert sent.endswith(b'{"to": "5511999990001"}') and b"5511999990000" not in sent
