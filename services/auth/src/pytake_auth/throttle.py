"""Throttling of login, register and refresh: sliding-window counters in PostgreSQL.

Each rule keeps, per subject (an e-mail, a client address, a user), the hits
of the current fixed window and of the previous one in ``throttle_buckets``;
the estimate of the last ``window`` seconds is ``previous * (1 - elapsed /
window) + current`` (the "sliding window counter" of Cloudflare and others:
O(1) state, no burst at window edges). Rows are locked by the upsert, so
replicas sharing the database share the counters exactly. Refused attempts
are not counted: a client that waits ``Retry-After`` gets through.

Subjects are stored as sha256 of ``rule:subject``, never in clear. The counters are
committed without waiting for the WAL flush (``pg.transaction(durable=False)``): a
database crash may forget the last fraction of a second of hits, nothing more.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from ipaddress import IPv6Network, ip_network

import asyncpg
from sqlalchemy import delete, func

from pytake_auth.config import Settings
from pytake_auth.tables import throttle_buckets
from pytake_common import rawpg as pg
from pytake_common.db import Database
from pytake_common.errors import TooManyRequests
from pytake_common.peers import source_group


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


#: What the throttle counts a client address as (an IPv6 client's /64).
throttle_source = source_group


def ceiling_group(source: str) -> str:
    """The network a throttle source belongs to for the per-e-mail limits only: its
    /48 (IPv6) or /24 (IPv4). One host commonly holds a whole IPv6 /48 (65,536 /64s)
    and often many addresses of one IPv4 /24: as one network, they cannot each count
    as a fresh source and so fill the e-mail's ceiling alone."""
    try:
        network = ip_network(source, strict=False)
    except ValueError:
        return source
    prefix = 48 if isinstance(network, IPv6Network) else 24
    return str(network.supernet(new_prefix=prefix)) if network.prefixlen > prefix else str(network)


@dataclass(frozen=True, slots=True)
class Rules:
    login_failures_per_source: Rule
    login_failures_per_email: Rule
    login_failures_ceiling: Rule
    #: (e-mail, network of the source): has this network failed against the e-mail?
    login_failures_per_group: Rule
    #: (e-mail, source) that signed in before: a long-lived marker, exempt from the ceiling.
    login_known_source: Rule
    login_per_address: Rule
    register_per_address: Rule
    register_per_email: Rule
    refresh_per_address: Rule
    refresh_per_user: Rule

    @classmethod
    def from_settings(cls, settings: Settings) -> Rules:
        def rule(name: str, pair: tuple[int, int]) -> Rule:
            return Rule(name, pair[0], pair[1])

        return cls(
            login_failures_per_source=rule(
                "login-failures:email+source", settings.throttle_login_failures_per_source
            ),
            login_failures_per_email=rule(
                "login-failures:email", settings.throttle_login_failures_per_email
            ),
            login_failures_ceiling=rule(
                "login-failures:email-ceiling", settings.throttle_login_failures_ceiling
            ),
            login_failures_per_group=rule(
                "login-failures:email+group", settings.throttle_login_failures_ceiling
            ),
            login_known_source=Rule(
                "login-known:email+source", 1, settings.throttle_login_known_source_ttl_s
            ),
            login_per_address=rule("login:address", settings.throttle_login_per_address),
            register_per_address=rule("register:address", settings.throttle_register_per_address),
            register_per_email=rule("register:email", settings.throttle_register_per_email),
            refresh_per_address=rule("refresh:address", settings.throttle_refresh_per_address),
            refresh_per_user=rule("refresh:user", settings.throttle_refresh_per_user),
        )


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


