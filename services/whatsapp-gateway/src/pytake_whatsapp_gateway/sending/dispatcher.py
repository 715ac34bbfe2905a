"""The send queue: requests recorded by the consumer, sent concurrently by dispatchers.

The consumer only records a request (``send_queue``, in its inbox transaction),
so a number paced at its throughput never holds up other tenants' messages on
the same partition. Dispatchers (one per replica, ``send_concurrency`` sends in
flight each) take requests with a lease (``FOR UPDATE SKIP LOCKED``), only the
oldest request of each (number, recipient) at a time, so a customer receives
messages in the order they were asked for.

Per number, requests have a priority: ``interactive`` (agents, API clients) are taken
first and without limit; ``automation`` then ``campaign`` only while fewer than
``send_background_ahead_s`` of the number's throughput of them hold a slot of its
schedule that has not begun yet (taken, and either not claimed yet or with ``slot_at``
ahead), so an agent's reply queued behind ten thousand campaign sends waits for at most
those few slots. A send whose slot began no longer holds room: its HTTP call and its
record do not delay the next claim (counting every send in flight, a number's rate was at
most room / (ahead + that time); docs/benchmarks.md has the A/B). An interactive request
never waits for a background one to the same customer (same-priority ones keep their
order). The exactly-once rules live in
:class:`~pytake_whatsapp_gateway.sending.sender.Sender`; a request is deleted
once its outcome is recorded.

A dispatcher does not poll a busy queue: it LISTENs on ``pytake_send_queue``
(each request's insert NOTIFYs in the same statement, delivered at commit), and
wakes when one of its sends ends (a free slot, and maybe the next request of the
same customer) and when the earliest requeued request falls due. The slow poll
(``send_poll_interval_s``) only catches what no notification covers: a lost
notification, another replica's requeued or abandoned request.

A lease is short (``send_lease_s``, 15 s) and renewed: every third of it, each dispatcher
extends the leases of the requests it has in flight, in one statement. A live send however
long (pacing, Meta slow, retries) keeps its request; a killed process's requests return
to the queue within a lease, instead of holding the number's background room (and its
customers' next messages) until a long lease ends. Exactly-once does not rest on the
lease: a request taken again while its first attempt lives waits for that attempt's
advisory lock and then finds its outcome (:class:`~pytake_whatsapp_gateway.sending.sender.Sender`).
A renewal that fails (the database restarting) is tried again a second later; a dispatcher
that stops hands back the leases of the sends it leaves in flight.

A wake-up looks only where something may have changed, as a campaign drains one send
per throughput slot and a look per send ending cost a transaction per send: interactive
requests after a notification of one (the payload is the request's priority), the end of
an interactive send, a timer (a due time, the poll), or a look that filled every free
slot; background requests at most every third of ``send_background_ahead_s`` (the sends
still in flight keep at least two thirds of their schedule ahead meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common import rawpg
from pytake_common.aio import sleep_or_stop
from pytake_common.db import Database
from pytake_common.pgtenant import asyncpg_dsn
from pytake_common.rawpg import driver
from pytake_whatsapp_gateway.config import Settings
from pytake_whatsapp_gateway.sending.sender import Outbound, Sender

log = logging.getLogger(__name__)

#: A number's interactive requests (agents, API clients), oldest first, only the oldest
#: interactive one of each (number, recipient) at a time: they never wait for background
#: requests, even to the same customer.
_TAKE = """
    UPDATE send_queue SET taken_until = clock_timestamp() + make_interval(secs => $2),
      slot_at = NULL
    WHERE seq IN (
      SELECT q.seq FROM send_queue q
      WHERE q.priority = 0
        AND q.not_before <= clock_timestamp()
        AND (q.taken_until IS NULL OR q.taken_until < clock_timestamp())
        AND NOT EXISTS (
          SELECT 1 FROM send_queue p
          WHERE p.number_id = q.number_id AND p.recipient_key = q.recipient_key
            AND p.seq < q.seq AND p.priority = 0)
      ORDER BY q.seq
      LIMIT $1
      FOR UPDATE SKIP LOCKED)
    RETURNING seq, number_id, recipient_key, request
