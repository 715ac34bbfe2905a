"""How recipients move after dispatch: from conversations' message and conversation events.

- ``message.send_requested`` with a ``recipient_id``: the message exists (``accepted``,
  with its message and conversation ids);
- ``message.status_changed``: ``sent`` / ``delivered`` / ``read`` / ``failed`` (Meta's code
  and reason, e.g. 131049 or 131050), never backwards; its ``pricing`` gives the cost;
- ``message.refused``: conversations could not make the message (``failed`` with its code);
- ``message.appended`` inbound in a conversation a recipient's message is in: ``replied``;
- ``conversation.opened`` started by a user: a business-initiated recipient of the number
  (the messaging limit counts it with campaigns' own sends).

Every move is guarded by the status order (:func:`rules.moves_forward`), so a repeated
or late event changes nothing; a message or conversation id is linked once (the first
wins), a pricing is recorded once (the first).

Set-based: a campaign send brings campaigns five of these events (send_requested,
appended, three status changes, often a conversation.opened), each one or two guarded
UPDATEs when handled one at a time. One :class:`SetHandler` takes the five types
together, in the batch's order: it locks every recipient they name (by id, message or
conversation) in one statement, applies the events to those rows in memory one after
another as the per-event statements did, writes each changed recipient once, and the
initiations in one insert.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_campaigns import rules
from pytake_common import event_types as et
from pytake_common import rawpg
from pytake_common.consumer import Handler, SetHandler
from pytake_common.events import CloudEvent, TenantEventData

#: the timestamp column each status sets
STAMPS = {
    rules.ACCEPTED: "accepted_at",
    rules.SENT: "sent_at",
    rules.DELIVERED: "delivered_at",
    rules.READ: "read_at",
    rules.REPLIED: "replied_at",
    rules.FAILED: "failed_at",
}


class SendRequested(TenantEventData):
    organization_id: uuid.UUID
    message_id: uuid.UUID
    conversation_id: uuid.UUID
    recipient_id: uuid.UUID | None = None


class Appended(TenantEventData):
    organization_id: uuid.UUID
    message_id: uuid.UUID
    conversation_id: uuid.UUID
    direction: str
    created_at: datetime
    recipient_id: uuid.UUID | None = None


class Pricing(TenantEventData):
    category: str | None = None
    billable: bool | None = None


class StatusChanged(TenantEventData):
    organization_id: uuid.UUID
    message_id: uuid.UUID
    status: str
    error_code: int | None = None
    error_detail: str | None = None
    at: datetime
    pricing: Pricing | None = None


class Refused(TenantEventData):
    organization_id: uuid.UUID
    recipient_id: uuid.UUID
    code: str
    detail: str | None = None


class Opened(TenantEventData):
    organization_id: uuid.UUID
    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    number_id: uuid.UUID
    opened_at: datetime
    started_by: uuid.UUID | None = None


# --- a consumer batch's progress of an organization at once ------------------------------

#: The recipients the batch names by id, message or conversation. The keys are found
#: first, each kind through its own index, and the rows are then taken by primary key in
#: id order (the order every writer locks in). Planned for each execution
#: (rawpg.CUSTOM_PLANS): the table starts empty and a freeze adds a whole audience at
#: once. With ``WHERE id IN (keys)`` and a generic plan made while the table was empty,
#: PostgreSQL scanned every recipient and, for each, every key lookup again: up to 2.4 s
#: a call at 2,000 recipients (campaign_send.py --explain 20) until autovacuum's ANALYZE,
#: the first 12-18 s of a benchmark's campaign (an OR of the three arrays scanned the
#: table even when fresh).
#: Row-level security keeps every part to the transaction's organization.
_LOCK = """
SELECT id, status, message_id, conversation_id, error_code, error_detail, pricing_category,
       billable, cost, dispatched_at, accepted_at, sent_at, delivered_at, read_at,
       replied_at, failed_at
FROM campaign_recipients
WHERE id = ANY(ARRAY(
    SELECT unnest($1::uuid[])
    UNION SELECT id FROM campaign_recipients WHERE message_id = ANY($2::uuid[])
    UNION SELECT id FROM campaign_recipients WHERE conversation_id = ANY($3::uuid[])))