#: A subject's first hit in a while: a new bucket with that hit counted (one hit always
#: fits, limits are >= 1), in the current fixed window of the transaction's clock.
_FIRST_HIT = """
INSERT INTO throttle_buckets (bucket, window_start, hits, previous_hits, expires_at)
SELECT $1, w.start, 1, 0, w.start + make_interval(secs => 2 * $2::integer)
FROM (
    SELECT to_timestamp(floor(extract(epoch FROM now()) / $2::integer) * $2::integer)
) AS w (start)
ON CONFLICT (bucket) DO NOTHING
RETURNING bucket
"""
#: Create or lock the bucket (ON CONFLICT DO UPDATE locks the existing row, and one
#: deleted since _FIRST_HIT is created again, empty).
_LOCK_BUCKET = """
INSERT INTO throttle_buckets AS b (bucket, window_start, hits, previous_hits, expires_at)
VALUES ($1, now(), 0, 0, now() + make_interval(secs => 2 * $2::integer))
ON CONFLICT (bucket) DO UPDATE SET bucket = b.bucket
RETURNING b.window_start, b.hits, b.previous_hits, now()
"""
#: A check counts nothing, so it needs no lock (nor a row).
_READ_BUCKET = """
SELECT window_start, hits, previous_hits, now() FROM throttle_buckets WHERE bucket = $1
"""
_COUNT_HIT = """
UPDATE throttle_buckets SET window_start = $2, hits = $3, previous_hits = $4, expires_at = $5
WHERE bucket = $1
"""
_FORGET = "DELETE FROM throttle_buckets WHERE bucket = ANY($1::varchar[])"
#: Take back one hit counted in the window that started at $2 (a reservation refunded).
_REFUND = """
UPDATE throttle_buckets
SET hits = CASE WHEN window_start = $2 THEN greatest(hits - 1, 0) ELSE hits END,
    previous_hits = CASE WHEN window_start = $2 THEN previous_hits
                         ELSE greatest(previous_hits - 1, 0) END
WHERE bucket = ANY($1::varchar[])
"""
#: A long-lived marker (no counting): set, or its lifetime renewed.
_MARK = """
INSERT INTO throttle_buckets (bucket, window_start, hits, previous_hits, expires_at)
VALUES ($1, now(), 1, 0, now() + make_interval(secs => $2::integer))
ON CONFLICT (bucket) DO UPDATE SET expires_at = EXCLUDED.expires_at
"""
_MARKED = "SELECT 1 FROM throttle_buckets WHERE bucket = $1 AND expires_at > now()"


@dataclass(frozen=True, slots=True)
class Standing:
    """A subject's bucket under a rule, locked (FOR UPDATE, by the upsert) until the
    transaction ends: the basis of a check-and-count with no race in between."""

    rule: Rule
    bucket: str
    window_start: datetime
    previous: int
    current: int
    elapsed: float

    @property
    def hits(self) -> float:
        return _estimate(self.rule, self.previous, self.current, self.elapsed)

    def retry_after(self) -> int | None:
        """``Retry-After`` if one more hit would exceed the limit, else None."""
        rule = self.rule
        if _estimate(rule, self.previous, self.current + 1, self.elapsed) > rule.limit:
            return _retry_after(rule, self.previous, self.current, self.elapsed)
        return None