"""

#: Background requests (automation, then campaign), per number at most ``room``:
#: ``ceil(throughput * $3)`` (``$3``: seconds ahead) minus those taken whose slot has not
#: begun (or is not taken yet). So an interactive request taken meanwhile waits behind at
#: most ``$3`` seconds of them, however many thousands are queued. Per number a LATERAL
#: look on ``ix_send_queue_background`` stops after ``room`` rows. ``$1``: at most so many,
#: ``$2``: the lease in seconds.
_TAKE_BACKGROUND = """
    WITH candidates AS (
      SELECT c.seq, c.priority
      FROM numbers n
      CROSS JOIN LATERAL (
        SELECT greatest(ceil(n.throughput_per_second * $3::float8)::int, 1) - (
          SELECT count(*) FROM send_queue b
          WHERE b.number_id = n.id AND b.priority > 0
            AND b.taken_until IS NOT NULL AND b.taken_until >= clock_timestamp()
            AND (b.slot_at IS NULL OR b.slot_at > clock_timestamp())
        ) AS room
      ) r
      CROSS JOIN LATERAL (
        SELECT q.seq, q.priority FROM send_queue q
        WHERE q.number_id = n.id AND q.priority > 0
          AND q.not_before <= clock_timestamp()
          AND (q.taken_until IS NULL OR q.taken_until < clock_timestamp())
          AND NOT EXISTS (
            SELECT 1 FROM send_queue p
            WHERE p.number_id = q.number_id AND p.recipient_key = q.recipient_key
              AND p.seq < q.seq AND p.priority <= q.priority)
        ORDER BY q.priority, q.seq
        LIMIT greatest(r.room, 0)
      ) c
      WHERE r.room > 0
    )
    UPDATE send_queue SET taken_until = clock_timestamp() + make_interval(secs => $2),
      slot_at = NULL
    WHERE seq IN (
      SELECT s.seq FROM send_queue s
      WHERE s.seq IN (SELECT seq FROM candidates ORDER BY priority, seq LIMIT $1)
      FOR UPDATE SKIP LOCKED)
    RETURNING seq, number_id, recipient_key, request
"""

#: ``MessageSendRequested.priority`` -> ``send_queue.priority`` (unknown: interactive)
PRIORITIES = {"interactive": 0, "automation": 1, "campaign": 2}


#: NOTIFY channel of new send requests (payload unused).
CHANNEL = "pytake_send_queue"
#: How often a dispatcher without its LISTEN connection looks at the queue.
UNLISTENED_POLL_S = 0.05
#: With fewer than a quarter of its send slots free, a woken dispatcher waits this
#: long for more sends to end before taking requests.
GATHER_S = 0.02
#: The share of ``send_background_ahead_s`` between two looks for background requests.
BACKGROUND_GATHER_SHARE = 1 / 3

#: Seconds until the earliest requeued request (not taken) falls due; NULL if none.
_NEXT_DUE = """
    SELECT extract(epoch FROM min(not_before) - clock_timestamp())::float8
    FROM send_queue
    WHERE not_before > clock_timestamp()
      AND (taken_until IS NULL OR taken_until < clock_timestamp())
"""
#: Back to the queue (``$1``), due in ``$2`` seconds; due now if its send is settled
#: already (Meta's status webhook confirmed it between the sender's commit and this one,
#: and its wake-up found the request still taken).
_RELEASE = """
    UPDATE send_queue q
    SET taken_until = NULL, slot_at = NULL,
        not_before = clock_timestamp() + CASE
          WHEN EXISTS (SELECT 1 FROM send_log g
                       WHERE g.message_id = q.message_id AND g.state IN ('sent', 'failed'))
          THEN interval '0' ELSE make_interval(secs => $2) END
    WHERE seq = $1