ORDER BY id
FOR UPDATE
"""

_WRITE = """
UPDATE campaign_recipients AS r
SET status = u.status, message_id = u.message_id, conversation_id = u.conversation_id,
    error_code = u.error_code, error_detail = u.error_detail,
    pricing_category = u.pricing_category, billable = u.billable, cost = u.cost,
    accepted_at = u.accepted_at, sent_at = u.sent_at, delivered_at = u.delivered_at,
    read_at = u.read_at, replied_at = u.replied_at, failed_at = u.failed_at,
    updated_at = CASE WHEN u.moved THEN now() ELSE r.updated_at END
FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::text[], $6::text[],
            $7::text[], $8::bool[], $9::numeric[], $10::timestamptz[], $11::timestamptz[],
            $12::timestamptz[], $13::timestamptz[], $14::timestamptz[], $15::timestamptz[],
            $16::bool[])
    AS u(id, status, message_id, conversation_id, error_code, error_detail, pricing_category,
         billable, cost, accepted_at, sent_at, delivered_at, read_at, replied_at, failed_at,
         moved)
WHERE r.id = u.id AND r.id = ANY($1::uuid[])
"""

#: what a batch may change in a recipient (``moved``: its status, so ``updated_at``)
WRITTEN = (
    "status",
    "message_id",
    "conversation_id",
    "error_code",
    "error_detail",
    "pricing_category",
    "billable",
    "cost",
    "accepted_at",
    "sent_at",
    "delivered_at",
    "read_at",
    "replied_at",
    "failed_at",
    "moved",
)

_INITIATIONS = """
INSERT INTO initiations (organization_id, number_id, contact_id, at, fact)
SELECT $1, i.number_id, i.contact_id, i.at, i.fact
FROM unnest($2::uuid[], $3::uuid[], $4::timestamptz[], $5::text[])
    AS i(number_id, contact_id, at, fact)
ON CONFLICT (fact) DO NOTHING
"""

#: A business-initiated recipient of a number: (number, contact, when, the fact that
#: counts it once: ``recipient:<id>`` or ``conversation:<id>``).
Initiation = tuple[uuid.UUID, uuid.UUID, datetime, str]


async def record_initiations(conn: Any, org: uuid.UUID, rows: list[Initiation]) -> None:
    """The messaging limit's facts, each once, in one statement."""
    await conn.execute(
        _INITIATIONS,
        org,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
    )


_MODELS: dict[str, type[TenantEventData]] = {
    et.CONVERSATIONS_MESSAGE_SEND_REQUESTED_V1: SendRequested,
    et.CONVERSATIONS_MESSAGE_APPENDED_V1: Appended,
    et.CONVERSATIONS_MESSAGE_STATUS_CHANGED_V1: StatusChanged,
    et.CONVERSATIONS_MESSAGE_REFUSED_V1: Refused,
    et.CONVERSATIONS_CONVERSATION_OPENED_V1: Opened,
}


class Progress(BaseModel):
    """One event of the set: its data, and the event's time (what some moves stamp)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    time: datetime
    data: Any


def _read(event: CloudEvent) -> Progress:
    return Progress.model_construct(time=event.time, data=event.parse_data(_MODELS[event.type]))


class _Rows:
    """An organization's locked recipients, changed in memory as the statements would."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = {r["id"]: r for r in rows}
        self.changed: dict[uuid.UUID, dict[str, Any]] = {}

    def where(self, **match: Any) -> list[dict[str, Any]]:
        """The rows whose one column ``match`` names has that value (by id: a lookup; by
        message or conversation, which a batch's earlier events may have just linked: a
        scan, once per event)."""
        ((column, value),) = match.items()
        if column == "id":
            row = self.rows.get(value)
            return [] if row is None else [row]
        return [r for r in self.rows.values() if r[column] == value]

    def link(
        self, recipient_id: uuid.UUID, message_id: uuid.UUID, conversation_id: uuid.UUID
    ) -> None:
        for r in self.where(id=recipient_id):
            r["message_id"] = r["message_id"] or message_id
            r["conversation_id"] = r["conversation_id"] or conversation_id
            self.changed[r["id"]] = r

    def move(self, rows: list[dict[str, Any]], status: str, at: datetime, **values: Any) -> None:
        for r in rows:
            if rules.moves_forward(r["status"], status):
                r.update(status=status, moved=True, **{STAMPS[status]: at}, **values)
                self.changed[r["id"]] = r


