"""Token buckets, their LRU bound, and which limit applies to which request (no network)."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest

from pytake_api_gateway.config import Settings
from pytake_api_gateway.ratelimit import PLAN_LIMIT, EdgeRateLimits, RateLimiter, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class PlanLimits:
    """Stands in for pytake_common.tenancy.OrganizationDirectory (its ``limit``)."""

    def __init__(self, limits: dict[uuid.UUID, int | None]) -> None:
        self.limits = limits
        self.asked: list[tuple[uuid.UUID, str]] = []

    def limit(self, organization_id: uuid.UUID, name: str) -> int | None:
        self.asked.append((organization_id, name))
        return self.limits.get(organization_id)


def settings(**overrides: object) -> Settings:
    return Settings(env="test", secret_key="k" * 40, **overrides)  # type: ignore[arg-type]


def test_burst_then_refusal_then_refill():
    clock = Clock()
    limiter = RateLimiter(max_keys=10, clock=clock)
    decisions = [limiter.take("a", per_minute=60, burst=3) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, True]
    assert [d.remaining for d in decisions] == [2, 1, 0]
    assert {d.limit for d in decisions} == {3}

    refused = limiter.take("a", per_minute=60, burst=3)
    assert not refused.allowed
    assert refused.retry_after_s == 1  # one token a second
    assert refused.reset_s == 3  # three seconds to a full bucket
    assert refused.window_s == 3

    clock.now += 1.0
    assert limiter.take("a", per_minute=60, burst=3).allowed
    assert not limiter.take("a", per_minute=60, burst=3).allowed

    clock.now += 3600  # never more than the burst, however long the pause
    assert limiter.take("a", per_minute=60, burst=3).remaining == 2


def test_retry_after_is_whole_seconds_rounded_up():
    clock = Clock()
    limiter = RateLimiter(max_keys=10, clock=clock)
    limiter.take("slow", per_minute=1, burst=1)
    refused = limiter.take("slow", per_minute=1, burst=1)
    assert not refused.allowed
    assert refused.retry_after_s == 60
    clock.now += 59.5
    assert limiter.take("slow", per_minute=1, burst=1).retry_after_s == 1
    clock.now += 0.5
    assert limiter.take("slow", per_minute=1, burst=1).allowed


def test_keys_have_separate_buckets():
    limiter = RateLimiter(max_keys=10, clock=Clock())
    assert limiter.take("a", 60, 1).allowed
    assert not limiter.take("a", 60, 1).allowed
    assert limiter.take("b", 60, 1).allowed


def test_memory_is_bounded_least_recently_used_first():
    limiter = RateLimiter(max_keys=2, clock=Clock())
    limiter.take("a", 60, 1)
    limiter.take("b", 60, 1)
    limiter.take("a", 60, 1)  # a used last: b is the oldest now
    limiter.take("c", 60, 1)
    assert len(limiter) == 2
    assert not limiter.take("a", 60, 1).allowed  # a kept its (empty) bucket
    assert limiter.take("b", 60, 1).allowed  # b was forgotten: a fresh bucket


def test_a_changed_limit_applies_to_the_existing_bucket():
    limiter = RateLimiter(max_keys=10, clock=Clock())
    for _ in range(5):
        limiter.take("org", per_minute=600, burst=10)
    smaller = limiter.take("org", per_minute=60, burst=3)  # 5 left, capped to 3, one taken
    assert smaller.limit == 3
    assert smaller.remaining == 2


def test_zero_rate_is_refused_by_the_limiter():
    with pytest.raises(ValueError, match="per_minute"):
        RateLimiter(max_keys=1).take("a", per_minute=0, burst=1)


def test_headers_use_the_draft_names():
    decision = RateLimiter(max_keys=1, clock=Clock()).take("a", per_minute=60, burst=5)
    assert dict(decision.headers()) == {
        b"ratelimit-limit": b"5",
        b"ratelimit-remaining": b"4",
        b"ratelimit-reset": b"1",
        b"ratelimit-policy": b"5;w=5",
    }


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),  # same /64, same bucket
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::ffff:198.51.100.4", "198.51.100.4"),  # IPv4 over a dual-stack socket
        ("not-an-ip:x", "not-an-ip:x"),
    ],
)
def test_client_key(address, key):
    assert client_key(address) == key


def test_defaults_public_routes_limited_webhooks_not():
    limits = EdgeRateLimits(settings(), SimpleNamespace())
    decision = limits.client("203.0.113.7")
    assert decision is not None
    assert decision.allowed
    assert decision.limit == 20
    assert decision.window_s == 20  # 60 a minute: one a second
    assert limits.webhook("203.0.113.7") is None
    assert limits.client(None) is None  # no address (a unix socket): nothing to key on


def test_webhook_limit_when_configured():
    limits = EdgeRateLimits(
        settings(ratelimit_webhook_per_minute=6000, ratelimit_webhook_burst=0), SimpleNamespace()
    )
    decision = limits.webhook("192.0.2.1")
    assert decision is not None
    assert decision.limit == 6000  # burst 0: a minute's worth


def test_organization_default_without_a_directory():
    limits = EdgeRateLimits(settings(), SimpleNamespace())  # no app.state.organizations
    org = uuid.uuid4()
    decision = limits.organization(org, str(org))
    assert decision is not None
    assert decision.limit == 600
    assert decision.window_s == 60


def test_organization_plan_limit_overrides_the_default():
    planned, unknown, unlimited = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    directory = PlanLimits({planned: 120, unlimited: None})
    limits = EdgeRateLimits(settings(), SimpleNamespace(organizations=directory))
    decision = limits.organization(planned, str(planned))
    assert decision is not None
    assert decision.limit == 120
    assert directory.asked == [(planned, PLAN_LIMIT)]
    for org in (unknown, unlimited):  # no figure from the plan: the default
        other = limits.organization(org, str(org))
        assert other is not None
        assert other.limit == 600


def test_organization_limits_are_shared_out_between_replicas():
    org = uuid.uuid4()
    directory = PlanLimits({org: 1000})
    limits = EdgeRateLimits(
        settings(ratelimit_gateway_replicas=3), SimpleNamespace(organizations=directory)
    )
    decision = limits.organization(org, str(org))
    assert decision is not None
    assert decision.limit == 334
    default = limits.organization(uuid.uuid4(), "other")
    assert default is not None
    assert default.limit == 200
    client = limits.client("203.0.113.7")
    assert client is not None
    assert client.limit == 20  # per address: not divided (keep-alive pins a client)


def test_disabled():
    limits = EdgeRateLimits(
        settings(ratelimit_enabled=False, ratelimit_webhook_per_minute=10), SimpleNamespace()
    )
    org = uuid.uuid4()
    assert limits.client("203.0.113.7") is None
    assert limits.webhook("203.0.113.7") is None
    assert limits.organization(org, str(org)) is None
