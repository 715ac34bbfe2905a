"""Send a requested message to Meta exactly once.

Per message id, under a PostgreSQL advisory lock held for the whole attempt
(so a concurrent duplicate waits and then finds the outcome):

1. **claim** — insert ``send_log(state=reserved)`` with the call's throughput slot and
   COMMIT, up to ``send_background_ahead_s`` before the slot;
2. **mark** — right before the slot, ``reserved`` -> ``claimed`` and COMMIT: from here
   on Meta may have the message (one round trip on the lock's idle connection, made
   :data:`MARK_LEAD_S` before the slot so its wait hides in the slot's). Campaign sends
   are claimed outright instead (``claimed`` at step 1, no mark): at 80/s on a 2-core
   box the mark cost 10-15 % of a campaign's rate (its CPU, and the slots missed on a
   loop that much busier), and a campaign recipient has no next message waiting behind
   an orphaned one (below), only a later outcome;
3. **call** — POST to the Graph API, retrying transient errors with backoff;
4. **record** — set ``sent``/``failed`` and stage the outcome event in one transaction.

A request for a message already ``sent``/``failed`` does nothing. One that finds
``reserved`` (and gets the lock, so no attempt is in flight) means a previous
attempt died before its mark: nothing of it left, and it is sent now. One that
finds ``claimed`` means a previous attempt died between mark and record (its
process killed): Meta may or may not have the message. It becomes ``orphaned``
and its request waits ``send_confirm_window_s`` for Meta's evidence: every
message Meta accepts gets a status webhook (``sent`` at least), which echoes our
id in ``biz_opaque_callback_data`` and makes the send ``sent`` with Meta's wamid
(the webhook intake, which also makes the request due at once). If none came in
the window, Meta does not have it, and it is sent. So a kill neither repeats nor
skips a message; the one case that would repeat one is Meta accepting the call
and its status webhooks reaching us only after the window (webhooks delayed for
minutes at the moment of the kill). Without a window (0) such a send fails with
``error_code: null`` instead (outcome unknown), as every claim found did before:
the slot comes with the claim up to ``send_background_ahead_s`` ahead, so most
sends a kill left "claimed" had never left, and a kill skipped them. An orphaned
send holds its customer's next messages (their order) for the window or until
its status comes: the mark keeps that to sends a kill caught in their last
milliseconds; a campaign's sends (no mark) all wait it out after a kill.

A call that reached Meta and got no answer (a read timeout, a dropped
connection) is the same doubt while the process lives: the Cloud API has no
idempotency key, so it is not retried. The send becomes ``unconfirmed`` and
its request returns to the queue for ``send_confirm_window_s``: a status
webhook of Meta's for the message in that time (it echoes our id in
``biz_opaque_callback_data``) makes it ``sent`` with Meta's wamid (see the
webhook intake); otherwise the next look fails it as ``no answer``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from sqlalchemy.exc import DBAPIError

from pytake_common import rawpg
from pytake_common.consumer import PermanentError
from pytake_common.crypto import SecretBox, SecretDecryptionError
from pytake_common.db import Database
from pytake_common.events import CloudEvent
from pytake_common.outbox import CHANNEL as OUTBOX_CHANNEL
from pytake_common.outbox import outbox_row
from pytake_common.pgtenant import begin_sql, discard
from pytake_common.rawpg import RolledBack, connection_driver, driver
from pytake_whatsapp_gateway.config import Settings
from pytake_whatsapp_gateway.events import MessageFailed, MessageSent
from pytake_whatsapp_gateway.metrics import SENDS
from pytake_whatsapp_gateway.numbers import CONNECTED, mark_disconnected
from pytake_whatsapp_gateway.sending.errors import SendError
from pytake_whatsapp_gateway.sending.graph import GraphClient, GraphResult, messages_session
from pytake_whatsapp_gateway.sending.messages import (
    InvalidMessage,
    MessageRequest,
    build,
    check_against_template,
)
from pytake_whatsapp_gateway.sending.pacing import MissedSlot, Pacer, Slot
from pytake_whatsapp_gateway.templates.store import APPROVED

log = logging.getLogger(__name__)
CLAIMED, SENT, FAILED, UNCONFIRMED = "claimed", "sent", "failed", "unconfirmed"
#: Claimed by an attempt that died: waits for Meta's status, sent if none comes (above).
ORPHANED = "orphaned"
#: Claimed with a throughput slot, not marked yet: nothing of it can have left.
RESERVED = "reserved"
#: The priority whose sends are claimed outright, not reserved then marked (see above).
CAMPAIGN = "campaign"
#: The mark is made this long before the slot (its round trip and commit hidden in the
#: wait), so only a kill in these last milliseconds leaves a send whose fate is unknown.
MARK_LEAD_S = 0.025
RECORD_ATTEMPTS = 4
#: What a transaction that may succeed when tried again raises (the database restarting,
#: a connection lost): SQLAlchemy's, asyncpg's, the socket's.
_DATABASE_ERRORS = (
    DBAPIError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    RolledBack,
    OSError,
)

UNKNOWN_OUTCOME = SendError(
    None,
    "delivery outcome unknown",
    "delivery outcome unknown after a crash; not resent to avoid a duplicate",
    transient=False,
)


def no_confirmation(window_s: float) -> SendError:
    return SendError(
        None,
        "no answer",
        f"WhatsApp's API did not answer and no status for the message came within "
        f"{window_s:g} s; it may or may not have been sent, so it was not resent "
        "to avoid a duplicate",
        transient=False,
    )


@dataclass(frozen=True, slots=True)
class Outbound:
    message_id: uuid.UUID
    organization_id: uuid.UUID
    conversation_id: uuid.UUID | None
    number_id: uuid.UUID
    to: str
    type: str
    text_body: str | None
    preview_url: bool
    context_wamid: str | None
    #: Meta's inner object for every type but text (``{"name", "language", ...}`` ...).
    payload: dict[str, Any] | None = None
    #: ``interactive`` | ``automation`` | ``campaign`` (the send queue's order per number)
    priority: str = "interactive"

    def to_json(self) -> dict[str, Any]:
        return {
            "message_id": str(self.message_id),
            "organization_id": str(self.organization_id),
            "conversation_id": str(self.conversation_id) if self.conversation_id else None,
            "number_id": str(self.number_id),
            "to": self.to,
            "type": self.type,
            "text_body": self.text_body,
            "preview_url": self.preview_url,
            "context_wamid": self.context_wamid,
            "payload": self.payload,
            "priority": self.priority,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Outbound:
        conversation = raw.get("conversation_id")
        return cls(
            message_id=uuid.UUID(raw["message_id"]),
            organization_id=uuid.UUID(raw["organization_id"]),
            conversation_id=uuid.UUID(conversation) if conversation else None,
            number_id=uuid.UUID(raw["number_id"]),
            to=raw["to"],
            type=raw["type"],
            text_body=raw.get("text_body"),
            preview_url=bool(raw.get("preview_url")),
            context_wamid=raw.get("context_wamid"),
            payload=raw.get("payload"),
            priority=raw.get("priority") or "interactive",
        )


@dataclass(frozen=True, slots=True)
class _Ready:
    phone_number_id: str
    access_token: str
    payload: dict[str, Any]
    throughput_per_second: int
    #: The first attempt's throughput slot, taken with the claim.
    first_slot: Slot | None = None
    #: The send log row is ``reserved``: it is marked ``claimed`` before the call.
    reserved: bool = False


def invalid(detail: str) -> SendError:
    return SendError(None, "invalid message", detail, transient=False)


# The hot statements, plain SQL on the transaction's asyncpg connection (pytake_common.rawpg).
_CLAIM = """
    INSERT INTO send_log (message_id, organization_id, number_id, conversation_id,
                          recipient, state)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT DO NOTHING
    RETURNING message_id
