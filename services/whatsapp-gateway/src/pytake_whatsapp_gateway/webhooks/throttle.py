"""A budget of refused webhook requests per client address.

Only requests refused before their signature verified spend it (a wrong or
missing ``X-Hub-Signature-256``, a body that cannot be a delivery): Meta signs
every delivery and sends hundreds per second from a few addresses, so signed
traffic never spends anything, however much of it comes. An address that spent
its budget is answered 429 before its body is read, until the bucket refills.
Meta retries any non-200 for days, so even a misconfigured app secret loses
nothing here.

An IPv6 client counts as its /64 (:func:`pytake_common.peers.source_group`): one host
usually holds a whole /64, and rotating through it must not buy a fresh budget.

Memory is bounded (``max_addresses`` buckets) without letting a flood of new
addresses buy a throttled one back its budget: to make room, the address refused
longest ago whose bucket holds a token again is forgotten (forgetting it costs at
most the part of a burst it has not refilled yet); a throttled address is never
forgotten before it refilled. When the oldest buckets are all throttled, a new
address is refused without being counted.

Per process (each replica keeps its own): a replica's budget bounds the work
that replica does for strangers. The address is the client's only when the
forwarded-address chain is configured (``PYTAKE_TRUSTED_PROXIES``); otherwise
every request shares its proxy's bucket.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable

from pytake_common.peers import source_group

#: Buckets looked at (oldest refusal first) for one to forget when the table is full.
EVICTION_SCAN = 64


class FailureBudget:
    """A token bucket per address group: ``burst`` refusals, refilled at ``per_second``."""

    def __init__(
        self,
        burst: int,
        per_second: float,
        *,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.per_second = per_second
        self.max_addresses = max_addresses
        self.clock = clock
        #: group -> (tokens left, when counted); least recently refused first.
        self._buckets: dict[str, tuple[float, float]] = {}

    def _tokens(self, group: str, now: float) -> float:
        tokens, at = self._buckets.get(group, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) * self.per_second)

    def retry_after(self, address: str) -> int:
        """0 while ``address`` has budget left, else the seconds until it has."""
        group = source_group(address)
        if group not in self._buckets:
            return 0
        tokens = self._tokens(group, self.clock())
        if tokens >= 1:
            return 0
        return max(1, math.ceil((1 - tokens) / self.per_second))

    def spend(self, address: str) -> None:
        group = source_group(address)
        now = self.clock()
        if group not in self._buckets and not self._make_room(now):
            return  # full of throttled addresses: refused, not counted
        tokens = self._tokens(group, now)
        self._buckets.pop(group, None)
        self._buckets[group] = (max(0.0, tokens - 1), now)

    def _make_room(self, now: float) -> bool:
        """Room for one more bucket, forgetting the least recently refused one that is
        not throttled if needed; False when none of the oldest can be forgotten."""
        if len(self._buckets) < self.max_addresses:
            return True
        for group in itertools.islice(self._buckets, EVICTION_SCAN):
            if self._tokens(group, now) >= 1:
                del self._buckets[group]
                return True
        return False
