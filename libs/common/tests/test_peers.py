from ipaddress import ip_network

from starlette.requests import Request

from pytake_common.peers import LOOPBACK, client_address, source_group


def request(peer: str, forwarded: str | None = None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    return Request({"type": "http", "client": (peer, 5000), "headers": headers})


def test_the_forwarded_client_is_believed_only_from_a_trusted_proxy():
    pods = [ip_network("10.0.0.0/8")]
    assert client_address(request("10.1.2.3", "203.0.113.9, 10.1.2.3"), pods) == "203.0.113.9"
    assert client_address(request("198.51.100.7", "203.0.113.9"), pods) == "198.51.100.7"
    assert client_address(request("10.1.2.3"), pods) == "10.1.2.3"  # no header: the peer
    assert client_address(request("127.0.0.1", "203.0.113.9"), LOOPBACK) == "203.0.113.9"
    assert client_address(request("not-an-ip", "203.0.113.9"), pods) == "not-an-ip"


def test_source_group_counts_an_ipv6_client_by_its_64():
    assert source_group("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert source_group("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    assert source_group("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert source_group("::ffff:192.0.2.7") == "192.0.2.7"
    assert source_group("192.0.2.7") == "192.0.2.7"
    assert source_group("unknown") == "unknown"