"""
#: The number, and the template ($3 name, $4 language; NULL unless the message is one)
#: of its WhatsApp Business account: one round trip for both.
_NUMBER = """
    SELECT n.phone_number_id, n.waba_id, n.access_token_enc, n.status,
           n.throughput_per_second, t.status AS template_status,
           t.components AS template_components
    FROM numbers AS n
    LEFT JOIN templates AS t ON t.organization_id = n.organization_id
        AND t.waba_id = n.waba_id AND t.name = $3 AND t.language = $4
    WHERE n.organization_id = $1 AND n.id = $2 AND n.removed_at IS NULL
"""
#: The send's state, wamid, and seconds left of the confirm window ``$2`` since it last
#: changed (an orphaned send waits that long for Meta's status); the row locked, as the
#: status webhook's intake locks it before it settles a send (so neither misses the other).
_LOGGED = """
    SELECT state, wamid,
      extract(epoch FROM updated_at + make_interval(secs => $2) - now())::float8 AS left_s
    FROM send_log WHERE message_id = $1
    FOR UPDATE
"""
#: A claim found without an outcome (its attempt died): orphaned, the window from now.
_ORPHAN = """
    UPDATE send_log SET state = 'orphaned', updated_at = now()
    WHERE message_id = $1 AND state = 'claimed' AND wamid IS NULL
