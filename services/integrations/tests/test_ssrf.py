"""SSRF: deliveries reach public addresses only, and exactly the address that was vetted."""

import ipaddress
import uuid

import pytest

from pytake_common.ssrf import DestinationRefused, VettingResolver, refusal
from pytake_integrations.delivery import DeliveryWorker

from .helpers import Receiver, deliver, inbound, make_endpoint, rows


def fake_dns(table: dict[str, list[str]]):
    """A resolver's lookup that never touches real DNS."""
    asked: list[str] = []

    async def lookup(host: str, port: int) -> list[str]:
        asked.append(host)
        if host not in table:
            raise OSError("no such host")
        return table[host]

    lookup.asked = asked  # type: ignore[attr-defined]
    return lookup


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.0.0.7", "a private address"),
        ("172.16.5.4", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fd12:3456::1", "a private address"),
        ("169.254.169.254", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("169.254.10.10", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("100.64.1.1", "a reserved address"),
        ("0.0.0.0", "a private address"),
        ("::ffff:10.0.0.1", "a private address"),
        ("93.184.215.14", None),
        ("2606:4700::6810:84e5", None),
    ],
)
def test_which_addresses_are_refused(address, why):
    assert refusal(ipaddress.ip_address(address), allow_loopback=False) == why


def test_loopback_only_with_the_dev_setting():
    assert refusal(ipaddress.ip_address("127.0.0.1"), allow_loopback=True) is None
    assert refusal(ipaddress.ip_address("10.0.0.1"), allow_loopback=True) == "a private address"


async def test_the_resolver_answers_only_vetted_addresses():
    resolver = VettingResolver(
        fake_dns({"mixed.example": ["10.0.0.1", "93.184.215.14"], "evil.example": ["10.1.1.1"]})
    )
    [only] = await resolver.resolve("mixed.example", 443)
    assert only["host"] == "93.184.215.14"
    assert only["hostname"] == "mixed.example"  # SNI and Host stay the name
    with pytest.raises(DestinationRefused, match=r"10\.1\.1\.1 is a private address"):
        await resolver.resolve("evil.example", 443)


async def _attempt(app, settings, client, tokens, url, table, *, allow_loopback):
    org = uuid.uuid4()
    endpoint = await make_endpoint(client, tokens, org, url)
    await deliver(app, settings, inbound(org, uuid.uuid4()))
    lookup = fake_dns(table)
    worker = DeliveryWorker(
        settings.model_copy(update={"webhooks_allow_loopback": allow_loopback}),
        app.state.db,
        app.state.secret_box,
        lookup=lookup,
    )
    try:
        await worker.drain()
    finally:
        await worker.close()
    [row] = await rows(app, endpoint["id"])
    return row, lookup


async def test_a_hostname_resolving_to_a_private_address_is_refused_at_send_time(
    app, settings, client, tokens
):
    row, lookup = await _attempt(
        app,
        settings,
        client,
        tokens,
        "https://hooks.customer.example/in",
        {"hooks.customer.example": ["10.20.30.40"]},
        allow_loopback=False,
    )
    assert lookup.asked == ["hooks.customer.example"]
    assert row["status"] == "failed"
    assert row["attempts"] == 1
    assert "destination refused" in row["last_error"]
    assert "10.20.30.40 is a private address" in row["last_error"]


async def test_metadata_and_loopback_names_are_refused(app, settings, client, tokens):
    for name, address in (("meta.example", "169.254.169.254"), ("lo.example", "127.0.0.1")):
        row, _ = await _attempt(
            app,
            settings,
            client,
            tokens,
            f"http://{name}/",
            {name: [address]},
            allow_loopback=False,
        )
        assert row["status"] == "failed", name
        assert "destination refused" in row["last_error"]


async def test_the_connection_goes_to_the_vetted_address_with_the_original_host(
    app, settings, client, tokens
):
    """DNS rebinding cannot slip in: the address connected to is the one the resolver
    vetted (here loopback, allowed by the dev setting), and Host is the URL's name."""
    receiver = await Receiver().start()
    try:
        url = f"http://hooks.customer.example:{receiver.port}/hook"
        row, lookup = await _attempt(
            app,
            settings,
            client,
            tokens,
            url,
            {"hooks.customer.example": ["127.0.0.1"]},
            allow_loopback=True,
        )
    finally:
        await receiver.stop()
    assert row["status"] == "succeeded", row["last_error"]
    assert lookup.asked == ["hooks.customer.example"]  # one resolution, the one checked
    assert receiver.got[0].headers["Host"] == f"hooks.customer.example:{receiver.port}"


async def test_an_ip_literal_is_checked_too(app, settings, client, tokens):
    """aiohttp skips the resolver for an IP literal: the worker checks it itself (a URL
    stored while the dev setting was on must not reach loopback once it is off)."""
    row, lookup = await _attempt(
        app, settings, client, tokens, "http://127.0.0.1:9/", {}, allow_loopback=False
    )
    assert row["status"] == "failed"
    assert "127.0.0.1 is a loopback address" in row["last_error"]
    assert lookup.asked == []