async def apply_progress(
    session: AsyncSession, facts: list[Progress], rates: dict[str, float]
) -> None:
    by_org: dict[uuid.UUID, list[Progress]] = {}
    for fact in facts:
        by_org.setdefault(fact.data.organization_id, []).append(fact)
    conn = await rawpg.driver(session)
    await conn.execute(rawpg.CUSTOM_PLANS)  # for the batch's transaction (_LOCK, _WRITE)
    for org, mine in by_org.items():
        await _apply(conn, org, mine, rates)


async def _apply(conn: Any, org: uuid.UUID, facts: list[Progress], rates: dict[str, float]) -> None:
    ids: set[uuid.UUID] = set()
    messages: set[uuid.UUID] = set()
    conversations: set[uuid.UUID] = set()
    started: list[Opened] = []
    for f in facts:
        d = f.data
        if isinstance(d, Opened):
            if d.started_by is not None:  # the customer wrote first: not business-initiated
                started.append(d)
        elif isinstance(d, StatusChanged):
            messages.add(d.message_id)
        elif isinstance(d, Refused) or d.recipient_id is not None:
            ids.add(d.recipient_id)
        elif isinstance(d, Appended) and d.direction == "inbound":
            conversations.add(d.conversation_id)
    if started:
        await record_initiations(
            conn,
            org,
            [
                (d.number_id, d.contact_id, d.opened_at, f"conversation:{d.conversation_id}")
                for d in started
            ],
        )
    if not (ids or messages or conversations):
        return
    locked = await conn.fetch(_LOCK, list(ids), list(messages), list(conversations))
    rows = _Rows([{**dict(r), "moved": False} for r in locked])
    for f in facts:
        _fold(rows, f, rates)
    if not rows.changed:
        return
    changed = list(rows.changed.values())
    await conn.execute(
        _WRITE, [r["id"] for r in changed], *([r[c] for r in changed] for c in WRITTEN)
    )


def _fold(rows: _Rows, fact: Progress, rates: dict[str, float]) -> None:
    """One event's effect on the locked rows (the per-event handlers' statements)."""
    d = fact.data
    if isinstance(d, SendRequested):
        if d.recipient_id is not None:
            rows.link(d.recipient_id, d.message_id, d.conversation_id)
            rows.move(rows.where(id=d.recipient_id), rules.ACCEPTED, fact.time)
    elif isinstance(d, Appended):
        if d.recipient_id is not None:
            rows.link(d.recipient_id, d.message_id, d.conversation_id)
        elif d.direction == "inbound":
            replied = [
                r
                for r in rows.where(conversation_id=d.conversation_id)
                if r["dispatched_at"] is not None and r["dispatched_at"] <= d.created_at
            ]
            rows.move(replied, rules.REPLIED, d.created_at)
    elif isinstance(d, StatusChanged):
        mine = rows.where(message_id=d.message_id)
        if d.pricing is not None and d.pricing.category:
            for r in mine:
                if r["pricing_category"] is None:
                    r.update(
                        pricing_category=d.pricing.category.lower(),
                        billable=d.pricing.billable,
                        cost=rules.cost_of(d.pricing.category, d.pricing.billable, rates),
                    )
                    rows.changed[r["id"]] = r
        if d.status in (rules.SENT, rules.DELIVERED, rules.READ, rules.FAILED):
            extra: dict[str, Any] = {}
            if d.status == rules.FAILED:
                extra = {
                    "error_code": None if d.error_code is None else str(d.error_code),
                    "error_detail": (d.error_detail or "")[:500] or None,
                }
            rows.move(mine, d.status, d.at, **extra)
    elif isinstance(d, Refused):
        rows.move(
            rows.where(id=d.recipient_id),
            rules.FAILED,
            fact.time,
            error_code=d.code[:60],
            error_detail=(d.detail or "")[:500] or None,
        )


def progress_handlers(rates: dict[str, float]) -> dict[str, Handler]:
    async def apply(session: AsyncSession, facts: list[Progress]) -> None:
        await apply_progress(session, facts, rates)

    # one instance for the five types: their records come together, in the batch's order
    progress = SetHandler(Progress, apply, parse=_read)
    return dict.fromkeys(_MODELS, progress)
