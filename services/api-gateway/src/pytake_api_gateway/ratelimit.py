"""Rate limits at the edge: in-process token buckets, bounded by an LRU.

One bucket per key (a client address on public routes, an organization on
authenticated ones). A bucket holds up to ``burst`` tokens and refills at
``per_minute / 60`` tokens a second; a request takes one token or is refused
with the time until one is back.

The buckets live in this process only: no network round trip on the hot path,
and no shared store to fail. With N gateway replicas the effective limit is
per replica:

* an organization's traffic comes from many clients and connections and
  spreads over the replicas, so its limit is divided by
  ``ratelimit_gateway_replicas`` (set it to the replica count);
* one client address is usually pinned to one replica by its keep-alive
  connection, so per-address limits are not divided: a client that opens
  connections to every replica gets at most N times its limit.

Memory is bounded: past ``max_keys`` buckets the least recently used one is
forgotten (its key starts again with a full bucket).
"""

from __future__ import annotations

import ipaddress
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from pytake_api_gateway.config import Settings

#: The plan limit (tenants' ``limits``) that sizes an organization's bucket.
PLAN_LIMIT = "api_requests_per_minute"


@dataclass(slots=True)
class Bucket:
    tokens: float
    stamp: float
    capacity: float
    rate: float  # tokens per second


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    #: Bucket size: the most requests that may arrive at once.
    limit: int
    remaining: int
    #: Seconds until the bucket is full again.
    reset_s: int
    #: Seconds until one more request would be admitted (0 when allowed).
    retry_after_s: int
    #: Seconds a full bucket takes to refill (the window of ``RateLimit-Policy``).
    window_s: int

    def headers(self) -> list[tuple[bytes, bytes]]:
        """``RateLimit-*`` (draft-ietf-httpapi-ratelimit-headers); ``Retry-After`` is the 429's."""
        return [
            (b"ratelimit-limit", b"%d" % self.limit),
            (b"ratelimit-remaining", b"%d" % self.remaining),
            (b"ratelimit-reset", b"%d" % self.reset_s),
            (b"ratelimit-policy", b"%d;w=%d" % (self.limit, self.window_s)),
        ]


class RateLimiter:
    def __init__(self, max_keys: int, clock: Callable[[], float] = time.monotonic) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, per_minute: int, burst: int) -> Decision:
        """Spend one token of ``key``'s bucket if there is one."""
        if per_minute <= 0:
            raise ValueError("per_minute must be positive (0 means no limit: do not ask)")
        rate = per_minute / 60.0
        capacity = float(max(burst, 1))
        now = self._clock()
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            bucket = Bucket(capacity, now, capacity, rate)
            buckets[key] = bucket
            if len(buckets) > self.max_keys:
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(key)
            if bucket.capacity != capacity or bucket.rate != rate:
                # The limit changed (a new plan): keep what is left, within the new size.
                bucket.capacity, bucket.rate = capacity, rate
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.stamp) * rate)
            bucket.stamp = now

        allowed = bucket.tokens >= 1.0
        if allowed:
            bucket.tokens -= 1.0
            retry_after = 0
        else:
            retry_after = max(1, math.ceil((1.0 - bucket.tokens) / rate))
        return Decision(
            allowed=allowed,
            limit=int(capacity),
            remaining=int(bucket.tokens),
            reset_s=math.ceil((capacity - bucket.tokens) / rate),
            retry_after_s=retry_after,
            window_s=max(1, math.ceil(capacity / rate)),
        )


def client_key(address: str) -> str:
    """The bucket key of a client address: IPv4 as is, IPv6 by its /64.

    One IPv6 host commonly holds a whole /64; keying on the full address would
    let it pick a fresh bucket per request.
    """
    if ":" not in address:
        return address
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, 64), strict=False))


class EdgeRateLimits:
    """Which bucket a request spends from, and how big it is (settings and plans).

    ``organizations`` is read on every request (``app.state.organizations``,
    pytake_common's replica of tenants' events): a plan change applies to the
    next request. Without it (or for an organization it does not know) the
    default per-organization limit applies.
    """

    def __init__(
        self,
        settings: Settings,
        state: object,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        s = settings
        self.enabled = s.ratelimit_enabled
        self._state = state
        self._replicas = max(1, s.ratelimit_gateway_replicas)
        self._client = (s.ratelimit_client_per_minute, s.ratelimit_client_burst)
        self._webhook = (
            s.ratelimit_webhook_per_minute,
            s.ratelimit_webhook_burst or s.ratelimit_webhook_per_minute,
        )
        self._org_default = s.ratelimit_organization_per_minute
        self._org_burst = s.ratelimit_organization_burst
        self.clients = RateLimiter(s.ratelimit_max_keys, clock)
        self.webhooks = RateLimiter(s.ratelimit_max_keys, clock)
        self.organizations = RateLimiter(s.ratelimit_max_keys, clock)

    def client(self, address: str | None) -> Decision | None:
        """A public API route, per client address (``None``: not limited)."""
        per_minute, burst = self._client
        if not self.enabled or per_minute <= 0 or not address:
            return None
        return self.clients.take(client_key(address), per_minute, burst)

    def webhook(self, address: str | None) -> Decision | None:
        """Meta's webhook deliveries: off by default (Meta retries, but a lost
        delivery is worse than a busy gateway)."""
        per_minute, burst = self._webhook
        if not self.enabled or per_minute <= 0 or not address:
            return None
        return self.webhooks.take(client_key(address), per_minute, burst)

    def organization(self, organization_id: uuid.UUID, key: str) -> Decision | None:
        """An authenticated route, per organization (its plan's limit, else the default)."""
        if not self.enabled:
            return None
        per_minute, burst = self._org_default, self._org_burst or self._org_default
        directory = getattr(self._state, "organizations", None)
        if directory is not None:
            planned = directory.limit(organization_id, PLAN_LIMIT)
            if planned is not None and planned > 0:
                # The plan's figure is the whole quota: a minute's worth may come at once.
                per_minute = burst = planned
        if per_minute <= 0:
            return None
        replicas = self._replicas
        if replicas > 1:
            per_minute = math.ceil(per_minute / replicas)
            burst = math.ceil(burst / replicas)
        return self.organizations.take(key, per_minute, burst)
