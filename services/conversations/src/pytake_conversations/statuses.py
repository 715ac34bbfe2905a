"""Outbound messages' statuses, a consumer batch at a time (set-based).

``message.sent`` / ``message.failed`` (whatsapp-gateway's answer from the Graph API) and
``message.status_updated`` (Meta's status webhooks: sent, delivered, read, failed) move
an outbound message's status forward only (``domain.status_moves``). The message is
found by our id when the event carries it, else by its wamid; a wamid the message lacks
is stored whatever the status does (a ``sent`` arriving after ``delivered`` still teaches
us the wamid), unless another message of the organization has it.

A campaign brings four of these per message. One :class:`SetHandler` takes the three
types together, in the batch's order (their order matters: a ``sent`` then a ``read``
both move; a ``read`` then a ``sent`` only the first), and applies an organization's
records in four statements whatever their number: lock every message they name (by id
or wamid), one update of each changed message to its final state, the stream frames
(``message.updated`` after each change, as it stood then) and the outbox events
(``message.status_changed`` for each move). The folding is done here, record by record,
exactly as one transaction per record would (tests compare both).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pytake_common import rawpg
from pytake_common.consumer import SetHandler
from pytake_common.event_types import (
    WHATSAPP_MESSAGE_FAILED_V1,
    WHATSAPP_MESSAGE_SENT_V1,
    WHATSAPP_MESSAGE_STATUS_UPDATED_V1,
)
from pytake_common.events import CloudEvent, EventData, TenantEventData
from pytake_common.outbox import emit_many
from pytake_conversations.domain import FAILED, OUTBOUND, status_moves
from pytake_conversations.events import MessageStatusChanged, Pricing
from pytake_conversations.stream import publish_many
from pytake_conversations.views import Message

log = logging.getLogger(__name__)


# --- what conversations reads of the gateway's events (tolerant readers) ---------------


class MessageSent(TenantEventData):
    message_id: uuid.UUID
    organization_id: uuid.UUID
    wamid: str | None = None
    sent_at: datetime


class MessageFailed(TenantEventData):
    message_id: uuid.UUID
    organization_id: uuid.UUID
    error_code: int | None = None
    error_title: str | None = None
    error_detail: str | None = None
    failed_at: datetime


class StatusError(TenantEventData):
    code: int | None = None
    title: str | None = None
    message: str | None = None
    details: Any = None


class StatusPricing(TenantEventData):
    category: str | None = None
    billable: bool | None = None
    pricing_model: str | None = None


class StatusUpdated(TenantEventData):
    message_id: uuid.UUID | None = None
    wamid: str | None = None
    organization_id: uuid.UUID
    status: str
    timestamp: datetime
    errors: list[StatusError] = Field(default_factory=list)
    pricing: StatusPricing | None = None


class StatusFact(BaseModel):
    """Any of the three events as what it says of one outbound message."""

    model_config = ConfigDict(frozen=True)

    organization_id: uuid.UUID
    message_id: uuid.UUID | None
    wamid: str | None
    status: str
    at: datetime
    error_code: int | None = None
    error_detail: str | None = None
    pricing: Pricing | None = None


def read_fact(event: CloudEvent) -> StatusFact:
    if event.type == WHATSAPP_MESSAGE_SENT_V1:
        s = event.parse_data(MessageSent)
        return StatusFact(
            organization_id=s.organization_id,
            message_id=s.message_id,
            wamid=s.wamid,
            status="sent",
            at=s.sent_at,
        )
    if event.type == WHATSAPP_MESSAGE_FAILED_V1:
        f = event.parse_data(MessageFailed)
        return StatusFact(
            organization_id=f.organization_id,
            message_id=f.message_id,
            wamid=None,
            status=FAILED,
            at=f.failed_at,
            error_code=f.error_code,
            error_detail=f.error_detail or f.error_title,
        )
    u = event.parse_data(StatusUpdated)
    code: int | None = None
    detail: str | None = None
    if u.errors:
        first = u.errors[0]
        code = first.code
        details = first.details if first.details not in (None, "", {}) else None
        detail = str(details) if details is not None else (first.message or first.title)
    return StatusFact(
        organization_id=u.organization_id,
        message_id=u.message_id,
        wamid=u.wamid,
        status=u.status,
        at=u.timestamp,
        error_code=code,
        error_detail=detail,
        pricing=Pricing(**u.pricing.model_dump()) if u.pricing is not None else None,
    )


#: The batch's messages by id or wamid: the keys first (the wamids through their unique
#: index), then the rows by primary key in id order; planned for each execution
#: (rawpg.CUSTOM_PLANS). An OR of the two arrays, under the generic plan PostgreSQL kept
#: from the young table, scanned every message of the database for each batch.
_LOCK = """
SELECT * FROM messages
WHERE organization_id = $1 AND id = ANY(ARRAY(
    SELECT unnest($2::uuid[])
    UNION SELECT id FROM messages WHERE organization_id = $1 AND wamid = ANY($3::text[])))