"""

#: Extends the leases of a dispatcher's requests in flight (``$1``) by ``$2`` seconds;
#: a request it released meanwhile (``taken_until`` NULL, due later) stays released.
#: It never waits for a row lock (so never deadlocks with another replica's renewal):
#: a locked row is being settled, released or taken afresh by whoever holds it.
_RENEW = """
    UPDATE send_queue SET taken_until = clock_timestamp() + make_interval(secs => $2)
    WHERE seq IN (
      SELECT seq FROM send_queue
      WHERE seq = ANY($1::bigint[]) AND taken_until IS NOT NULL
      FOR UPDATE SKIP LOCKED)
"""
#: Hands back the leases of requests whose sends a stopping dispatcher leaves in flight
#: (each send's advisory lock still keeps another attempt waiting for its outcome).
_HAND_BACK = """
    UPDATE send_queue SET taken_until = NULL, slot_at = NULL
    WHERE seq = ANY($1::bigint[]) AND taken_until IS NOT NULL
"""
#: The share of ``send_lease_s`` between two renewals of a dispatcher's leases.
RENEW_SHARE = 1 / 3
#: After a renewal failed, the next one is tried this much later (if sooner).
RENEW_RETRY_S = 1.0

#: Records a request (a redelivered one is known already: no row) and wakes the
#: dispatchers at commit, telling its priority. Raw asyncpg (pytake_common.rawpg): the
#: consumer runs it per record.
_ENQUEUE = """
    INSERT INTO send_queue (message_id, organization_id, number_id, recipient_key, request,
                            priority)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (message_id) DO NOTHING
    RETURNING seq, pg_notify('pytake_send_queue', priority::text)
"""


def recipient_key(number_id: object, to: str) -> str:
    return hashlib.sha256(f"{number_id}:{to}".encode()).hexdigest()


async def enqueue(session: AsyncSession, out: Outbound) -> bool:
    """Record a send request in the caller's transaction; False if it is known already."""
    conn = await driver(session)
    seq = await conn.fetchval(
        _ENQUEUE,
        out.message_id,
        out.organization_id,
        out.number_id,
        recipient_key(out.number_id, out.to),
        json.dumps(out.to_json()),  # jsonb travels as text on the raw connection
        PRIORITIES.get(out.priority, 0),
    )
    return seq is not None


