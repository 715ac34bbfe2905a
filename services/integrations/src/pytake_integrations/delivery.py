"""The delivery worker: POSTs queued deliveries, signed, retried, in order, isolated.

- **Order:** only the oldest pending delivery of each (endpoint, ordering key) — the
  conversation or contact — is ever claimed, so a receiver sees a conversation's events
  in order; a delivery being retried holds back the later ones of its conversation only.
- **Isolation:** at most ``endpoint_concurrency`` attempts per endpoint are in flight, each
  bounded by ``delivery_timeout_s``, on a connection pool of the endpoint's own: a hanging
  receiver holds its own slots and connections, never another endpoint's. Up to
  ``endpoint_window`` deliveries per endpoint are claimed at once and wait here for one
  of its slots (so a freed slot never waits for the database); an endpoint whose window
  is full is left out of the claim altogether.
- **Batches:** one statement claims the due deliveries of every endpoint with free
  slots (``FOR UPDATE SKIP LOCKED``, so workers in other pods skip rather than wait),
  and finished attempts are written down together (:func:`outcomes.record`): while one
  batch is being written the next one gathers, so the database work per delivery
  shrinks as the rate grows. Connections to a receiver are kept alive between
  deliveries.
- **At least once:** a claim is a lease (``lease_until``) in the database, so a crash
  mid-attempt (or before its outcome was written) leaves the row to be claimed again
  when the lease ends; receivers dedupe on ``PyTake-Delivery-Id``.
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
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg

from pytake_common import rawpg, ssrf
from pytake_common.aio import first_set
from pytake_common.crypto import SecretBox
from pytake_common.db import Database
from pytake_common.pgtenant import asyncpg_dsn
from pytake_integrations import endpoints as endpoint_rules
from pytake_integrations import outcomes, signing
from pytake_integrations.config import Settings
from pytake_integrations.outcomes import CLAIMED, FAILED, SUCCEEDED, Finished, Outcome
from pytake_integrations.queue import CHANNEL, UNPARK

log = logging.getLogger(__name__)

USER_AGENT = "PyTake-Webhooks/1"
MAX_RESPONSE_BODY = 1024
#: A receiver's pool unused this long is closed (its keep-alive connections with it).
IDLE_POOL_S = 300.0
#: How often parked deliveries that became first of their conversation are made due
#: (the usual way is the chained claim: this is the safety net; see queue.py).
UNPARK_EVERY_S = 10.0

# $1/$2: endpoints with attempts in flight here and how many; $3: the per-endpoint cap;
# $4: how many to claim at most; $5: the lease in seconds. Per endpoint with a free slot,
# its oldest due heads (the first pending delivery of their ordering key: one probe of
# ix_deliveries_pending each), at most
# its free slots; rows another worker is claiming right now are skipped, not waited for.
_CLAIM = f"""
WITH room AS (
    SELECT e.id, $3::int - coalesce(u.used, 0) AS free
    FROM endpoints e
    LEFT JOIN unnest($1::uuid[], $2::int[]) AS u(id, used) ON u.id = e.id
    WHERE e.status = 'enabled' AND $3::int - coalesce(u.used, 0) > 0
), due AS (
    SELECT c.id
    FROM room r
    CROSS JOIN LATERAL (
        SELECT d.id
        FROM deliveries d
        WHERE d.endpoint_id = r.id AND d.status = 'pending' AND d.next_attempt_at <= now()
          AND (d.lease_until IS NULL OR d.lease_until < now())
          AND d.seq = (
              SELECT min(p.seq) FROM deliveries p
              WHERE p.endpoint_id = d.endpoint_id AND p.ordering_key = d.ordering_key
                AND p.status = 'pending'
          )
        ORDER BY d.next_attempt_at, d.seq
        LIMIT r.free
        FOR UPDATE OF d SKIP LOCKED
    ) c
    LIMIT $4
)
UPDATE deliveries d SET lease_until = now() + make_interval(secs => $5)
FROM due, endpoints e
WHERE d.id = due.id AND e.id = d.endpoint_id
RETURNING {CLAIMED}
"""  # noqa: S608 (CLAIMED is a constant: no input in the text)


@dataclass(slots=True)
class _Pool:
    """One endpoint's keep-alive connections (at most its concurrency cap)."""

    url: str
    session: aiohttp.ClientSession
    used_at: float


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
        #: Deliveries claimed here and not finished, per endpoint (at most its window).
        self.claimed: dict[uuid.UUID, int] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self._slots: dict[uuid.UUID, asyncio.Semaphore] = {}
        self._attempts = asyncio.Semaphore(settings.delivery_concurrency)
        cap = settings.endpoint_concurrency
        self.window = max(settings.endpoint_window, cap)
        # A claimed delivery waits here for a slot of its endpoint; one still waiting when
        # its lease could end during the attempt is dropped (claimed again later), so the
        # lease need not cover the wait and a crashed worker's rows return soon.
        self.lease_s = settings.delivery_timeout_s + 60
        self.finished: list[Finished] = []
        self._wake = asyncio.Event()
        self._record = asyncio.Event()
        self._pools: dict[uuid.UUID, _Pool] = {}
        self._secrets: dict[str, str] = {}
        self._unpark_at = 0.0

    # --- running --------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        conn: asyncpg.Connection | None = None
        with contextlib.suppress(Exception):
            conn = await asyncpg.connect(asyncpg_dsn(self.db.url))
            await conn.add_listener(CHANNEL, lambda *_: self._wake.set())
        recorder = asyncio.create_task(self._recording(stop))
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    while await self.dispatch():
                        pass  # claimed some: there may be more due
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("delivery dispatch failed", extra={"error": repr(exc)})
                await first_set(self._wake, stop, timeout=self.settings.delivery_poll_interval_s)
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            recorder.cancel()
            await asyncio.gather(recorder, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.flush()  # what finished before the stop

    async def _recording(self, stop: asyncio.Event) -> None:
        """Write finished attempts down as they come; a batch gathers while one is written."""
        while not stop.is_set():
            await self._record.wait()
            self._record.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Kept for the next try; their leases keep them from being sent again
                # meanwhile (and if this process dies, they are sent again: at least once).
                log.warning("recording deliveries failed", extra={"error": repr(exc)})
                await asyncio.sleep(0.5)
                self._record.set()

    async def close(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            await pool.session.close()

    def http(self, endpoint_id: uuid.UUID, url: str) -> aiohttp.ClientSession:
        """The endpoint's own keep-alive pool (a new one when its URL changed)."""
        now = time.monotonic()
        pool = self._pools.get(endpoint_id)
        if pool is not None and pool.url == url:
            pool.used_at = now
            return pool.session
        if pool is not None:
            self._retire(pool)
        cap = self.settings.endpoint_concurrency
        connector = aiohttp.TCPConnector(
            resolver=self.resolver, use_dns_cache=False, limit=cap, limit_per_host=cap
        )
        session = aiohttp.ClientSession(
            connector=connector, trust_env=False, headers={"User-Agent": USER_AGENT}
        )
        self._pools[endpoint_id] = _Pool(url, session, now)
        return session

    def _retire(self, pool: _Pool) -> None:
        task = asyncio.create_task(pool.session.close())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _sweep(self) -> None:
        """Close the pools of endpoints nothing was sent to for ``IDLE_POOL_S``."""
        cutoff = time.monotonic() - IDLE_POOL_S
        for endpoint_id, pool in list(self._pools.items()):
            if pool.used_at < cutoff and not self.claimed.get(endpoint_id):
                del self._pools[endpoint_id]
                self._retire(pool)

    # --- claiming -------------------------------------------------------------------

    async def dispatch(self) -> int:
        """Claim what is due and start its attempts; the number started."""
        room = self.settings.delivery_concurrency * 16 - sum(self.claimed.values())
        if room <= 0:
            return 0
        self._sweep()
        if time.monotonic() >= self._unpark_at:
            self._unpark_at = time.monotonic() + UNPARK_EVERY_S
            async with rawpg.transaction(self.db, bypass_rls=True, durable=False) as conn:
                await conn.execute(rawpg.CUSTOM_PLANS)
                await conn.execute(UNPARK)
        busy = list(self.claimed)
        used = [self.claimed[e] for e in busy]
        async with rawpg.transaction(self.db, bypass_rls=True, durable=False) as conn:
            await conn.execute(rawpg.CUSTOM_PLANS)
            rows = await conn.fetch(_CLAIM, busy, used, self.window, room, self.lease_s)
        self._start([dict(row) for row in rows])
        return len(rows)

    def _start(self, rows: list[dict[str, Any]]) -> None:
        """Attempt ``rows``, just leased here (each counts in its endpoint's window until
        its outcome is written, or it ends without one)."""
        at = time.monotonic()
        for row in rows:
            endpoint_id = row["endpoint_id"]
            self.claimed[endpoint_id] = self.claimed.get(endpoint_id, 0) + 1
            task = asyncio.create_task(self._deliver(row, at))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _release(self, endpoint_id: uuid.UUID) -> None:
        held = self.claimed.get(endpoint_id, 1)
        if held > 1:
            self.claimed[endpoint_id] = held - 1
        else:
            self.claimed.pop(endpoint_id, None)
            self._slots.pop(endpoint_id, None)
        if held >= self.window:
            # Its window was full, so the claims left it out: due deliveries of its other
            # conversations may be waiting. (New deliveries wake the worker by NOTIFY; the
            # next one of a finished conversation is chained; retries come due by the poll.)
            self._wake.set()

    def _slot(self, endpoint_id: uuid.UUID) -> asyncio.Semaphore:
        slot = self._slots.get(endpoint_id)
        if slot is None:
            slot = self._slots[endpoint_id] = asyncio.Semaphore(self.settings.endpoint_concurrency)
        return slot

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Deliver everything due now, and wait for it (tests and benchmarks)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            started = await self.dispatch()
            attempts = [t for t in self.tasks if not t.done()]
            if attempts:
                await asyncio.wait(attempts, return_when=asyncio.FIRST_COMPLETED)
            if self.finished:
                await self.flush()
            elif not started and not attempts:
                return

    # --- one attempt ----------------------------------------------------------------

    async def _deliver(self, row: dict[str, Any], claimed_at: float) -> None:
        endpoint_id = row["endpoint_id"]
        outcome = None
        try:
            async with self._slot(endpoint_id), self._attempts:
                if time.monotonic() - claimed_at > self.lease_s - self.settings.delivery_timeout_s:
                    return  # its lease could end mid-attempt: left to the next claim
                outcome = await self.attempt(row)
            self.finished.append(Finished(row, outcome, datetime.now(UTC)))
            self._record.set()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery attempt failed", extra={"delivery_id": str(row["id"])})
        finally:
            if outcome is None:  # nothing to write: its lease ends by itself
                self._release(endpoint_id)

    async def flush(self) -> int:
        """Write down the attempts finished so far, in one transaction; how many."""
        batch, self.finished = self.finished, []
        if not batch:
            return 0
        try:
            # Not durable: losing this write in a database crash only sends these again.
            async with rawpg.transaction(self.db, bypass_rls=True, durable=False) as conn:
                await conn.execute(rawpg.CUSTOM_PLANS)
                done = await outcomes.record(conn, self.settings, batch, self.rng, self.lease_s)
        except BaseException:
            self.finished[:0] = batch
            raise
        for finished in batch:
            self._release(finished.row["endpoint_id"])
        self._start(done.chained)
        if done.disable:
            async with self.db.transaction(bypass_rls=True) as session:
                for org, endpoint_id, reason in done.disable:
                    await endpoint_rules.disable(session, org, endpoint_id, reason)
        return len(batch)

    def _decrypt(self, token: str) -> str:
        """``SecretBox.decrypt`` remembered per token: an endpoint's secret is decrypted
        once, not on every delivery (a rotation makes a new token: nothing goes stale)."""
        plain = self._secrets.get(token)
        if plain is None:
            if len(self._secrets) > 10_000:
                self._secrets.clear()
            plain = self._secrets[token] = self.box.decrypt(token)
        return plain

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
        secrets = endpoint_rules.signing_secrets(self._decrypt, row, now)
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
            async with self.http(row["endpoint_id"], url).post(
                url, data=body, headers=headers, allow_redirects=False, timeout=timeout
            ) as response:
                raw = await response.content.read(MAX_RESPONSE_BODY)
                latency = int((time.perf_counter() - started) * 1000)
                kind = outcomes.classify(response.status)
                return Outcome(
                    kind,
                    response_status=response.status,
                    response_body=raw.decode("utf-8", "replace"),
                    latency_ms=latency,
                    error=None if kind == SUCCEEDED else f"HTTP {response.status}",
                    retry_after_s=outcomes.retry_after(response.headers.get("Retry-After"), now),
                )
        except TimeoutError:
            latency = int((time.perf_counter() - started) * 1000)
            return Outcome("retry", latency_ms=latency, error="timed out")
        except aiohttp.ClientError as exc:
            refused = ssrf.refusal_in(exc)
            if refused is not None:
                return Outcome(FAILED, error=f"destination refused: {refused}")
            return Outcome("retry", error=f"connection failed: {type(exc).__name__}")


def _refusal_in(exc: BaseException) -> str | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssrf.DestinationRefused):
            return str(seen)
        seen = seen.__cause__ or getattr(seen, "os_error", None)
        if seen is exc:
            break
    return None
