"""The delivery worker: POSTs queued deliveries, signed, retried, in order, isolated.

- **Order:** only the oldest pending delivery of each (endpoint, ordering key) — the
  conversation or contact — is ever claimed, so a receiver sees a conversation's events
  in order; a delivery being retried holds back the later ones of its conversation only.
- **Isolation:** at most ``endpoint_concurrency`` attempts per endpoint are in flight and
  each is bounded by ``delivery_timeout_s``, so a hanging receiver holds its own slots,
  never another endpoint's.
- **At least once:** a claim is a lease (``lease_until``) in the database, so a crash
  mid-attempt leaves the row to be claimed again when the lease ends; receivers dedupe on
  ``PyTake-Delivery-Id``.
- **Retries:** timeouts, connection errors, 408, 429 and 5xx are retried with exponential
  backoff and jitter (or after ``Retry-After``) until ``retry_window_s`` after the event;
  ``410 Gone`` disables the endpoint; a day of failures without a success disables it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
from sqlalchemy import bindparam, func, text, update
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from pytake_common import ssrf
from pytake_common.crypto import SecretBox
from pytake_common.db import Database
from pytake_common.pgtenant import asyncpg_dsn
from pytake_integrations import endpoints as endpoint_rules
from pytake_integrations import signing
from pytake_integrations.config import Settings
from pytake_integrations.queue import CHANNEL
from pytake_integrations.tables import deliveries, endpoints

log = logging.getLogger(__name__)

SUCCEEDED, FAILED, PENDING = "succeeded", "failed", "pending"
USER_AGENT = "PyTake-Webhooks/1"
MAX_RESPONSE_BODY = 1024

_CLAIM = text(
    """
WITH heads AS (
    SELECT DISTINCT ON (d.endpoint_id, d.ordering_key) d.id
    FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id AND e.status = 'enabled'
    WHERE d.status = 'pending'
    ORDER BY d.endpoint_id, d.ordering_key, d.seq
), due AS (
    SELECT d.id,
           row_number() OVER (PARTITION BY d.endpoint_id ORDER BY d.next_attempt_at, d.seq) AS n
    FROM deliveries d
    JOIN heads h ON h.id = d.id
    WHERE d.next_attempt_at <= now()
      AND (d.lease_until IS NULL OR d.lease_until < now())
      AND NOT (d.endpoint_id = ANY(:busy))
    ORDER BY d.next_attempt_at, d.seq
    LIMIT :limit
)
UPDATE deliveries d SET lease_until = now() + make_interval(secs => :lease)
FROM due, endpoints e
WHERE d.id = due.id AND due.n <= :per_endpoint AND e.id = d.endpoint_id
  AND (d.lease_until IS NULL OR d.lease_until < now())
RETURNING d.id, d.organization_id, d.endpoint_id, d.event_id, d.event_type, d.body,
          d.attempts, d.created_at, e.url, e.secret_enc, e.previous_secret_enc,
          e.previous_secret_expires_at, e.consecutive_failures
"""
).bindparams(bindparam("busy", type_=ARRAY(UUID(as_uuid=True))))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to."""

    kind: str  # succeeded | retry | failed | gone
    response_status: int | None = None
    response_body: str | None = None
    latency_ms: int | None = None
    error: str | None = None
    retry_after_s: float | None = None


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


