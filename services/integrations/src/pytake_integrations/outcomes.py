"""What an attempt came to, and how a batch of them is written down.

The rules (:func:`classify`, :func:`retry_after`, :func:`backoff_s`) decide one
attempt's fate; :func:`record` writes the outcomes of many attempts in one
transaction: the delivery rows (the log) in one statement, the endpoints' failure
streaks in another, and only when something failed or 410'd the auto-disable checks.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common import rawpg
from pytake_integrations import endpoints as endpoint_rules
from pytake_integrations.config import Settings

SUCCEEDED, FAILED, PENDING = "succeeded", "failed", "pending"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to."""

    kind: str  # succeeded | retry | failed | gone
    response_status: int | None = None
    response_body: str | None = None
    latency_ms: int | None = None
    error: str | None = None
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    """An attempt of a claimed delivery (``row``: what the claim returned) and its outcome."""

    row: dict[str, Any]
    outcome: Outcome
    at: datetime


def retry_after(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date); None when absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def backoff_s(settings: Settings, attempts: int, rng: random.Random) -> float:
    """Exponential from ``retry_base_s``, capped, with "equal jitter" (half fixed, half random)."""
    delay = min(settings.retry_max_delay_s, settings.retry_base_s * 2 ** max(attempts - 1, 0))
    jittered: float = delay / 2 + rng.uniform(0, delay / 2)
    return jittered


def classify(status: int) -> str:
    if 200 <= status < 300:
        return SUCCEEDED
    if status == 410:
        return "gone"
    if status in (408, 429) or status >= 500:
        return "retry"
    return FAILED


# The delivery rows of a batch, one statement whatever its size.
_LOG = """
UPDATE deliveries d
SET status = u.status, attempts = u.attempts, lease_until = NULL, last_attempt_at = u.at,
    response_status = u.response_status, response_body = u.response_body,
    latency_ms = u.latency_ms, last_error = u.last_error,
    next_attempt_at = coalesce(u.next_at, d.next_attempt_at),
    completed_at = CASE WHEN u.status = 'pending' THEN d.completed_at ELSE u.at END
FROM unnest($1::uuid[], $2::text[], $3::int[], $4::timestamptz[], $5::int[], $6::text[],
            $7::int[], $8::text[], $9::timestamptz[])
     AS u(id, status, attempts, at, response_status, response_body, latency_ms,
          last_error, next_at)
WHERE d.id = u.id
"""

# A delivery waiting for a retry holds back the later ones of its conversation: they are
# not due before it (so the claim's scan of due rows does not walk a blocked backlog).
_HOLD_BACK = """
UPDATE deliveries d SET next_attempt_at = u.next_at
FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::timestamptz[])
     AS u(endpoint_id, ordering_key, seq, next_at)
WHERE d.endpoint_id = u.endpoint_id AND d.ordering_key = u.ordering_key
  AND d.status = 'pending' AND d.seq > u.seq AND d.next_attempt_at < u.next_at
"""

# Failure streaks: ``reset`` when the batch holds a success (the streak is then the
# failures after the last one); a healthy endpoint with a success is not written.
_STREAKS = """
UPDATE endpoints e
SET consecutive_failures = CASE WHEN u.reset THEN u.failures
                                ELSE e.consecutive_failures + u.failures END,
    failing_since = CASE WHEN u.failures = 0 THEN NULL
                         WHEN u.reset THEN u.first_failure
                         ELSE coalesce(e.failing_since, u.first_failure) END
FROM unnest($1::uuid[], $2::bool[], $3::int[], $4::timestamptz[])
     AS u(id, reset, failures, first_failure)
WHERE e.id = u.id AND (u.failures > 0 OR e.consecutive_failures > 0)
RETURNING e.id, e.organization_id, e.failing_since, e.consecutive_failures
"""


@dataclass(slots=True)
class _Streak:
    reset: bool = False
    failures: int = 0
    first_failure: datetime | None = None
    gone: bool = False
    last_error: str | None = None


async def record(
    session: AsyncSession, settings: Settings, finished: list[Finished], rng: random.Random
) -> int:
    """Write ``finished`` (in the order the attempts ended) in ``session``'s transaction
    (bound with ``bypass_rls``); the number of endpoints disabled."""
    s = settings
    log: list[list[Any]] = [[] for _ in range(9)]
    held: list[list[Any]] = [[] for _ in range(4)]
    streaks: dict[uuid.UUID, _Streak] = {}
    for done in finished:
        row, outcome, now = done.row, done.outcome, done.at
        attempts = row["attempts"] + 1
        status, next_at = outcome.kind, None
        if outcome.kind == "retry":
            delay = (
                min(outcome.retry_after_s, s.retry_max_delay_s)
                if outcome.retry_after_s is not None
                else backoff_s(s, attempts, rng)
            )
            next_at = now + timedelta(seconds=delay)
            expired = next_at > row["created_at"] + timedelta(seconds=s.retry_window_s)
            status = FAILED if expired else PENDING
            if status == PENDING:
                for column, value in zip(
                    held,
                    (row["endpoint_id"], row["ordering_key"], row["seq"], next_at),
                    strict=True,
                ):
                    column.append(value)
        elif outcome.kind == "gone":
            status = FAILED
        values = (
            row["id"],
            status,
            attempts,
            now,
            outcome.response_status,
            outcome.response_body or None,
            outcome.latency_ms,
            (outcome.error or "")[:500] or None,
            next_at if status == PENDING else None,
        )
        for column, value in zip(log, values, strict=True):
            column.append(value)
        streak = streaks.setdefault(row["endpoint_id"], _Streak())
        if outcome.kind == SUCCEEDED:
            streak.reset, streak.failures, streak.first_failure = True, 0, None
        else:
            streak.failures += 1
            streak.first_failure = streak.first_failure or now
            streak.gone = streak.gone or outcome.kind == "gone"
            streak.last_error = outcome.error
    conn = await rawpg.driver(session)
    await conn.execute(_LOG, *log)
    if held[0]:
        await conn.execute(_HOLD_BACK, *held)
    ids = list(streaks)
    failing = await conn.fetch(
        _STREAKS,
        ids,
        [streaks[i].reset for i in ids],
        [streaks[i].failures for i in ids],
        [streaks[i].first_failure for i in ids],
    )
    disabled = 0
    now = max(done.at for done in finished)
    for endpoint in failing:
        streak = streaks[endpoint["id"]]
        reason = None
        if streak.gone:
            reason = "the receiver answered 410 Gone"
        elif (
            endpoint["failing_since"] is not None
            and endpoint["consecutive_failures"] >= s.auto_disable_min_failures
            and (now - endpoint["failing_since"]).total_seconds() >= s.auto_disable_after_s
        ):
            hours = (now - endpoint["failing_since"]).total_seconds() / 3600
            reason = (
                f"every delivery failed for {hours:.0f} h "
                f"({endpoint['consecutive_failures']} attempts in a row); "
                f"last: {streak.last_error}"
            )
        if reason and await endpoint_rules.disable(
            session, endpoint["organization_id"], endpoint["id"], reason
        ):
            disabled += 1
    return disabled