ORDER BY id
FOR UPDATE
"""

_UPDATE = """
UPDATE messages AS m
SET wamid = u.wamid, status = u.status, status_at = u.status_at,
    error_code = u.error_code, error_detail = u.error_detail
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::int[], $6::text[])
    AS u(id, wamid, status, status_at, error_code, error_detail)
WHERE m.id = u.id AND m.id = ANY($1::uuid[])
"""


async def apply_statuses(session: Any, facts: list[StatusFact]) -> None:
    by_org: dict[uuid.UUID, list[StatusFact]] = {}
    for fact in facts:
        by_org.setdefault(fact.organization_id, []).append(fact)
    conn = await rawpg.driver(session)
    await conn.execute(rawpg.CUSTOM_PLANS)  # for the batch's transaction (_LOCK)
    for org, mine in by_org.items():
        await _apply(session, conn, org, mine)


async def _apply(session: Any, conn: Any, org: uuid.UUID, facts: list[StatusFact]) -> None:
    ids = list({f.message_id for f in facts if f.message_id is not None})
    wamids = list({f.wamid for f in facts if f.wamid})
    rows = await conn.fetch(_LOCK, org, ids, wamids)
    by_id: dict[uuid.UUID, dict[str, Any]] = {r["id"]: dict(r) for r in rows}
    # every message of the organization with one of the facts' wamids is loaded: the
    # index says whether a wamid is taken, and keeps up with the wamids stored below
    by_wamid = {m["wamid"]: m for m in by_id.values() if m["wamid"] is not None}
    changed: dict[uuid.UUID, dict[str, Any]] = {}
    frames: list[tuple[str, dict[str, Any]]] = []
    events: list[tuple[EventData, uuid.UUID]] = []
    for f in facts:
        row = by_id.get(f.message_id) if f.message_id is not None else None
        if row is None and f.wamid:
            row = by_wamid.get(f.wamid)
        if row is None or row["direction"] != OUTBOUND:
            log.info(
                "status for a message we did not send",
                extra={"wamid": f.wamid, "status": f.status, "message_id": str(f.message_id)},
            )
            continue
        values: dict[str, Any] = {}
        if f.wamid and row["wamid"] is None and f.wamid not in by_wamid:
            values["wamid"] = f.wamid
            by_wamid[f.wamid] = row
        moved = status_moves(row["status"], f.status)
        if moved:
            values.update(status=f.status, status_at=f.at)
            if f.status == FAILED:
                values.update(error_code=f.error_code, error_detail=f.error_detail)
        if values:
            row.update(values)
            changed[row["id"]] = row
            frames.append(("message.updated", {"message": Message.of(row).model_dump(mode="json")}))
        if moved:
            failed = f.status == FAILED
            status_changed = MessageStatusChanged(
                message_id=row["id"],
                organization_id=org,
                conversation_id=row["conversation_id"],
                status=f.status,
                error_code=f.error_code if failed else None,
                error_detail=f.error_detail if failed else None,
                at=f.at,
                pricing=f.pricing,
            )
            events.append((status_changed, row["id"]))
    if not changed:
        return
    final = list(changed.values())
    await conn.execute(
        _UPDATE,
        [m["id"] for m in final],
        [m["wamid"] for m in final],
        [m["status"] for m in final],
        [m["status_at"] for m in final],
        [m["error_code"] for m in final],
        [m["error_detail"] for m in final],
    )
    await publish_many(session, org, frames)
    await emit_many(session, events)


#: one instance for the three types: their records come together, in the batch's order
STATUS_SET = SetHandler(StatusFact, apply_statuses, parse=read_fact)

STATUS_HANDLERS = {
    WHATSAPP_MESSAGE_SENT_V1: STATUS_SET,
    WHATSAPP_MESSAGE_FAILED_V1: STATUS_SET,
    WHATSAPP_MESSAGE_STATUS_UPDATED_V1: STATUS_SET,
}