class DeliveryWorker:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        box: SecretBox,
        lookup: ssrf.Lookup = ssrf.system_lookup,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.box = box
        self.resolver = ssrf.VettingResolver(
            lookup, allow_loopback=settings.webhooks_allow_loopback
        )
        self.rng = rng or random.Random()
        self.inflight: dict[uuid.UUID, int] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None

    # --- running --------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        conn: asyncpg.Connection | None = None
        with contextlib.suppress(Exception):
            conn = await asyncpg.connect(asyncpg_dsn(self.db.url))
            await conn.add_listener(CHANNEL, lambda *_: self._wake.set())
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    await self.dispatch()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("delivery dispatch failed", extra={"error": repr(exc)})
                waiters = [asyncio.ensure_future(e.wait()) for e in (self._wake, stop)]
                try:
                    await asyncio.wait(
                        waiters,
                        timeout=self.settings.delivery_poll_interval_s,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    for w in waiters:
                        w.cancel()
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            connector = aiohttp.TCPConnector(
                resolver=self.resolver,
                use_dns_cache=False,
                limit=self.settings.delivery_concurrency,
                limit_per_host=self.settings.endpoint_concurrency,
            )
            self._http = aiohttp.ClientSession(
                connector=connector, trust_env=False, headers={"User-Agent": USER_AGENT}
            )
        return self._http

    async def dispatch(self) -> int:
        """Claim what is due and start its attempts; the number started."""
        cap = self.settings.endpoint_concurrency
        room = self.settings.delivery_concurrency - len(self.tasks)
        if room <= 0:
            return 0
        busy = [e for e, n in self.inflight.items() if n >= cap]
        lease = self.settings.delivery_timeout_s + 30
        async with self.db.transaction(bypass_rls=True) as session:
            rows = (
                (
                    await session.execute(
                        _CLAIM,
                        {"busy": busy, "limit": room, "lease": lease, "per_endpoint": cap},
                    )
                )
                .mappings()
                .all()
            )
            extra: list[uuid.UUID] = []
            started: list[dict[str, Any]] = []
            for row in rows:
                if self.inflight.get(row["endpoint_id"], 0) >= cap:
                    extra.append(row["id"])
                    continue
                self.inflight[row["endpoint_id"]] = self.inflight.get(row["endpoint_id"], 0) + 1
                started.append(dict(row))
            if extra:
                await session.execute(
                    update(deliveries).where(deliveries.c.id.in_(extra)).values(lease_until=None)
                )
        for claimed in started:
            task = asyncio.create_task(self._deliver(claimed))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return len(started)

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Deliver everything due now, and wait for it (tests and benchmarks)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            started = await self.dispatch()
            if self.tasks:
                await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
            elif not started:
                return

    # --- one attempt ----------------------------------------------------------------

    async def _deliver(self, row: dict[str, Any]) -> None:
        try:
            outcome = await self.attempt(row)
            await self.record(row, outcome)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery bookkeeping failed", extra={"delivery_id": str(row["id"])})
        finally:
            left = self.inflight.get(row["endpoint_id"], 1) - 1
            if left > 0:
                self.inflight[row["endpoint_id"]] = left
            else:
                self.inflight.pop(row["endpoint_id"], None)
            self._wake.set()

    async def attempt(self, row: dict[str, Any]) -> Outcome:
        url = row["url"]
        host = urlsplit(url).hostname or ""
        address = ssrf.literal(host)
        if address is not None:
            why = ssrf.refusal(address, allow_loopback=self.settings.webhooks_allow_loopback)
            if why:
                return Outcome(FAILED, error=f"destination refused: {host} is {why}")
        now = datetime.now(UTC)
        body = row["body"].encode()
        secrets = endpoint_rules.signing_secrets(self.box, row, now)
        headers = {
            "Content-Type": "application/json",
            signing.HEADER: signing.sign(body, secrets, int(now.timestamp())),
            "PyTake-Delivery-Id": str(row["id"]),
            "PyTake-Event-Id": str(row["event_id"]),
            "PyTake-Event-Type": row["event_type"],
            "PyTake-Attempt": str(row["attempts"] + 1),
        }
        started = time.perf_counter()
        timeout = aiohttp.ClientTimeout(total=self.settings.delivery_timeout_s)
        try:
            async with self.http().post(
                url, data=body, headers=headers, allow_redirects=False, timeout=timeout
            ) as response:
                raw = await response.content.read(MAX_RESPONSE_BODY)
                latency = int((time.perf_counter() - started) * 1000)
                kind = classify(response.status)
                return Outcome(
                    kind,
                    response_status=response.status,
                    response_body=raw.decode("utf-8", "replace"),
                    latency_ms=latency,
                    error=None if kind == SUCCEEDED else f"HTTP {response.status}",
                    retry_after_s=retry_after(response.headers.get("Retry-After"), now),
                )
        except TimeoutError:
            latency = int((time.perf_counter() - started) * 1000)
            return Outcome("retry", latency_ms=latency, error="timed out")
        except aiohttp.ClientError as exc:
            refused = ssrf.refusal_in(exc)
            if refused is not None:
                return Outcome(FAILED, error=f"destination refused: {refused}")
            return Outcome("retry", error=f"connection failed: {type(exc).__name__}")

    async def record(self, row: dict[str, Any], outcome: Outcome) -> None:
        s = self.settings
        now = datetime.now(UTC)
        attempts = row["attempts"] + 1
        status, next_at = outcome.kind, None
        if outcome.kind == "retry":
            delay = (
                min(outcome.retry_after_s, s.retry_max_delay_s)
                if outcome.retry_after_s is not None
                else backoff_s(s, attempts, self.rng)
            )
            next_at = now + timedelta(seconds=delay)
            expired = next_at > row["created_at"] + timedelta(seconds=s.retry_window_s)
            status = FAILED if expired else PENDING
        elif outcome.kind == "gone":
            status = FAILED
        values: dict[str, Any] = {
            "status": status,
            "attempts": attempts,
            "lease_until": None,
            "last_attempt_at": now,
            "response_status": outcome.response_status,
            "response_body": (outcome.response_body or None),
            "latency_ms": outcome.latency_ms,
            "last_error": (outcome.error or "")[:500] or None,
        }
        if status == PENDING:
            values["next_attempt_at"] = next_at
        else:
            values["completed_at"] = now
        org = row["organization_id"]
        async with self.db.transaction(organization_id=org) as session:
            await session.execute(
                update(deliveries).where(deliveries.c.id == row["id"]).values(**values)
            )
            ep = endpoints.c
            if outcome.kind == SUCCEEDED:
                if row["consecutive_failures"]:  # as claimed: a healthy endpoint costs nothing
                    await session.execute(
                        update(endpoints)
                        .where(ep.id == row["endpoint_id"])
                        .values(failing_since=None, consecutive_failures=0)
                    )
                return
            failing = (
                await session.execute(
                    update(endpoints)
                    .where(ep.id == row["endpoint_id"])
                    .values(
                        failing_since=func.coalesce(ep.failing_since, now),
                        consecutive_failures=ep.consecutive_failures + 1,
                    )
                    .returning(ep.failing_since, ep.consecutive_failures)
                )
            ).first()
            if failing is None:
                return  # the endpoint was deleted meanwhile
            reason = None
            if outcome.kind == "gone":
                reason = "the receiver answered 410 Gone"
            elif (
                failing.consecutive_failures >= s.auto_disable_min_failures
                and (now - failing.failing_since).total_seconds() >= s.auto_disable_after_s
            ):
                hours = (now - failing.failing_since).total_seconds() / 3600
                reason = (
                    f"every delivery failed for {hours:.0f} h "
                    f"({failing.consecutive_failures} attempts in a row); last: {outcome.error}"
                )
            if reason:
                await endpoint_rules.disable(session, org, row["endpoint_id"], reason)