class Dispatcher:
    #: How long stopping waits for the sends in flight before it hands their leases
    #: back (inside the service's 10 s graceful shutdown, within Kubernetes' 30 s).
    stop_wait_s: float = 10.0

    def __init__(self, settings: Settings, db: Database, sender: Sender) -> None:
        self.settings = settings
        self.db = db
        self.sender = sender
        self._tasks: set[asyncio.Task[None]] = set()
        #: The queue row (``seq``) of each send in flight: its lease is renewed.
        self._leased: dict[asyncio.Task[None], int] = {}
        #: The sends in flight that are interactive (their end may free the next one).
        self._interactive: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        #: True while the LISTEN connection is up (else the queue is polled quickly).
        self.listening = False
        self._batch = max(settings.send_concurrency // 4, 1)
        #: Where the next look may find something (see the module's docstring).
        self._look_interactive = True
        self._look_background = True
        #: Not before (monotonic) is the queue looked at for background requests again.
        self._background_at = 0.0
        #: When (monotonic) the earliest requeued request falls due, if known.
        self._due_at: float | None = None
        self._background_gather_s = settings.send_background_ahead_s * BACKGROUND_GATHER_SHARE

    async def run(self, stop: asyncio.Event) -> None:
        listener = asyncio.create_task(self._listen(stop))
        # Renews until the sends in flight at the stop ended or were handed back.
        renewer = asyncio.create_task(self._renew_while_running())
        # Stopping wakes the loop below like any other reason to look again.
        stopping = asyncio.create_task(stop.wait())
        stopping.add_done_callback(lambda _: self._wake.set())
        try:
            while not stop.is_set():
                # Cleared before looking: a wake-up during the look is not lost.
                self._wake.clear()
                try:
                    await self._look()
                except Exception as exc:  # the database restarting, ...: keep going
                    log.warning("send dispatcher error", extra={"error": repr(exc)})
                    self._look_interactive = self._look_background = True
                timeout, gated = self._next_look_in()
                try:
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                except TimeoutError:
                    # The poll or a due time: anything may be due (the background gate
                    # opening: what was waiting for it).
                    if not gated:
                        self._look_interactive = self._look_background = True
                if self.settings.send_concurrency - len(self._tasks) < self._batch:
                    # Sends end one at a time: a take per ending would cost a transaction
                    # per send. The sends still in flight hold the schedule ahead
                    # (3/4 of send_concurrency slots) far longer than this gathering.
                    await sleep_or_stop(stop, GATHER_S)
        finally:
            stopping.cancel()
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            try:
                if self._tasks:
                    await asyncio.wait(self._tasks, timeout=self.stop_wait_s)
            finally:
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewer
                await self._hand_back()

    async def _renew_while_running(self) -> None:
        """Renew the leases of the sends in flight every ``RENEW_SHARE`` of the lease."""
        every = self.settings.send_lease_s * RENEW_SHARE
        pause = every
        while True:
            await asyncio.sleep(pause)
            try:
                await self.renew_leases()
                pause = every
            except Exception as exc:  # the database restarting, ...: try again soon
                log.warning("renewing send leases failed", extra={"error": repr(exc)})
                pause = min(RENEW_RETRY_S, every)

    async def renew_leases(self) -> int:
        """Extend the leases of this dispatcher's requests in flight; how many."""
        seqs = sorted(set(self._leased.values()))
        if not seqs:
            return 0
        async with rawpg.transaction(self.db, bypass_rls=True, durable=False) as conn:
            # Not durable: a renewal lost in a database crash is made again next time.
            status = await conn.execute(_RENEW, seqs, self.settings.send_lease_s)
        return int(status.split()[-1])

    async def _hand_back(self) -> None:
        """Stopping: hand back the leases of the sends left in flight (best effort: else
        they end within a lease)."""
        seqs = sorted(set(self._leased.values()))
        if not seqs:
            return
        try:
            async with rawpg.transaction(self.db, bypass_rls=True) as conn:
                await conn.execute(_HAND_BACK, seqs)
        except Exception as exc:
            log.warning("handing back send leases failed", extra={"error": repr(exc)})

    async def _listen(self, stop: asyncio.Event) -> None:
        """Keep a LISTEN connection open; every notification wakes the dispatcher."""
        backoff = 0.5
        while not stop.is_set():
            try:
                await self._listen_once(stop)
                backoff = 0.5
            except Exception as exc:
                log.warning("send queue listener down", extra={"error": repr(exc)})
                await sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 30.0)

    async def _listen_once(self, stop: asyncio.Event) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(asyncpg_dsn(self.db.url))
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _: lost.set())
            await conn.add_listener(CHANNEL, self._on_notify)
            self.listening = True
            self._wake.set()  # anything enqueued while not listening
            while not (stop.is_set() or lost.is_set()):
                await sleep_or_stop(stop, 1.0)
        finally:
            self.listening = False
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        # The new request's priority ('' from a replica of before it was told: any).
        if payload in ("", "0"):
            self._look_interactive = True
        self._look_background = True
        self._wake.set()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._leased.pop(task, None)
        if task in self._interactive:
            # Maybe the same customer's next interactive request.
            self._interactive.discard(task)
            self._look_interactive = True
        self._look_background = True  # a free slot
        self._wake.set()

    async def dispatch_once(self) -> int:
        """Take as many requests as there are free send slots and start them."""
        return (await self._take(interactive=True, background=True))[0]

    def _next_look_in(self) -> tuple[float, bool]:
        """How long to wait for a wake-up at most, and whether that is the background gate
        opening (rather than the poll or a due time)."""
        poll = self.settings.send_poll_interval_s
        if not self.listening:
            poll = min(poll, UNLISTENED_POLL_S)
        if len(self._tasks) >= self.settings.send_concurrency:
            return poll, False  # a send ending wakes the loop
        now = time.monotonic()
        timeout = poll
        if self._due_at is not None:
            timeout = min(timeout, max(self._due_at - now, 0.0))
        if self._look_background and self._background_at - now < timeout:
            return max(self._background_at - now, 0.0), True
        return timeout, False

    async def _look(self) -> None:
        """Take what may have become due since the last look (see the module's docstring)."""
        interactive = self._look_interactive
        background = self._look_background and time.monotonic() >= self._background_at
        if len(self._tasks) >= self.settings.send_concurrency:
            # No free slot: a send ending wakes the loop; whatever fell due meanwhile
            # is looked for then.
            if self._due_at is not None and self._due_at <= time.monotonic():
                self._due_at = None
                self._look_interactive = True
            return
        if not (interactive or background):
            return
        self._look_interactive = False
        if background:
            self._look_background = False
        taken, free, due = await self._take(interactive=interactive, background=background)
        self._due_at = None if due is None else time.monotonic() + due
        if taken >= free:  # every free slot filled: more may be due
            self._look_interactive = self._look_background = True

    async def _take(self, *, interactive: bool, background: bool) -> tuple[int, int, float | None]:
        """(requests taken and started, free slots there were, seconds until the earliest
        requeued request falls due when the queue had nothing more due now, else None).

        One transaction on plain asyncpg (pytake_common.rawpg).
        """
        free = self.settings.send_concurrency - len(self._tasks)
        if free <= 0:
            return 0, 0, None
        lease = self.settings.send_lease_s
        due: float | None = None
        async with rawpg.transaction(self.db, bypass_rls=True) as conn:
            rows = list(await conn.fetch(_TAKE, free, lease)) if interactive else []
            firsts = len(rows)
            # One slot stays free for an interactive request arriving meanwhile.
            spare = free - len(rows) - (1 if self.settings.send_concurrency > 1 else 0)
            if background and spare > 0:
                ahead = self.settings.send_background_ahead_s
                rows += await conn.fetch(_TAKE_BACKGROUND, spare, lease, ahead)
                if len(rows) > firsts:
                    self._background_at = time.monotonic() + self._background_gather_s
            if len(rows) < free:  # the queue has nothing more due now
                due = await conn.fetchval(_NEXT_DUE)
        for i, row in enumerate(rows):
            task = asyncio.create_task(
                self._handle(row["seq"], row["recipient_key"], row["request"])
            )
            self._tasks.add(task)
            self._leased[task] = row["seq"]
            if i < firsts:
                self._interactive.add(task)
            task.add_done_callback(self._done)
        return len(rows), free, None if due is None else float(due)

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Send everything due now and wait for it (tests, shutdown)."""
        async with asyncio.timeout(timeout_s):
            while await self.dispatch_once() or self._tasks:
                if self._tasks:
                    await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)

    async def _handle(self, seq: int, key: str, request: dict[str, Any]) -> None:
        out = Outbound.from_json(request)
        try:
            # The sender deletes the request in the transaction that settles it.
            again = await self.sender.send(out, queue_seq=seq, pair_key=key)
            if again is not None:
                # Meta's pair rate, or unconfirmed: back to the queue (still first for
                # this customer) until it admits, or Meta's status webhook settles it
                # or the window ends.
                await self._release(seq, again)
                return
        except Exception as exc:
            log.warning(
                "send attempt failed, requeued",
                extra={"message_id": str(out.message_id), "error": repr(exc)},
            )
            await self._release(seq, 1.0)

    async def _release(self, seq: int, after_s: float) -> None:
        async with rawpg.transaction(self.db, bypass_rls=True) as conn:
            await conn.execute(_RELEASE, seq, after_s)