class Throttle:
    """The counters, on raw asyncpg (:mod:`pytake_common.rawpg`): a throttle step is two
    short statements, and login runs its steps inside its own transaction."""

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
        async with pg.transaction(self.db, durable=False) as conn:
            retry = await self.take(conn, *steps)
        if retry is not None:
            raise Throttled(retry)

    async def take(self, conn: asyncpg.Connection, *steps: tuple[Rule, str, bool]) -> int | None:
        """:meth:`gate` inside the caller's transaction: return the first refusal's
        ``Retry-After`` instead of raising, so the caller can commit the earlier
        steps' counts (and its own work) before refusing."""
        if not self.enabled:
            return None
        for rule, subject, count in steps:
            retry = await self._take(conn, rule, rule.bucket(subject), count=count)
            if retry is not None:
                return retry
        return None

    async def clear(self, rule: Rule, subject: str, conn: asyncpg.Connection | None = None) -> None:
        """Forget ``subject``'s hits (inside ``conn``'s transaction when given)."""
        await self.forget(conn, (rule, subject))

    async def forget(self, conn: asyncpg.Connection | None, *subjects: tuple[Rule, str]) -> None:
        """Forget each ``(rule, subject)``'s hits in one statement (inside ``conn``'s
        transaction when given)."""
        if not self.enabled:
            return
        buckets = [rule.bucket(subject) for rule, subject in subjects]
        if conn is not None:
            await conn.execute(_FORGET, buckets)
            return
        async with pg.transaction(self.db, durable=False) as own:
            await own.execute(_FORGET, buckets)

    async def lock(self, conn: asyncpg.Connection, rule: Rule, subject: str) -> Standing:
        """Lock ``subject``'s bucket (created empty when missing) and read it."""
        bucket = rule.bucket(subject)
        row = await conn.fetchrow(_LOCK_BUCKET, bucket, rule.window_s)
        window_start, previous, current, elapsed = _standing(rule, row[0], row[1], row[2], row[3])
        return Standing(rule, bucket, window_start, previous, current, elapsed)

    async def count(self, conn: asyncpg.Connection, standing: Standing) -> None:
        """Count one hit on a bucket locked by :meth:`lock` (limits are the caller's)."""
        expires_at = standing.window_start + timedelta(seconds=2 * standing.rule.window_s)
        await conn.execute(
            _COUNT_HIT,
            standing.bucket,
            standing.window_start,
            standing.current + 1,
            standing.previous,
            expires_at,
        )

    async def refund(
        self, conn: asyncpg.Connection, counted: tuple[tuple[str, datetime], ...]
    ) -> None:
        """Take back hits counted by :meth:`count`: ``(bucket, window_start)`` each."""
        by_window: dict[datetime, list[str]] = {}
        for bucket, window_start in counted:
            by_window.setdefault(window_start, []).append(bucket)
        for window_start, buckets in by_window.items():
            await conn.execute(_REFUND, buckets, window_start)

    async def mark(self, conn: asyncpg.Connection, rule: Rule, subject: str) -> None:
        """Set ``subject``'s marker for ``rule.window_s`` seconds from now."""
        if self.enabled:
            await conn.execute(_MARK, rule.bucket(subject), rule.window_s)

    async def marked(self, conn: asyncpg.Connection, rule: Rule, subject: str) -> bool:
        return await conn.fetchval(_MARKED, rule.bucket(subject)) is not None

    async def _take(
        self, conn: asyncpg.Connection, rule: Rule, bucket: str, *, count: bool
    ) -> int | None:
        if count:
            if rule.limit >= 1 and await conn.fetchrow(_FIRST_HIT, bucket, rule.window_s):
                return None
            row = await conn.fetchrow(_LOCK_BUCKET, bucket, rule.window_s)
        else:
            row = await conn.fetchrow(_READ_BUCKET, bucket)
            if row is None:
                return None  # no hits: one fits
        window_start, previous, current, elapsed = _standing(rule, row[0], row[1], row[2], row[3])
        if _estimate(rule, previous, current + 1, elapsed) > rule.limit:
            return _retry_after(rule, previous, current, elapsed)
        if count:
            expires_at = window_start + timedelta(seconds=2 * rule.window_s)
            await conn.execute(_COUNT_HIT, bucket, window_start, current + 1, previous, expires_at)
        return None


def _standing(
    rule: Rule, stored_start: datetime, hits: int, previous_hits: int, now: datetime
) -> tuple[datetime, int, int, float]:
    """A stored bucket seen at ``now``: the current window's start, the previous and
    current windows' hits, and the seconds elapsed in the current window."""
    epoch = now.timestamp()
    start_s = epoch - epoch % rule.window_s
    window_start = now - timedelta(seconds=epoch - start_s)
    elapsed = epoch - start_s
    gap = (window_start - stored_start).total_seconds()
    if gap <= 0:
        return window_start, previous_hits, hits, elapsed
    if gap <= rule.window_s:
        return window_start, hits, 0, elapsed
    return window_start, 0, 0, elapsed


async def purge_expired(db: Database) -> int:
    """Drop buckets whose windows no longer count (housekeeping, any replica)."""
    async with db.transaction() as session:
        result = await session.execute(
            delete(throttle_buckets).where(throttle_buckets.c.expires_at < func.now())
        )
    return int(getattr(result, "rowcount", 0) or 0)