"""
#: An orphaned send without Meta's status through the window: reserved again, to be sent.
_RECLAIM = """
    UPDATE send_log SET state = 'reserved', updated_at = now()
    WHERE message_id = $1 AND state = 'orphaned'
"""
#: Claimed -> unconfirmed; the wamid a status webhook of Meta's wrote meanwhile.
_UNCONFIRM = """
    UPDATE send_log SET state = 'unconfirmed', attempts = $2,
      departed_at = coalesce(to_timestamp($3), departed_at), updated_at = now()
    WHERE message_id = $1 AND state = 'claimed'
    RETURNING wamid
"""
#: The outcome, if the send is still claimed or unconfirmed (else a status webhook
#: settled it and emitted the event), with its event staged in the outbox (the relay
#: woken on ``$14`` at commit, see pytake_common.outbox) and the queue row ``$8``
#: deleted: one round trip (data-modifying CTEs always run).
_RECORD = """
    WITH dequeued AS (DELETE FROM send_queue WHERE seq = $8),
    recorded AS (
      UPDATE send_log SET state = $2, wamid = coalesce($3, wamid),
        attempts = coalesce($4, attempts), error_code = $5, error_title = $6,
        error_detail = $7, departed_at = coalesce(to_timestamp($15), departed_at),
        updated_at = now()
      WHERE message_id = $1 AND state IN ('reserved', 'claimed', 'unconfirmed')
      RETURNING message_id),
    staged AS (
      INSERT INTO outbox (event_id, topic, key, event, headers)
      SELECT $9, $10, $11, $12, $13 FROM recorded
      RETURNING pg_notify($14, ''))
    SELECT message_id FROM recorded
"""
_DEQUEUE = "DELETE FROM send_queue WHERE seq = $1"
#: The mark (after the tenant binding, one simple query: no parameters, the id is a UUID).
#: It fails (division by zero) when the row is no longer reserved: a status webhook of
#: Meta's settled it meanwhile (an orphaned send reserved again as its window ended).
_MARK = """; WITH m AS (
      UPDATE send_log SET state = 'claimed', updated_at = now()
      WHERE message_id = '{}' AND state = 'reserved' RETURNING 1)
    SELECT 1 / (SELECT count(*) FROM m)::int; COMMIT"""

#: Session-level (the claim commits before Meta is called, the record after): released
#: by :meth:`Sender.send`, or by PostgreSQL when the connection closes.
_TRY_LOCK = "SELECT pg_try_advisory_lock($1)"
_UNLOCK = "SELECT pg_advisory_unlock($1)"


class Settled(Exception):
    """Meta's status settled the send between its reservation and its mark: no call."""


class SendLockTimeout(Exception):
    """Another attempt at the same message held its lock for ``send_lock_timeout_s``."""


def check_template(sent: dict[str, Any], number: asyncpg.Record) -> None:
    """Only APPROVED templates known locally are sent (Meta would refuse the others);
    ``number`` is :data:`_NUMBER`'s row, with the template's status and components."""
    name, language = sent["name"], sent["language"]["code"]
    if number["template_status"] is None:
        raise InvalidMessage(
            f"the template {name!r} ({language}) is not known for this number's "
            "WhatsApp Business account; create or sync it first"
        )
    if number["template_status"] != APPROVED:
        raise InvalidMessage(
            f"the template {name!r} ({language}) is {number['template_status']}, not APPROVED"
        )
    check_against_template(sent, list(number["template_components"]))


