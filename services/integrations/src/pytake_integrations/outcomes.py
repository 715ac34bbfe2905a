"""What an attempt came to, and how a batch of them is written down.

The rules (:func:`classify`, :func:`retry_after`, :func:`backoff_s`) decide one
attempt's fate; :func:`record` writes the outcomes of many attempts in one statement
(the log, and the next delivery of each conversation claimed at once), plus
one for the endpoints' failure streaks only when something failed or an endpoint was
failing, and says which endpoints to disable (a 410, a day of failures).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import asyncpg

from pytake_integrations.config import Settings
from pytake_integrations.queue import LOCK_LANES

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


#: What a claim returns of a delivery and its endpoint (the worker's claim uses it too).
CLAIMED = """d.id, d.organization_id, d.endpoint_id, d.event_id, d.event_type, d.body,
          d.ordering_key, d.seq, d.attempts, d.created_at, e.url, e.secret_enc,
          e.previous_secret_enc, e.previous_secret_expires_at, e.consecutive_failures"""

# A batch of finished attempts, in one statement whatever its size: the rows (the log),
# and the next delivery of each conversation whose delivery is done, claimed at once and
# un-parked (see :mod:`pytake_integrations.queue`): it does not wait for the worker's
# next claim. Nobody else can claim it meanwhile: until this commits, the finished one is
# still the pending head of its conversation. A retried delivery keeps the later ones of
# its conversation parked. $1..$12: the finished attempts; $13: the lease in seconds.
_FINISH = f"""
WITH u AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::timestamptz[], $5::int[],
                         $6::text[], $7::int[], $8::text[], $9::timestamptz[], $10::uuid[],
                         $11::text[], $12::bigint[])
         AS u(id, status, attempts, at, response_status, response_body, latency_ms,
              last_error, next_at, endpoint_id, ordering_key, seq)
), logged AS (
    UPDATE deliveries d
    SET status = u.status, attempts = u.attempts, lease_until = NULL, last_attempt_at = u.at,
        response_status = u.response_status, response_body = u.response_body,
        latency_ms = u.latency_ms, last_error = u.last_error,
        next_attempt_at = coalesce(u.next_at, d.next_attempt_at),
        completed_at = CASE WHEN u.status = 'pending' THEN d.completed_at ELSE u.at END
    FROM u WHERE d.id = u.id
    RETURNING d.id
), next AS (
    SELECT n.id
    FROM u CROSS JOIN LATERAL (
        SELECT p.id FROM deliveries p
        WHERE p.endpoint_id = u.endpoint_id AND p.ordering_key = u.ordering_key
          AND p.status = 'pending' AND p.seq > u.seq
        ORDER BY p.seq LIMIT 1
        FOR UPDATE
    ) n
    WHERE u.status <> 'pending'
)
UPDATE deliveries d
SET lease_until = now() + make_interval(secs => $13),
    next_attempt_at = least(d.next_attempt_at, now())
FROM endpoints e
-- an array, not a join: the planner cannot size a CTE and scanned every delivery
WHERE d.id = ANY(ARRAY(SELECT id FROM next)) AND e.id = d.endpoint_id AND e.status = 'enabled'
  AND (d.lease_until IS NULL OR d.lease_until < now())
RETURNING {CLAIMED}
"""  # noqa: S608 (CLAIMED is a constant: no input in the text)

# Failure streaks: ``reset`` when the batch holds a success (the streak is then the
# failures after the last one); a healthy endpoint is not written.
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
    was_failing: bool = False


@dataclass(frozen=True, slots=True)
class Recorded:
    """What writing a batch came to: the deliveries claimed next (chained), and the
    endpoints to disable ``(organization, endpoint, reason)``."""

    chained: list[dict[str, Any]]
    disable: list[tuple[uuid.UUID, uuid.UUID, str]]


async def record(
    conn: asyncpg.Connection,
    settings: Settings,
    finished: list[Finished],
    rng: random.Random,
    lease_s: float,
) -> Recorded:
    """Write ``finished`` (in the order the attempts ended) on ``conn``, in a transaction
    bound with ``bypass_rls``; the deliveries chained and the endpoints to disable."""
    s = settings
    columns: list[list[Any]] = [[] for _ in range(12)]
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
            row["endpoint_id"],
            row["ordering_key"],
            row["seq"],
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
        streak = streaks.setdefault(row["endpoint_id"], _Streak())
        streak.was_failing = streak.was_failing or bool(row["consecutive_failures"])
        if outcome.kind == SUCCEEDED:
            streak.reset, streak.failures, streak.first_failure = True, 0, None
        else:
            streak.failures += 1
            streak.first_failure = streak.first_failure or now
            streak.gone = streak.gone or outcome.kind == "gone"
            streak.last_error = outcome.error
    # Before the statement that looks for the next deliveries (its own snapshot): see queue.py.
    await conn.fetchval(LOCK_LANES, columns[9], columns[10])
    chained = [dict(r) for r in await conn.fetch(_FINISH, *columns, lease_s)]
    # As claimed: an endpoint that was healthy and only succeeded costs nothing more.
    ids = [e for e, st in streaks.items() if st.failures or st.was_failing]
    if not ids:
        return Recorded(chained, [])
    failing = await conn.fetch(
        _STREAKS,
        ids,
        [streaks[i].reset for i in ids],
        [streaks[i].failures for i in ids],
        [streaks[i].first_failure for i in ids],
    )
    now = max(done.at for done in finished)
    disable: list[tuple[uuid.UUID, uuid.UUID, str]] = []
    for endpoint in failing:
        streak = streaks[endpoint["id"]]
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
        else:
            continue
        disable.append((endpoint["organization_id"], endpoint["id"], reason))
    return Recorded(chained, disable)
