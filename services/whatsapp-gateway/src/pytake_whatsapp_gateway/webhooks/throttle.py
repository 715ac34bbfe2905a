"""A budget of refused webhook requests per client address.

Only requests refused before their signature verified spend it (a wrong or
missing ``X-Hub-Signature-256``, a body that cannot be a delivery): Meta signs
every delivery and sends hundreds per second from a few addresses, so signed
traffic never spends anything, however much of it comes. An address that spent
its budget is answered 429 before its body is read, until the bucket refills.
Meta retries any non-200 for days, so even a misconfigured app secret loses
nothing here.

Per process (each replica keeps its own): a replica's budget bounds the work
that replica does for strangers. The address is the client's only when the
forwarded-address chain is configured (``PYTAKE_TRUSTED_PROXIES``); otherwise
every request shares its proxy's bucket.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class FailureBudget:
    """A token bucket per address: ``burst`` refusals, refilled at ``per_second``."""

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
        #: address -> (tokens left, when counted); oldest spender first.
        self._buckets: dict[str, tuple[float, float]] = {}

    def _tokens(self, address: str, now: float) -> float:
        tokens, at = self._buckets.get(address, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) * self.per_second)

    def retry_after(self, address: str) -> int:
        """0 while ``address`` has budget left, else the seconds until it has."""
        if address not in self._buckets:
            return 0
        tokens = self._tokens(address, self.clock())
        if tokens >= 1:
            return 0
        return max(1, math.ceil((1 - tokens) / self.per_second))

    def spend(self, address: str) -> None:
        now = self.clock()
        tokens = self._tokens(address, now)
        self._buckets.pop(address, None)
        self._buckets[address] = (max(0.0, tokens - 1), now)
        while len(self._buckets) > self.max_addresses:
            # Forget the address that spent longest ago (bounded memory under spoofing).
            self._buckets.pop(next(iter(self._buckets)))
