"""Durable intake of a webhook delivery, in ONE transaction, then 200.

The signature is checked before the body is parsed: the numbers the raw bytes
name (:mod:`.screening`, bounded) give the candidate app secrets; only a body one
of them signed is parsed, and then every number it names must be served by that
very secret. :class:`DeliveryLimits` bound what a stranger can make us do: a body
past them is refused (413) unless it is signed; a signed one is Meta's and is
processed whatever it carries (recorded in parts of :data:`RECORD_PART` elements),
since Meta retries a refusal for days and then drops it. A body naming no connected
number must be signed by an app PyTake knows (the platform's, or that of a number it
names or shares an account with) when there is one; otherwise it spends a small
per-address budget of its own. Requests refused before their
signature verified spend their address's :class:`FailureBudget`.

Lookup of the numbers (across tenants: the tenant is not known yet), the raw
delivery, the deduplicated messages and statuses and their events all commit
together or not at all, so Meta's retry of a failed attempt redoes everything
and a replay of a committed one adds no message and no event.
Rows of each organization are written with the session bound to that
organization (RLS WITH CHECK applies: bypass is switched off first).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import (
    ARRAY,
    String,
    and_,
    any_,
    bindparam,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common import rawpg
from pytake_common.crypto import SecretBox
from pytake_common.db import Database
from pytake_common.errors import DomainError, TooManyRequests
from pytake_common.events import CloudEvent
from pytake_common.ids import PYTAKE_NAMESPACE, contact_id_for, message_id_for_wamid
from pytake_common.outbox import CHANNEL as OUTBOX_CHANNEL
from pytake_common.outbox import add_event
from pytake_common.pgtenant import bind_select
from pytake_common.rawpg import TenantWrites, driver
from pytake_common.tracing import inject_headers
from pytake_whatsapp_gateway.events import MessageReceived, MessageSent, MessageStatusUpdated
from pytake_whatsapp_gateway.media import download_path
from pytake_whatsapp_gateway.metrics import WEBHOOK_DELIVERIES, WEBHOOK_WRITE_BATCH
from pytake_whatsapp_gateway.numbers import ACTIVE
from pytake_whatsapp_gateway.sending.dispatcher import CHANNEL as SEND_QUEUE_CHANNEL
from pytake_whatsapp_gateway.sending.sender import (
    CLAIMED,
    ORPHANED,
    RESERVED,
    SENT,
    UNCONFIRMED,
)
from pytake_whatsapp_gateway.tables import (
    numbers,
    send_log,
    status_updates,
    webhook_deliveries,
)
from pytake_whatsapp_gateway.webhooks.directory import NumberDirectory
from pytake_whatsapp_gateway.webhooks.group_commit import GroupCommit, SplitBatch
from pytake_whatsapp_gateway.webhooks.parsing import (
    DEFAULT_LIMITS,
    UNBOUNDED,
    DeliveryLimits,
    DeliveryTooLarge,
    InboundMessage,
    InvalidPayload,
    ParsedDelivery,
    StatusUpdate,
    parse_body,
    parse_delivery,
)
from pytake_whatsapp_gateway.webhooks.screening import Named, names_in
from pytake_whatsapp_gateway.webhooks.signature import (
    AppSecrets,
    KnownNumber,
    parse_signature,
    verifies,
)
from pytake_whatsapp_gateway.webhooks.throttle import FailureBudget
from pytake_whatsapp_gateway.webhooks.waba import record_waba_change

log = logging.getLogger(__name__)
_Item = TypeVar("_Item", InboundMessage, StatusUpdate)


class BadSignature(DomainError):
    status, code, title = 401, "invalid_signature", "Invalid webhook signature"


#: One delivery is signed by one Meta app; the numbers a body names (plus ids that only
#: look like WABA ids) rarely span more than one or two apps.
MAX_CANDIDATE_SECRETS = 4
#: How long a busy organization's deliveries wait for more before their write
#: (:class:`GroupCommit`: behind a write in flight, or less than this after the previous
#: delivery, i.e. above 125 a second): at 400/s, several a statement instead of about two.
WRITE_LINGER_S = 0.008


class WebhookIntake:
    def __init__(
        self,
        db: Database,
        box: SecretBox,
        platform_secret: str | None,
        limits: DeliveryLimits = DEFAULT_LIMITS,
        refusals: FailureBudget | None = None,
        unknown: FailureBudget | None = None,
        directory: NumberDirectory | None = None,
        writes: TenantWrites | None = None,
    ) -> None:
        self.db = db
        self.secrets = AppSecrets(box, platform_secret)
        self.limits = limits
        #: Refusals before the signature verified, per client address (None: unlimited).
        self.refusals = refusals
        #: Bodies naming no connected number, per client address, when no platform app
        #: secret can check them (None: unlimited).
        self.unknown = unknown
        #: The numbers remembered between deliveries (serving while its worker listens).
        self.directory = directory or NumberDirectory(db.url)
        #: The raw pool of the remembered numbers' deliveries (None: the Database's pool).
        self.writes = writes
        #: Their writes, coalesced per organization while one is in flight.
        self._messages = GroupCommit(self._write_messages, linger_s=WRITE_LINGER_S)
        self._statuses = GroupCommit(self._write_statuses, linger_s=WRITE_LINGER_S)

    def check_budget(self, source: str) -> None:
        """429 for a source that spent its refusals (before its body is read)."""
        wait = self.refusals.retry_after(source) if self.refusals is not None else 0
        if wait:
            WEBHOOK_DELIVERIES.labels("throttled").inc()
            raise TooManyRequests(
                "too many webhook requests refused from this address", retry_after=wait
            )

    def refused(self, source: str | None) -> None:
        """Count a request refused before its signature verified against ``source``."""
        if self.refusals is not None and source is not None:
            self.refusals.spend(source)

    async def receive(self, body: bytes, signature: str | None, source: str | None = None) -> str:
        """Verify and record ``body``; return the outcome (also counted as a metric)."""
        try:
            outcome = await self._receive(body, signature, source)
        except InvalidPayload:
            WEBHOOK_DELIVERIES.labels("invalid").inc()
            raise
        except DeliveryTooLarge:
            WEBHOOK_DELIVERIES.labels("too_large").inc()
            raise
        except BadSignature:
            WEBHOOK_DELIVERIES.labels("bad_signature").inc()
            raise
        WEBHOOK_DELIVERIES.labels(outcome).inc()
        return outcome

    async def _receive(self, body: bytes, signature: str | None, source: str | None) -> str:
        received_at = datetime.now(UTC)
        try:
            digest = parse_signature(signature)
            if digest is None:
                raise BadSignature("X-Hub-Signature-256 is missing or malformed")
            named = names_in(body, self.limits)
        except DomainError:
            self.refused(source)
            raise
        assert signature is not None
        # WABA changes take the general path: not worth an HMAC and a parse on this one
        # first. Messages and statuses of remembered numbers take the fast one.
        remembered = self.directory.get(named.phone_number_ids) if not named.waba_ids else None
        if remembered:
            outcome = await self._receive_remembered(
                body, digest, signature, named, remembered, received_at
            )
            if outcome is not None:
                return outcome
        async with self.db.transaction(bypass_rls=True) as session:
            generation = self.directory.generation
            candidates = await _numbers_named(session, named.phone_number_ids, named.waba_ids)
            self.directory.put(generation, named.phone_number_ids, candidates)
            if not candidates:
                await self._check_unknown(session, body, digest, named, source)
                log.info(
                    "webhook for numbers not connected to PyTake acknowledged",
                    extra={"phone_number_ids": sorted(named.phone_number_ids)[:10]},
                )
                return "unknown_number"
            secret = self._verified_secret(body, digest, candidates, source, named.over)
            # Signed by an app PyTake knows: now the body is worth parsing, whatever its
            # size (Meta's; the body cap bounds the work).
            payload = parse_body(body)
            delivery = parse_delivery(payload, received_at, UNBOUNDED)
            if named.phone_number_ids.issuperset(
                delivery.phone_number_ids
            ) and named.waba_ids.issuperset(delivery.waba_ids):
                found = candidates
            else:  # keys spelt so that the byte scan missed them: look them up
                found = await _numbers_named(
                    session, frozenset(delivery.phone_number_ids), frozenset(delivery.waba_ids)
                )
            known, of_wabas = _split(found, delivery.phone_number_ids, delivery.waba_ids)
            if not known and not of_wabas:
                return "unknown_number"
            named_numbers = list({n.id: n for n in [*known.values(), *of_wabas]}.values())
            if self.secrets.serving(named_numbers) != secret:
                raise BadSignature("X-Hub-Signature-256 does not match the numbers' app secret")
            delivery_id = uuid.uuid4()
            # Not a tenant table (no RLS): written by the first tenant binding's statement.
            raw = {
                "delivery_id": delivery_id,
                "received_at": received_at,
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "signature": signature[:100],
                "body": payload,
            }
            created = 0
            for i, part in enumerate(_parts(delivery, RECORD_PART)):
                created += await _record(
                    session, part, known, of_wabas, delivery_id, raw if i == 0 else None
                )
        _log_skipped(delivery, delivery_id)
        nothing_new = created == 0 and (
            delivery.messages or delivery.statuses or delivery.waba_changes
        )
        return "duplicate" if nothing_new else "accepted"

    async def _receive_remembered(
        self,
        body: bytes,
        digest: bytes,
        signature: str,
        named: Named,
        remembered: list[KnownNumber],
        received_at: datetime,
    ) -> str | None:
        """The common delivery (messages, or statuses, of one tenant's numbers, all
        remembered, signed by their remembered secret): recorded by one statement
        (:data:`MESSAGES_SQL` or :data:`STATUSES_SQL`, a transaction of its own) with no
        lookup, on the intake's own raw pool, whose connections stay bound to their last
        organization: one round trip, two when the connection must be bound first. None:
        anything else, for the general path (which looks the numbers up in the database,
        so a secret rotated a moment ago is judged by its new value), and a status of a
        send still in flight or unanswered (which the general path settles with the
        sender, row locked)."""
        if named.over is not None:  # past the bounds: the general path records it in parts
            return None
        secret = self._signing_secret(body, digest, remembered)
        if secret is None:
            return None
        payload = parse_body(body)
        # Signed by a remembered secret: never refused for its size (the general path
        # records a large one in parts, so it goes there).
        delivery = parse_delivery(payload, received_at, UNBOUNDED)
        if (
            delivery.waba_changes
            or (delivery.statuses and delivery.messages)
            or len(delivery.messages) > RECORD_PART
            or len(delivery.statuses) > RECORD_PART
        ):
            return None
        known = {n.phone_number_id: n for n in remembered if n.phone_number_id in delivery.numbers}
        tenants = {n.organization_id for n in known.values()}
        if (
            len(known) != len(delivery.numbers)
            or len(tenants) != 1
            or self.secrets.serving(list(known.values())) != secret
        ):
            return None
        delivery_id = uuid.uuid4()
        pending = _Pending(
            (
                delivery_id,
                received_at,
                hashlib.sha256(body).hexdigest(),
                signature[:100],
                _body_text(body, payload),
            ),
            known,
            delivery.messages,
            delivery.statuses,
        )
        # Written with the organization's other deliveries that arrive while one of its
        # writes is in flight: one statement (a transaction of its own) per batch.
        organization_id = tenants.pop()
        if delivery.statuses:
            created = await self._statuses.submit(organization_id, pending)
            if created is None:  # nothing written: the general path settles it with the sender
                return None
        else:
            created = await self._messages.submit(organization_id, pending)
        _log_skipped(delivery, delivery_id)
        nothing_new = created == 0 and (delivery.messages or delivery.statuses)
        return "duplicate" if nothing_new else "accepted"

    @asynccontextmanager
    async def _statement(self, organization_id: uuid.UUID) -> AsyncIterator[asyncpg.Connection]:
        """A connection for one statement of ``organization_id``'s (its own transaction):
        on the intake's pool, whose connections stay bound to their last organization,
        one round trip."""
        async with (
            self.writes.statement(organization_id)
            if self.writes is not None
            else rawpg.transaction(self.db, organization_id)
        ) as conn:
            yield conn

    async def _write_messages(
        self, organization_id: uuid.UUID, batch: list[_Pending]
    ) -> list[int | None]:
        """:data:`MESSAGES_SQL` for deliveries of one organization: how many messages of
        each were new (a message twice in the batch is new in the first only)."""
        WEBHOOK_WRITE_BATCH.labels("messages").observe(len(batch))
        args = [*_delivery_rows(batch), *_message_rows(batch)]
        async with self._statement(organization_id) as conn:
            new = Counter(await conn.fetchval(MESSAGES_SQL, *args) or ())
        return [new[p.raw[0]] for p in batch]

    async def _write_statuses(
        self, organization_id: uuid.UUID, batch: list[_Pending]
    ) -> list[int | None]:
        """:data:`STATUSES_SQL` for deliveries of one organization: how many statuses of
        each were new, or None for a delivery naming a send in flight or unanswered
        (nothing written: a batch of several is then written one by one)."""
        WEBHOOK_WRITE_BATCH.labels("statuses").observe(len(batch))
        args = [*_delivery_rows(batch), *_status_rows(batch, organization_id)]
        async with self._statement(organization_id) as conn:
            row = await conn.fetchrow(STATUSES_SQL, *args)
        if row[0]:
            if len(batch) > 1:
                raise SplitBatch()
            return [None]
        new = Counter(row[1] or ())
        return [new[p.raw[0]] for p in batch]

    def _verified_secret(
        self,
        body: bytes,
        digest: bytes,
        candidates: list[KnownNumber],
        source: str | None,
        over: DeliveryTooLarge | None = None,
    ) -> str:
        """The candidates' app secret that signed ``body``, else refused: ``over`` (413) for
        a body past the bounds, :class:`BadSignature` otherwise."""
        secret = self._signing_secret(body, digest, candidates)
        if secret is None:
            self.refused(source)
            raise over or BadSignature("X-Hub-Signature-256 does not match the numbers' app secret")
        return secret

    def _signing_secret(
        self, body: bytes, digest: bytes, candidates: list[KnownNumber]
    ) -> str | None:
        """The candidates' app secret that signed ``body`` (one HMAC per distinct secret,
        none when there are more than :data:`MAX_CANDIDATE_SECRETS`), else None."""
        secrets = {s for s in map(self.secrets.of, candidates) if s is not None}
        if len(secrets) <= MAX_CANDIDATE_SECRETS:
            for secret in secrets:
                if verifies(body, digest, secret):
                    return secret
        return None

    async def _check_unknown(
        self, session: AsyncSession, body: bytes, digest: bytes, named: Named, source: str | None
    ) -> None:
        """Let a body naming no connected number be acknowledged unparsed, or refuse it.

        Meta signs with the app's secret. The apps that can vouch for such a body are
        the platform's and those of the numbers PyTake knows (removed ones included) that
        the body names or that share an account (entry id) with it: Meta sends a
        subscribed app every number of the account, connected to PyTake or not. When one
        of them signed it, it is acknowledged; when none did, it is a refusal (spending
        the address's budget). When nothing can check it (no platform app secret, no such
        number), it spends a small budget of its own per address (429 past it): the scan
        and lookups it costs are bounded, and it never makes signed traffic to connected
        numbers wait. A body past the bounds is only acknowledged when signed.
        """
        secrets = {s for s in map(self.secrets.of, await _vouchers(session, named)) if s}
        if self.secrets.platform_secret is not None:
            secrets.add(self.secrets.platform_secret)
        if any(verifies(body, digest, s) for s in list(secrets)[: MAX_CANDIDATE_SECRETS + 1]):
            return
        if secrets or named.over is not None:
            self.refused(source)
            raise named.over or BadSignature(
                "X-Hub-Signature-256 does not match the app secret of any number PyTake knows"
            )
        if self.unknown is None or source is None:
            return
        wait = self.unknown.retry_after(source)
        if wait:
            WEBHOOK_DELIVERIES.labels("throttled").inc()
            raise TooManyRequests(
                "too many webhook requests for unknown numbers from this address",
                retry_after=wait,
            )
        self.unknown.spend(source)


#: Numbers jsonb refuses though Python reads them (as 0.0): PostgreSQL's numeric keeps at
#: most 16383 digits after the point (``1e-20000``, or a fraction of 17000 digits,
#: overflows it). A body with an exponent of -1000 or less, or with a run of a thousand
#: digits, is encoded again (such text inside a string only costs that).
_MINUS_DIGITS = re.compile(rb"-\d{4}")  # a literal first: searched fast, unlike [eE]-
_LONG_DIGITS = re.compile(rb"\d{1000}")
#: Below this size no fraction can pass the limit with an exponent of three digits.
_LONG_BODY = 15_000


def _numeric_risk(body: bytes) -> bool:
    """Whether ``body`` may hold a number out of jsonb's range (see :data:`_MINUS_DIGITS`):
    about half a microsecond for a usual delivery."""
    if any(body[m.start() - 1 : m.start()] in (b"e", b"E") for m in _MINUS_DIGITS.finditer(body)):
        return True
    return len(body) > _LONG_BODY and _LONG_DIGITS.search(body) is not None


def _body_text(body: bytes, payload: dict[str, Any]) -> str:
    """The delivery's JSON text for its jsonb column: the body as Meta sent it, when
    PostgreSQL reads it as Python did (a UTF-8 object, no NUL: :func:`parse_body` left
    ``payload`` as the body says; no number out of jsonb's range), else ``payload``
    encoded again."""
    if body[:1] == b"{" and b"\\u0000" not in body and not _numeric_risk(body):
        # json.loads also reads UTF-16/32 and lone surrogates: those are encoded again
        with contextlib.suppress(UnicodeDecodeError):
            return body.decode()
    return json.dumps(payload)


def _log_skipped(delivery: ParsedDelivery, delivery_id: uuid.UUID) -> None:
    if delivery.skipped:
        log.warning(
            "webhook elements without an id or sender skipped",
            extra={"delivery_id": str(delivery_id), "skipped": delivery.skipped},
        )


async def _vouchers(session: AsyncSession, named: Named) -> list[KnownNumber]:
    """Numbers, removed ones included, that the body names or that share an account with
    it: one per distinct app secret, at most :data:`MAX_CANDIDATE_SECRETS`."""
    if not named.phone_number_ids and not named.entry_ids:
        return []
    rows = await session.execute(
        _VOUCHERS,
        {"phone_number_ids": list(named.phone_number_ids), "waba_ids": list(named.entry_ids)},
    )
    return [KnownNumber(**row._mapping) for row in rows]


#: Elements (messages, statuses, WABA changes of each kind) recorded per part of a
#: signed delivery: keeps every statement's parameters far below PostgreSQL's 32,767.
RECORD_PART = 500


def _parts(delivery: ParsedDelivery, size: int) -> Iterator[ParsedDelivery]:
    """``delivery`` in parts of at most ``size`` messages, ``size`` statuses and ``size``
    WABA changes (itself when it fits), in order."""
    longest = max(len(delivery.messages), len(delivery.statuses), len(delivery.waba_changes))
    if longest <= size:
        yield delivery
        return
    for start in range(0, longest, size):
        yield ParsedDelivery(
            numbers=delivery.numbers,
            messages=delivery.messages[start : start + size],
            statuses=delivery.statuses[start : start + size],
            waba_changes=delivery.waba_changes[start : start + size],
        )


#: Numbers with one of the phone_number_ids or in one of the WABAs, removed ones included.
_NAMED_EVER = select(
    numbers.c.id,
    numbers.c.organization_id,
    numbers.c.phone_number_id,
    numbers.c.waba_id,
    numbers.c.display_phone_number,
    numbers.c.app_secret_enc,
).where(
    or_(
        numbers.c.phone_number_id == any_(bindparam("phone_number_ids", type_=ARRAY(String))),
        numbers.c.waba_id == any_(bindparam("waba_ids", type_=ARRAY(String))),
    ),
)
_NUMBERS_NAMED = _NAMED_EVER.where(ACTIVE)
#: One of those numbers per distinct app secret (they vouch for an unknown number's body).
_VOUCHERS = _NAMED_EVER.ext(distinct_on(numbers.c.app_secret_enc)).limit(MAX_CANDIDATE_SECRETS)


async def _numbers_named(
    session: AsyncSession, phone_number_ids: frozenset[str], waba_ids: frozenset[str]
) -> list[KnownNumber]:
    """Active numbers with one of ``phone_number_ids`` or in one of ``waba_ids`` (any tenant)."""
    if not phone_number_ids and not waba_ids:
        return []
    rows = await session.execute(
        _NUMBERS_NAMED,
        {"phone_number_ids": list(phone_number_ids), "waba_ids": list(waba_ids)},
    )
    return [KnownNumber(**row._mapping) for row in rows]


def _split(
    found: list[KnownNumber], phone_number_ids: list[str], waba_ids: list[str]
) -> tuple[dict[str, KnownNumber], list[KnownNumber]]:
    """Numbers named by phone_number_id (messages, statuses) and those of the named WABAs."""
    phones, wabas = set(phone_number_ids), set(waba_ids)
    by_phone = {n.phone_number_id: n for n in found if n.phone_number_id in phones}
    return by_phone, [n for n in found if n.waba_id in wabas]


async def _record(
    session: AsyncSession,
    delivery: ParsedDelivery,
    known: dict[str, KnownNumber],
    of_wabas: list[KnownNumber],
    delivery_id: uuid.UUID,
    raw: dict[str, Any] | None,
) -> int:
    """Insert the raw delivery (unless None: recorded with an earlier part) and the new
    messages/statuses/WABA changes, tenant by tenant; count the new ones."""
    created = 0
    tenants = [n.organization_id for n in [*known.values(), *of_wabas]]
    for i, organization_id in enumerate(dict.fromkeys(tenants)):
        await _bind_tenant(session, organization_id, raw if i == 0 else None)
        for change in delivery.waba_changes:
            mine = [
                n
                for n in of_wabas
                if n.organization_id == organization_id and n.waba_id == change.waba_id
            ]
            if mine:
                created += await record_waba_change(
                    session, change, organization_id, mine, delivery_id
                )
        created += await _record_messages(
            session, _of(delivery.messages, known, organization_id), known, delivery_id
        )
        for status in _of(delivery.statuses, known, organization_id):
            created += await _record_status(
                session, status, known[status.phone_number_id], delivery_id
            )
    return created


def _of(
    items: Iterable[_Item], known: dict[str, KnownNumber], organization_id: uuid.UUID
) -> list[_Item]:
    return [
        i
        for i in items
        if i.phone_number_id in known
        and known[i.phone_number_id].organization_id == organization_id
    ]


# Built once (statement construction costs more client CPU than a loopback round trip).
_BIND_TENANT = bind_select()
_BIND_TENANT_WITH_DELIVERY = bind_select().add_cte(
    webhook_deliveries.insert()
    .values(
        id=bindparam("delivery_id"),
        received_at=bindparam("received_at"),
        body_sha256=bindparam("body_sha256"),
        signature=bindparam("signature"),
        body=bindparam("body"),
    )
    .cte("raw_delivery")
)


async def _bind_tenant(
    session: AsyncSession, organization_id: uuid.UUID, raw: dict[str, Any] | None = None
) -> None:
    """Leave the cross-tenant lookup mode: RLS checks every following write.

    ``raw`` (the delivery, whose table has no RLS) is inserted in the same round trip.
    """
    session.info["organization_id"] = organization_id
    session.info["bypass_rls"] = False
    org = {"org": str(organization_id)}
    if raw is None:
        await session.execute(_BIND_TENANT, org)
    else:
        await session.execute(_BIND_TENANT_WITH_DELIVERY, {**org, **raw})


@dataclass(frozen=True, slots=True)
class _Pending:
    """A delivery of remembered numbers of one organization, waiting for its write."""

    #: (id, received_at, body_sha256, signature, body as JSON text)
    raw: tuple[uuid.UUID, datetime, str, str, str]
    known: dict[str, KnownNumber]
    messages: list[InboundMessage]
    statuses: list[StatusUpdate]


def _delivery_rows(batch: list[_Pending]) -> list[list[Any]]:
    """The raw deliveries as the five arrays that begin the fast path's statements."""
    return [list(column) for column in zip(*(p.raw for p in batch), strict=True)]


def _message_rows(batch: list[_Pending]) -> list[Any]:
    """The arguments of :data:`MESSAGES_SQL` after the deliveries' five: one array per
    column of the messages, their events (JSON text) and their media rows, then the
    outbox relay's channel. A message already in the batch is left out (new or not, the
    first one answers for it)."""
    seen: set[uuid.UUID] = set()
    m: list[list[Any]] = [[] for _ in range(9)]
    e: list[list[Any]] = [[] for _ in range(6)]
    f: list[list[Any]] = [[] for _ in range(6)]
    headers = json.dumps(inject_headers())
    for message, number, delivery_id in (
        (message, p.known[message.phone_number_id], p.raw[0])
        for p in batch
        for message in p.messages
    ):
        message_id = message_id_for_wamid(message.phone_number_id, message.wamid)
        if message_id in seen:
            continue  # the same message twice in one delivery, or in one batch
        seen.add(message_id)
        org = number.organization_id
        contact_id = contact_id_for(org, message.wa_id, message.user_id)
        for column, value in zip(
            m,
            (
                message_id,
                org,
                number.id,
                message.phone_number_id,
                message.wamid,
                contact_id,
                message.type[:60],
                delivery_id,
                message.timestamp,
            ),
            strict=True,
        ):
            column.append(value)
        if message.media is not None:
            # Recorded for a fetch from Meta after intake (media worker), never inside
            # the webhook request; the event names the route that serves it once fetched.
            for column, value in zip(
                f,
                (
                    message_id,
                    org,
                    number.id,
                    message.media.media_id[:200],
                    (message.media.mime_type or "")[:200] or None,
                    (message.media.sha256 or "")[:100] or None,
                ),
                strict=True,
            ):
                column.append(value)
        event = _received_event(message, number, message_id, contact_id)
        for column, value in zip(
            e,
            (message_id, event.id, event.topic, event.subject, event.to_bytes().decode(), headers),
            strict=True,
        ):
            column.append(value)
    return [*m, *e, *f, OUTBOX_CHANNEL]


#: Inserts the deliveries (``$1``-``$5``, none for the general path), the messages (ON
#: CONFLICT DO NOTHING: same id or same wamid on the number), then the media rows and the
#: events of the new messages only (so Meta's redelivery adds nothing), and wakes the
#: outbox relay; returns the delivery id of each new message. ONE statement, prepared once
#: per connection; every row comes as arrays (``unnest``), whatever the count.
MESSAGES_SQL = """
WITH raw_delivery AS (
    INSERT INTO webhook_deliveries (id, received_at, body_sha256, signature, body)
    SELECT d.id, d.received_at, d.body_sha256, d.signature, d.body::jsonb
    FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[])
        AS d(id, received_at, body_sha256, signature, body)
), new_messages AS (
    INSERT INTO inbound_messages
        (id, organization_id, number_id, phone_number_id, wamid, contact_id, type,
         delivery_id, sent_at)
    SELECT * FROM unnest($6::uuid[], $7::uuid[], $8::uuid[], $9::text[], $10::text[],
                         $11::uuid[], $12::text[], $13::uuid[], $14::timestamptz[])
    ON CONFLICT DO NOTHING
    RETURNING id, delivery_id
), staged_events AS (
    INSERT INTO outbox (event_id, topic, key, event, headers)
    SELECT e.event_id, e.topic, e.key, e.event::jsonb, e.headers::jsonb
    FROM unnest($15::uuid[], $16::uuid[], $17::text[], $18::text[], $19::text[], $20::text[])
        WITH ORDINALITY AS e(message_id, event_id, topic, key, event, headers, ord)
    WHERE e.message_id IN (SELECT id FROM new_messages)
    ORDER BY e.ord
), new_media AS (
    INSERT INTO media_files (message_id, organization_id, number_id, media_id, mime_type, sha256)
    SELECT f.* FROM unnest($21::uuid[], $22::uuid[], $23::uuid[], $24::text[], $25::text[],
                           $26::text[])
        AS f(message_id, organization_id, number_id, media_id, mime_type, sha256)
    WHERE f.message_id IN (SELECT id FROM new_messages)
    ON CONFLICT DO NOTHING
)
SELECT (SELECT array_agg(delivery_id) FROM new_messages), pg_notify($27::text, '')
"""
_NO_DELIVERY: list[list[Any]] = [[], [], [], [], []]

#: The statuses of one organization's numbers, as :func:`_record_status` records them one
#: at a time, in ONE statement: each status's message found in the send log (by wamid, or
#: by the echoed callback data while the send log has no other wamid for it), the status
#: rows (ON CONFLICT DO NOTHING on (phone_number_id, wamid, status): a repeat, in this
#: delivery or a later one, adds nothing), the events of the new ones only, in order, with
#: the message id found (data and subject), the raw delivery and the relay's wake-up.
#: When a status names a send in flight or unanswered (``$21``), it writes nothing and
#: says so (first column): the general path settles those with the sender, row locked.
#: Returns (that flag, the delivery id of each new status). Deliveries: ``$1``-``$5``.
STATUSES_SQL = """
WITH statuses AS MATERIALIZED (
    SELECT s.*, l.message_id, l.state
    FROM unnest($6::uuid[], $7::uuid[], $8::text[], $9::text[], $10::text[], $11::uuid[],
                $12::timestamptz[], $13::uuid[], $14::text[], $15::text[], $16::text[],
                $17::uuid[])
        WITH ORDINALITY AS s(id, number_id, phone_number_id, wamid, status, opaque,
                             occurred_at, event_id, topic, subject, event, delivery_id, ord)
    LEFT JOIN LATERAL (
        SELECT g.message_id, g.state FROM send_log g
        WHERE g.organization_id = $18::uuid AND g.number_id = s.number_id
          AND (g.wamid = s.wamid
               OR (g.message_id = s.opaque AND (g.wamid IS NULL OR g.wamid = s.wamid)))
        LIMIT 1
    ) l ON true
), rare AS (
    SELECT EXISTS (SELECT FROM statuses WHERE state = ANY($21::text[])) AS found
), raw_delivery AS (
    INSERT INTO webhook_deliveries (id, received_at, body_sha256, signature, body)
    SELECT d.id, d.received_at, d.body_sha256, d.signature, d.body::jsonb
    FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[])
        AS d(id, received_at, body_sha256, signature, body)
    WHERE NOT (SELECT found FROM rare)
), new_statuses AS (
    INSERT INTO status_updates
        (id, organization_id, number_id, phone_number_id, wamid, status, message_id,
         delivery_id, occurred_at)
    SELECT s.id, $18::uuid, s.number_id, s.phone_number_id, s.wamid, s.status, s.message_id,
           s.delivery_id, s.occurred_at
    FROM statuses s
    WHERE NOT (SELECT found FROM rare)
    ORDER BY s.ord
    ON CONFLICT DO NOTHING
    RETURNING id, delivery_id
), staged_events AS (
    INSERT INTO outbox (event_id, topic, key, event, headers)
    SELECT s.event_id, s.topic, coalesce(s.message_id::text, s.subject),
           jsonb_set(
               jsonb_set(s.event::jsonb, '{subject}',
                         to_jsonb(coalesce(s.message_id::text, s.subject))),
               '{data,message_id}', coalesce(to_jsonb(s.message_id), 'null'::jsonb)),
           $19::text::jsonb
    FROM statuses s
    WHERE s.id IN (SELECT id FROM new_statuses)
    ORDER BY s.ord
)
SELECT (SELECT found FROM rare), (SELECT array_agg(delivery_id) FROM new_statuses),
       pg_notify($20::text, '')
"""


async def _record_messages(
    session: AsyncSession,
    batch: list[InboundMessage],
    known: dict[str, KnownNumber],
    delivery_id: uuid.UUID,
) -> int:
    """Insert one tenant's messages, their media rows and their events (the session is
    bound to the tenant): :data:`MESSAGES_SQL` on the session's connection."""
    if not batch:
        return 0
    conn = await driver(session)
    # The delivery is recorded by the tenant binding's statement: only its id is used here.
    rows = _message_rows([_Pending((delivery_id, datetime.now(UTC), "", "", ""), known, batch, [])])
    return len(await conn.fetchval(MESSAGES_SQL, *_NO_DELIVERY, *rows) or ())


def _received_event(
    message: InboundMessage, number: KnownNumber, message_id: uuid.UUID, contact_id: uuid.UUID
) -> CloudEvent:
    org = number.organization_id
    media = message.media
    payload = MessageReceived(
        message_id=message_id,
        wamid=message.wamid,
        organization_id=org,
        number_id=number.id,
        phone_number_id=message.phone_number_id,
        display_phone_number=message.display_phone_number or number.display_phone_number,
        contact_id=contact_id,
        wa_id=message.wa_id,
        user_id=message.user_id,
        profile_name=message.profile_name,
        type=message.type,
        text=message.text,
        content=message.content,
        context=message.context,
        timestamp=message.timestamp,
        media=media.model_copy(update={"download_path": download_path(message_id)})
        if media is not None
        else None,
        reaction=message.reaction,
        referral=message.referral,
    )
    return CloudEvent.of(
        payload,
        subject=contact_id,
        tenant_id=org,
        event_id=uuid.uuid5(PYTAKE_NAMESPACE, f"event:received:{message_id}"),
    )


async def _record_status(
    session: AsyncSession, status: StatusUpdate, number: KnownNumber, delivery_id: uuid.UUID
) -> int:
    org = number.organization_id
    message_id, state = await _outbound_message_id(session, status, number)
    if message_id is not None and state in (CLAIMED, UNCONFIRMED, ORPHANED, RESERVED):
        # Rare (a send in flight, or unanswered): serialise with the sender on the row.
        state = await session.scalar(
            select(send_log.c.state)
            .where(
                send_log.c.organization_id == org,
                send_log.c.message_id == message_id,
            )
            .with_for_update()
        )
        if state in (UNCONFIRMED, ORPHANED, RESERVED):
            # RESERVED: an orphaned send reserved again as its window ended; Meta has it.
            await _confirm(session, status, number, message_id)
        elif state == CLAIMED:
            # Meta has it while our call still waits: tell the sender, should it time out.
            await session.execute(
                update(send_log)
                .where(
                    send_log.c.organization_id == org,
                    send_log.c.message_id == message_id,
                    send_log.c.state == CLAIMED,
                    send_log.c.wamid.is_(None),
                )
                .values(wamid=status.wamid[:200])
            )
    inserted = (
        await session.execute(
            pg_insert(status_updates)
            .values(
                id=uuid.uuid4(),
                organization_id=org,
                number_id=number.id,
                phone_number_id=status.phone_number_id,
                wamid=status.wamid,
                status=status.status[:40],
                message_id=message_id,
                delivery_id=delivery_id,
                occurred_at=status.timestamp,
            )
            .on_conflict_do_nothing()
            .returning(status_updates.c.id)
        )
    ).first()
    if inserted is None:
        return 0
    await add_event(session, _status_event(status, number, message_id))
    return 1


def _status_event(
    status: StatusUpdate, number: KnownNumber, message_id: uuid.UUID | None
) -> CloudEvent:
    """The ``status_updated`` event of a status recorded for the first time (its id is
    derived from the status's dedupe key: a redelivery stages the same event)."""
    org = number.organization_id
    payload = MessageStatusUpdated(
        message_id=message_id,
        wamid=status.wamid,
        organization_id=org,
        number_id=number.id,
        status=status.status,
        timestamp=status.timestamp,
        recipient_id=status.recipient_id,
        errors=status.errors,
        pricing=status.pricing,
    )
    dedupe = f"event:status:{status.phone_number_id}:{status.wamid}:{status.status}"
    return CloudEvent.of(
        payload,
        subject=message_id or uuid.uuid5(PYTAKE_NAMESPACE, f"wamid:{status.wamid}"),
        tenant_id=org,
        event_id=uuid.uuid5(PYTAKE_NAMESPACE, dedupe),
    )


def _status_rows(batch: list[_Pending], organization_id: uuid.UUID) -> list[Any]:
    """The arguments of :data:`STATUSES_SQL` after the deliveries' five: one array per
    column of the statuses and of their events (staged with no message id: the statement
    fills in the one it finds in the send log), then the organization, the events'
    tracing headers, the outbox relay's channel and the states the general path settles."""
    c: list[list[Any]] = [[] for _ in range(12)]
    for item, number, delivery_id in (
        (item, p.known[item.phone_number_id], p.raw[0]) for p in batch for item in p.statuses
    ):
        event = _status_event(item, number, None)
        for column, value in zip(
            c,
            (
                uuid.uuid4(),
                number.id,
                item.phone_number_id,
                item.wamid,
                item.status[:40],
                _uuid(item.callback_data),
                item.timestamp,
                event.id,
                event.topic,
                event.subject,
                event.to_bytes().decode(),
                delivery_id,
            ),
            strict=True,
        ):
            column.append(value)
    headers = json.dumps(inject_headers())
    return [
        *c,
        organization_id,
        headers,
        OUTBOX_CHANNEL,
        [CLAIMED, UNCONFIRMED, ORPHANED, RESERVED],
    ]


async def _outbound_message_id(
    session: AsyncSession, status: StatusUpdate, number: KnownNumber
) -> tuple[uuid.UUID | None, str | None]:
    """Our message id and its send state: by wamid in the send log, or by the echoed
    callback data.

    Both are looked up in this organization's send log only, so a payload can
    never point a status at another tenant's message.
    """
    match = send_log.c.wamid == status.wamid
    opaque = _uuid(status.callback_data)
    if opaque is not None:
        # The status can overtake our record of the wamid (Meta answered, we have not
        # committed yet), or Meta's answer never came (unconfirmed): then the echoed
        # message id finds the send.
        match = or_(
            match,
            and_(
                send_log.c.message_id == opaque,
                or_(send_log.c.wamid.is_(None), send_log.c.wamid == status.wamid),
            ),
        )
    found = (
        await session.execute(
            select(send_log.c.message_id, send_log.c.state)
            .where(
                send_log.c.organization_id == number.organization_id,
                send_log.c.number_id == number.id,
                match,
            )
            .limit(1)
        )
    ).first()
    return (found.message_id, found.state) if found is not None else (None, None)


#: A send request due now (not one a dispatcher holds), the dispatchers told at commit.
_WAKE_REQUEST = text(
    """
    UPDATE send_queue SET not_before = least(not_before, now())
    WHERE message_id = :message_id AND (taken_until IS NULL OR taken_until < now())
    RETURNING pg_notify(:channel, priority::text)
    """
)


async def _confirm(
    session: AsyncSession, status: StatusUpdate, number: KnownNumber, message_id: uuid.UUID
) -> None:
    """Meta has the message whose send got no answer: it is ``sent``, with Meta's wamid.

    Any status (even ``failed``) proves Meta accepted it. The UPDATE races the
    sender's end of the confirm window on the row: only the one that moves it
    emits an outcome event.
    """
    moved = (
        await session.execute(
            update(send_log)
            .where(
                send_log.c.organization_id == number.organization_id,
                send_log.c.message_id == message_id,
                send_log.c.state.in_((UNCONFIRMED, ORPHANED, RESERVED)),
            )
            .values(state=SENT, wamid=status.wamid[:200], updated_at=func.now())
            .returning(send_log.c.recipient)
        )
    ).first()
    if moved is None:
        return
    # Its request waits in the queue for the rest of the window (and the customer's next
    # messages behind it): due now, the dispatcher finds it settled and goes on.
    await session.execute(_WAKE_REQUEST, {"message_id": message_id, "channel": SEND_QUEUE_CHANNEL})
    log.info(
        "unanswered send confirmed by WhatsApp's status webhook",
        extra={"message_id": str(message_id), "status": status.status},
    )
    sent = MessageSent(
        message_id=message_id,
        organization_id=number.organization_id,
        number_id=number.id,
        wamid=status.wamid,
        to=moved.recipient,
        sent_at=status.timestamp,
    )
    await add_event(
        session,
        CloudEvent.of(
            sent,
            subject=message_id,
            tenant_id=number.organization_id,
            event_id=uuid.uuid5(PYTAKE_NAMESPACE, f"event:sent:{message_id}"),
        ),
    )


def _uuid(raw: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw) if raw else None
    except ValueError:
        return None
