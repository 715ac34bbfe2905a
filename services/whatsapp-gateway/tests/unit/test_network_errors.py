"""A send that failed on the network: retried only when it never left (at most once)."""

from types import SimpleNamespace

import aiohttp
import httpx
import pytest

from pytake_whatsapp_gateway.sending.errors import from_aiohttp_error, from_network_error
from pytake_whatsapp_gateway.sending.graph import KEEPALIVE_S, messages_session

KEY = SimpleNamespace(host="graph.facebook.com", port=443, ssl=True)


@pytest.mark.parametrize(
    "exc",
    [
        aiohttp.ClientConnectorError(KEY, ConnectionRefusedError(111, "refused")),  # type: ignore[arg-type]
        aiohttp.ConnectionTimeoutError("connecting (or waiting for a pooled connection)"),
    ],
)
def test_aiohttp_errors_before_the_request_left_are_retried(exc):
    error = from_aiohttp_error(exc)
    assert error.transient and not error.ambiguous


@pytest.mark.parametrize(
    "exc",
    [
        aiohttp.SocketTimeoutError("no answer within the read timeout"),
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientPayloadError("answer cut short"),
        aiohttp.ClientOSError(104, "connection reset"),
        TimeoutError(),
    ],
)
def test_aiohttp_errors_after_the_request_may_have_left_are_ambiguous(exc):
    error = from_aiohttp_error(exc)
    assert error.ambiguous and not error.transient


def test_httpx_and_aiohttp_map_alike():
    request = httpx.Request("POST", "https://graph.facebook.com/v21.0/1/messages")
    assert from_network_error(httpx.ConnectError("refused", request=request)) == (
        from_aiohttp_error(aiohttp.ClientConnectorError(KEY, OSError(111, "refused")))  # type: ignore[arg-type]
    )
    assert from_network_error(httpx.ReadTimeout("slow", request=request)) == (
        from_aiohttp_error(aiohttp.SocketTimeoutError())
    )


async def test_the_sends_session_keeps_idle_connections_no_longer_than_httpx_did():
    session = messages_session(5.0, "test")
    try:
        connector = session.connector
        assert isinstance(connector, aiohttp.TCPConnector)
        assert connector._keepalive_timeout == httpx.Limits().keepalive_expiry == KEEPALIVE_S
    finally:
        await session.close()