def lock_key(message_id: uuid.UUID) -> int:
    digest = hashlib.blake2b(b"pytake-send:" + message_id.bytes, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Sender:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        box: SecretBox,
        client: httpx.AsyncClient,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        pacer: Pacer | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.box = box
        self.graph = GraphClient(client, settings.graph_api_base, settings.graph_api_version)
        self._sleep = sleep
        self.pacer = pacer or Pacer(
            db,
            jitter_allowance_s=settings.pace_jitter_allowance_s,
            pair_interval_s=settings.pair_interval_s,
            pair_burst=settings.pair_burst,
            lead_s=settings.send_slot_lead_s,
        )

    async def aclose(self) -> None:
        """Close the sends' HTTP session (opened by the first send)."""
        if self.graph.messages is not None:
            session, self.graph.messages = self.graph.messages, None
            await session.close()

    async def send(
        self, out: Outbound, *, queue_seq: int | None = None, pair_key: str | None = None
    ) -> float | None:
        """Send ``out`` at most once; seconds after which to look again, or None when settled.

        ``queue_seq``: its ``send_queue`` row, deleted in the transaction that settles
        the send. ``pair_key``: the (number, recipient) key whose pair rate admits the
        send first; when it does not, nothing is claimed and the wait is returned.
        """
        async with self.db.engine.connect() as lock:
            conn = await connection_driver(lock)
            key = lock_key(out.message_id)
            released = False
            try:
                await self._lock(conn, key)
                try:
                    return await self._send_locked(conn, out, queue_seq, pair_key)
                finally:
                    released = bool(await conn.fetchval(_UNLOCK, key))
            finally:
                if not released:
                    # Maybe held (an unlock that failed, a lock statement cancelled in
                    # flight): a session lock must not go back to the pool. Closing the
                    # connection releases it: at once and synchronously (a second
                    # cancellation cannot interrupt it), then the pool forgets it.
                    discard(conn)
                    await lock.invalidate()

    async def _lock(self, conn: asyncpg.Connection, key: int) -> None:
        """Take the message's session-level advisory lock: one round trip, no transaction.

        Only a duplicate of an attempt in flight waits here (it then finds the outcome).
        """
        deadline = time.monotonic() + self.settings.send_lock_timeout_s
        pause = 0.05
        while not await conn.fetchval(_TRY_LOCK, key):
            if time.monotonic() >= deadline:
                raise SendLockTimeout(f"another attempt holds send lock {key}")
            await self._sleep(pause)
            pause = min(pause * 2, 1.0)

    async def _send_locked(
        self,
        lock: asyncpg.Connection,
        out: Outbound,
        queue_seq: int | None,
        pair_key: str | None,
    ) -> float | None:
        # Plain SQL on asyncpg transactions (pytake_common.rawpg): a SQLAlchemy session
        # per transaction was most of the send path's CPU.
        async with rawpg.transaction(self.db, out.organization_id) as conn:
            claimed = await self._claim(conn, out, queue_seq, pair_key)
        if not isinstance(claimed, _Ready):
            return claimed
        try:
            result, attempts, departed = await self._call(lock, out, claimed, queue_seq)
        except Settled:
            return 0.0  # its request is taken again at once and found settled
        window = self.settings.send_confirm_window_s
        unconfirmed = result.error is not None and result.error.ambiguous and window > 0
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                if unconfirmed:
                    async with rawpg.transaction(self.db, out.organization_id) as conn:
                        wamid = await self._unconfirmed(conn, out, attempts, departed)
                        if wamid is None:
                            return window
                        # Meta's status came first
                        await self._finish(conn, out, wamid, None, attempts, queue_seq)
                        return None
                await self._record(out, result, attempts, queue_seq, departed)
                return None
            except _DATABASE_ERRORS as exc:
                # Meta already answered: losing this outcome would turn it into "unknown".
                if attempt == RECORD_ATTEMPTS:
                    raise
                log.warning(
                    "recording a send outcome failed, retrying",
                    extra={"message_id": str(out.message_id), "error": repr(exc)},
                )
                await self._sleep(0.2 * 2 ** (attempt - 1))
        return None

    async def _record(
        self,
        out: Outbound,
        result: GraphResult,
        attempts: int,
        queue_seq: int | None,
        departed: float | None,
    ) -> None:
        """Record Meta's answer (one transaction). An answer that disconnects the number
        (its token refused) marks it in the same transaction, on a session: rare."""
        error = result.error
        if error is not None and error.disconnects:
            async with self.db.transaction(organization_id=out.organization_id) as session:
                await mark_disconnected(
                    session, out.organization_id, out.number_id, error.title or error.detail
                )
                await self._finish(
                    await driver(session), out, None, error, attempts, queue_seq, departed
                )
            return
        async with rawpg.transaction(self.db, out.organization_id) as conn:
            await self._finish(conn, out, result.wamid, error, attempts, queue_seq, departed)

    async def _unconfirmed(
        self, conn: asyncpg.Connection, out: Outbound, attempts: int, departed: float | None
    ) -> str | None:
        """Mark the send unconfirmed; Meta's wamid if its status webhook already came.

        The UPDATE locks the row first: a status webhook's intake locks it too
        before reading its state, so either it committed its status before (found
        here) or it waits and then finds ``unconfirmed`` (and confirms the send).
        """
        # The intake writes the wamid of a status that finds the send still claimed.
        wamid: str | None = await conn.fetchval(_UNCONFIRM, out.message_id, attempts, departed)
        if wamid is not None:
            return wamid
        SENDS.labels("unconfirmed", "no answer").inc()
        log.warning(
            "no answer from WhatsApp; not resent, waiting for its status webhook",
            extra={
                "message_id": str(out.message_id),
                "window_s": self.settings.send_confirm_window_s,
            },
        )
        return None

    async def _claim(
        self,
        conn: asyncpg.Connection,
        out: Outbound,
        queue_seq: int | None,
        pair_key: str | None,
    ) -> _Ready | float | None:
        """Claim the send, with its pair-rate admission and its first throughput slot.

        One transaction (round trips are most of a send's CPU): a wait (float) if the
        pair rate does not admit it yet, None if it is settled, else what to call.
        """
        if pair_key is not None:
            wait = await self.pacer.admit_pair(conn, out.number_id, pair_key)
            if wait > 0:
                return wait
        inserted = await conn.fetchval(
            _CLAIM,
            out.message_id,
            out.organization_id,
            out.number_id,
            out.conversation_id,
            out.to[:64],
            CLAIMED if out.priority == CAMPAIGN else RESERVED,
        )
        reserved = out.priority != CAMPAIGN
        if inserted is None:
            send_now, later = await self._claimed_before(conn, out, queue_seq)
            if not send_now:
                return later
            reserved = True  # a reservation, or an orphaned send reserved again
        ready_or_refusal = await self._prepare(conn, out)
        if isinstance(ready_or_refusal, SendError):
            await self._finish(conn, out, None, ready_or_refusal, 0, queue_seq)
            return None
        slot = await self.pacer.take_slot(
            conn, out.number_id, ready_or_refusal.throughput_per_second, queue_seq=queue_seq
        )
        return replace(ready_or_refusal, first_slot=slot, reserved=reserved)

    async def _claimed_before(
        self, conn: asyncpg.Connection, out: Outbound, queue_seq: int | None
    ) -> tuple[bool, float | None]:
        """The send was claimed before: (True, None) if it is to be sent now (orphaned,
        and no status came through the window), else (False, seconds to wait for Meta's
        status, or None if it is settled, now or before)."""
        window = self.settings.send_confirm_window_s
        logged = await conn.fetchrow(_LOGGED, out.message_id, window)
        if logged is None:
            raise PermanentError("message id is already used by another organization")
        state = logged["state"]
        if state in (ORPHANED, UNCONFIRMED) and logged["left_s"] > 0:
            return False, max(float(logged["left_s"]), 0.05)  # taken before the window ended
        if state == RESERVED:
            return True, None  # its attempt died before the mark: nothing left
        if state == CLAIMED and logged["wamid"] is not None:
            # The attempt died, but Meta's status webhook had already named the message.
            await self._finish(conn, out, logged["wamid"], None, None)
        elif state == CLAIMED and window > 0:  # the row is locked: the updates below hold
            await conn.execute(_ORPHAN, out.message_id)
            SENDS.labels("orphaned", "attempt died").inc()
            log.warning(
                "send claimed but never finished (its process died?); waiting for "
                "WhatsApp's status webhook before sending it",
                extra={"message_id": str(out.message_id), "window_s": window},
            )
            return False, window
        elif state == CLAIMED:
            log.error(
                "send claimed but never finished (crash?); no confirm window, not resending",
                extra={"message_id": str(out.message_id)},
            )
            await self._finish(conn, out, None, UNKNOWN_OUTCOME, None)
        elif state == ORPHANED:
            await conn.execute(_RECLAIM, out.message_id)
            SENDS.labels("reclaimed", "no status").inc()
            log.warning(
                "no status from WhatsApp for an orphaned send within the window: it "
                "never reached WhatsApp; sending it",
                extra={"message_id": str(out.message_id), "window_s": window},
            )
            return True, None
        elif state == UNCONFIRMED:  # no status from Meta within the window
            await self._finish(conn, out, None, no_confirmation(window), None)
        # Sent or failed already (the outcome event was emitted then), or settled now.
        if queue_seq is not None:
            await conn.execute(_DEQUEUE, queue_seq)
        return False, None

    async def _prepare(self, conn: asyncpg.Connection, out: Outbound) -> _Ready | SendError:
        payload: dict[str, Any] | None = None
        refused: InvalidMessage | None = None
        try:
            payload = build(
                MessageRequest(
                    to=out.to,
                    type=out.type,
                    text_body=out.text_body,
                    preview_url=out.preview_url,
                    payload=out.payload,
                    context_wamid=out.context_wamid,
                    message_id=out.message_id,
                )
            )
        except InvalidMessage as exc:
            refused = exc
        template = payload.get("template") if payload is not None else None
        name, language = (
            (template["name"], template["language"]["code"]) if template else (None, None)
        )
        number = await conn.fetchrow(_NUMBER, out.organization_id, out.number_id, name, language)
        if number is None:
            return SendError(
                None,
                "number not found",
                "The WhatsApp number of this conversation is not connected to PyTake",
                transient=False,
            )
        if number["status"] != CONNECTED:
            return SendError(
                None,
                "number disconnected",
                "The WhatsApp number is disconnected; reconnect it with a new token",
                transient=False,
            )
        if refused is not None:
            return invalid(str(refused))
        assert payload is not None
        if template is not None:
            try:
                check_template(template, number)
            except InvalidMessage as exc:
                return invalid(str(exc))
        try:
            token = self.box.decrypt(number["access_token_enc"])
        except SecretDecryptionError:
            log.error(
                "access token of a number cannot be decrypted",
                extra={"number_id": str(out.number_id)},
            )
            return SendError(
                None,
                "credentials unreadable",
                "The number's stored credentials cannot be read; reconnect it",
                transient=False,
            )
        return _Ready(number["phone_number_id"], token, payload, number["throughput_per_second"])

    async def _mark(self, lock: asyncpg.Connection, out: Outbound, ready: _Ready) -> None:
        """Reserved -> claimed, committed just before the slot (see the module's docstring).

        On the connection holding the message's lock, idle meanwhile: one round trip."""
        slot = ready.first_slot
        if slot is not None:
            early = slot.at - MARK_LEAD_S - time.monotonic()
            if early > 0:
                await asyncio.sleep(early)  # pacing, not a retry's backoff (self._sleep)
        try:
            await lock.execute(begin_sql(out.organization_id) + _MARK.format(out.message_id))
        except asyncpg.DivisionByZeroError:
            await lock.execute("ROLLBACK")
            raise Settled from None

    async def _call(
        self, lock: asyncpg.Connection, out: Outbound, ready: _Ready, queue_seq: int | None
    ) -> tuple[GraphResult, int, float | None]:
        """Meta's answer, the attempts, and when the last attempt's bytes left (epoch s;
        None if nothing was written)."""
        if self.graph.messages is None:  # opened in the event loop that sends
            self.graph.messages = messages_session(
                self.settings.send_timeout_s,
                self.graph.client.headers.get("User-Agent", "pytake-whatsapp-gateway"),
            )
        if ready.reserved:
            await self._mark(lock, out, ready)
        attempt = 0
        while True:
            attempt += 1
            departure = self.pacer.departure(
                ready.first_slot if attempt == 1 else None,
                out.number_id,
                ready.throughput_per_second,
                queue_seq=queue_seq,
            )
            # Sleep until the slot with no connection held (a kept-alive one idle meanwhile
            # could be closed by Meta under the write), then check again where the bytes
            # leave (GatedBody): aiohttp writes from a task of its own, which a busy loop
            # runs late. On time there, nothing suspends before the write; too late, the
            # call goes again on new slots, nothing of it sent (Departure.at_write).
            while True:
                await departure.wait()
                try:
                    result = await self.graph.send(
                        ready.phone_number_id,
                        ready.access_token,
                        ready.payload,
                        gate=departure.at_write,
                    )
                    break
                except MissedSlot:
                    continue
            error = result.error
            if error is None or not error.transient or attempt >= self.settings.send_max_attempts:
                return result, attempt, departure.left
            SENDS.labels("retried", error.metric_label).inc()
            delay = self._backoff(attempt)
            log.info(
                "transient send error, retrying",
                extra={
                    "message_id": str(out.message_id),
                    "error_code": error.code,
                    "attempt": attempt,
                    "delay_s": round(delay, 3),
                },
            )
            await self._sleep(delay)

    def _backoff(self, attempt: int) -> float:
        delay = min(
            self.settings.send_retry_max_backoff_s,
            self.settings.send_retry_backoff_s * 2.0 ** (attempt - 1),
        )
        return delay * random.uniform(0.5, 1.0)

    async def _finish(
        self,
        conn: asyncpg.Connection,
        out: Outbound,
        wamid: str | None,
        error: SendError | None,
        attempts: int | None,
        queue_seq: int | None = None,
        departed: float | None = None,
    ) -> None:
        """Record the outcome; ``departed``: when the call that sent it left (epoch s)."""
        now = datetime.now(UTC)
        event: MessageSent | MessageFailed
        if error is None:
            assert wamid is not None
            event = MessageSent(
                message_id=out.message_id,
                organization_id=out.organization_id,
                number_id=out.number_id,
                wamid=wamid,
                to=out.to,
                sent_at=now,
            )
        else:
            event = MessageFailed(
                message_id=out.message_id,
                organization_id=out.organization_id,
                number_id=out.number_id,
                to=out.to,
                error_code=error.code,
                error_title=error.title,
                error_detail=error.detail,
                retryable=error.transient,
                failed_at=now,
            )
        staged = outbox_row(
            CloudEvent.of(event, subject=out.message_id, tenant_id=out.organization_id)
        )
        recorded = await conn.fetchval(
            _RECORD,
            out.message_id,
            SENT if error is None else FAILED,
            wamid if error is None else None,
            attempts,
            None if error is None else error.code,
            None if error is None else (error.title or "")[:200] or None,
            None if error is None else error.detail,
            queue_seq,
            staged["event_id"],
            staged["topic"],
            staged["key"],
            json.dumps(staged["event"]),  # jsonb travels as text on the raw connection
            json.dumps(staged["headers"]),
            OUTBOX_CHANNEL,
            departed,
        )
        if recorded is None:
            return  # Meta's status webhook settled it meanwhile (and emitted the event)
        outcome = SENT if error is None else FAILED
        SENDS.labels(outcome, "" if error is None else error.metric_label).inc()
        log.info(
            "send finished",
            extra={
                "message_id": str(out.message_id),
                "outcome": outcome,
                "error_code": None if error is None else error.code,
                "attempts": attempts,
            },
        )
