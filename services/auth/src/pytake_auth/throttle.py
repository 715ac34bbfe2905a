"""Throttling of login, register and refresh: sliding-window counters in PostgreSQL.

Each rule keeps, per subject (an e-mail, a client address, a user), the hits
of the current fixed window and of the previous one in ``throttle_buckets``;
the estimate of the last ``window`` seconds is ``previous * (1 - elapsed /
window) + current`` (the "sliding window counter" of Cloudflare and others:
O(1) state, no burst at window edges). Rows are locked by the upsert, so
replicas sharing the database share the counters exactly. Refused attempts
are not counted: a client that waits ``Retry-After`` gets through.

Subjects are stored as sha256 of ``rule:subject``, never in clear.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_auth.tables import throttle_buckets
from pytake_common.db import Database
from pytake_common.errors import TooManyRequests


class Throttled(TooManyRequests):
    code, title = "rate_limited", "Too many requests"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"too many attempts; retry in {retry_after} seconds", retry_after=retry_after
        )


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    limit: int
    window_s: int

    def bucket(self, subject: str) -> str:
        return hashlib.sha256(f"{self.name}:{subject}".encode()).hexdigest()


def _estimate(rule: Rule, previous: int, current: int, elapsed: float) -> float:
    return previous * max(0.0, 1.0 - elapsed / rule.window_s) + current


def _retry_after(rule: Rule, previous: int, current: int, elapsed: float) -> int:
    """Seconds until one more hit fits under the limit (no hit in between)."""
    w = rule.window_s
    if current + 1 <= rule.limit and previous > 0:
        # Still in this window: wait for the previous window's share to fade.
        at = w * (1.0 - (rule.limit - current - 1) / previous)
        return max(1, math.ceil(at - elapsed))
    # This window is full: in the next one, ``current`` becomes the fading share.
    at = w * max(0.0, 1.0 - (rule.limit - 1) / current) if current else 0.0
    return max(1, math.ceil(w - elapsed + at))


class Throttle:
    def __init__(self, db: Database, *, enabled: bool = True) -> None:
        self.db = db
        self.enabled = enabled

    async def hit(self, rule: Rule, subject: str) -> None:
        """Count one attempt; raise :class:`Throttled` (not counting it) when over the limit."""
        await self.gate((rule, subject, True))

    async def check(self, rule: Rule, subject: str) -> None:
        """Raise :class:`Throttled` when one more hit would exceed the limit; count nothing."""
        await self.gate((rule, subject, False))

    async def gate(self, *steps: tuple[Rule, str, bool]) -> None:
        """Apply ``(rule, subject, count)`` steps in one transaction; the first refusal
        raises. The refused step counts nothing; earlier steps stay counted (the
        attempt did reach them)."""
        if not self.enabled:
            return
        async with self.db.transaction() as session:
            retry = await self.take(session, *steps)
        if retry is not None:
            raise Throttled(retry)

    async def take(self, session: AsyncSession, *steps: tuple[Rule, str, bool]) -> int | None:
        """:meth:`gate` inside the caller's transaction: return the first refusal's
        ``Retry-After`` instead of raising, so the caller can commit the earlier
        steps' counts (and its own work) before refusing."""
        if not self.enabled:
            return None
        now: datetime = (await session.execute(select(func.now()))).scalar_one()
        for rule, subject, count in steps:
            retry = await self._take(session, now, rule, rule.bucket(subject), count=count)
            if retry is not None:
                return retry
        return None

    async def clear(self, rule: Rule, subject: str, session: AsyncSession | None = None) -> None:
        """Forget ``subject``'s hits (inside ``session`` when given: no extra transaction)."""
        if not self.enabled:
            return
        statement = delete(throttle_buckets).where(
            throttle_buckets.c.bucket == rule.bucket(subject)
        )
        if session is not None:
            await session.execute(statement)
            return
        async with self.db.transaction() as own:
            await own.execute(statement)

    async def _take(
        self, session: AsyncSession, now: datetime, rule: Rule, bucket: str, *, count: bool
    ) -> int | None:
        epoch = now.timestamp()
        start_s = epoch - epoch % rule.window_s
        window_start = now - timedelta(seconds=epoch - start_s)
        elapsed = epoch - start_s
        # Create or lock the bucket (ON CONFLICT DO UPDATE locks the existing row).
        row = (
            await session.execute(
                pg_insert(throttle_buckets)
                .values(
                    bucket=bucket,
                    window_start=window_start,
                    hits=0,
                    previous_hits=0,
                    expires_at=window_start + timedelta(seconds=2 * rule.window_s),
                )
                .on_conflict_do_update(
                    index_elements=[throttle_buckets.c.bucket],
                    set_={"bucket": throttle_buckets.c.bucket},
                )
                .returning(
                    throttle_buckets.c.window_start,
                    throttle_buckets.c.hits,
                    throttle_buckets.c.previous_hits,
                )
            )
        ).one()
        gap = (window_start - row.window_start).total_seconds()
        if gap <= 0:
            previous, current = row.previous_hits, row.hits
        elif gap <= rule.window_s:
            previous, current = row.hits, 0
        else:
            previous, current = 0, 0
        if _estimate(rule, previous, current + 1, elapsed) > rule.limit:
            return _retry_after(rule, previous, current, elapsed)
        if count:
            await session.execute(
                update(throttle_buckets)
                .where(throttle_buckets.c.bucket == bucket)
                .values(
                    window_start=window_start,
                    hits=current + 1,
                    previous_hits=previous,
                    expires_at=window_start + timedelta(seconds=2 * rule.window_s),
                )
            )
        return None


async def purge_expired(db: Database) -> int:
    """Drop buckets whose windows no longer count (housekeeping, any replica)."""
    async with db.transaction() as session:
        result = await session.execute(
            delete(throttle_buckets).where(throttle_buckets.c.expires_at < func.now())
        )
    return int(getattr(result, "rowcount", 0) or 0)
