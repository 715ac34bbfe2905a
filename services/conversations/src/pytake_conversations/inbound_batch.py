"""Inbound messages a consumer batch at a time (set-based ``message.received``).

Wired in ``app.py`` for ``whatsapp.message.received`` (it imports ``handlers``, whose
per-message handler it falls back on, so it cannot be registered there). Handled one by one, each
inbound message costs conversations three statements (lock the conversation, insert
the message and update the conversation, frames + outbox event + profile name) in
SQLAlchemy. Here a batch's messages of one organization whose conversation is open
(the common case: a customer writing in an ongoing conversation) take six statements
in all: lock every conversation the batch names, insert the messages, update each
conversation once, the stream frames, the outbox events, the profile names. The
frames and events are exactly the per-message handler's (each message's
``conversation.updated`` carries the conversation as it stood after that message).
Every message of a contact whose conversation must be opened, reopened or woken up
goes through the per-message handler, in the batch's order, after the others.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from pytake_common import rawpg
from pytake_common.consumer import SetHandler
from pytake_common.events import CloudEvent
from pytake_common.outbox import add_events
from pytake_conversations import handlers as per_message
from pytake_conversations.domain import ACTIVE, INBOUND, WAKES_ON_INBOUND, interactive_reply
from pytake_conversations.events import MessageAppended
from pytake_conversations.stream import publish_json
from pytake_conversations.views import conversation_fields, message_fields, page_json

#: Each (contact, number)'s active conversation, locked: one probe of the one-active
#: index per pair (its predicate spelled as the index's, so that a generic plan uses it
#: too; a semi-join could read every active conversation of the organization). ``LIMIT
#: 1`` (there is at most one) keeps the subquery a probe per pair: without it the planner
#: flattened it into a join and, its estimate for the organization a row or two, read
#: every conversation of the organization with the unnest re-read for each (26 ms a call
#: at 5,000 conversations, bench/campaign_consumers.py --n 5000 --statements; 10 ms with
#: it, the probe then taking the (organization, status) index on such statistics).
_LOCK = """
SELECT c.* FROM unnest($2::uuid[], $3::uuid[]) AS k(contact_id, number_id)
CROSS JOIN LATERAL (
    SELECT * FROM conversations
    WHERE organization_id = $1 AND contact_id = k.contact_id AND number_id = k.number_id
      AND status IN ('open', 'pending', 'resolved')
    LIMIT 1
) AS c
ORDER BY c.id
FOR UPDATE OF c
"""
assert "status IN (" + ", ".join(f"'{status}'" for status in ACTIVE) + ")" in _LOCK

_INSERT = """
INSERT INTO messages (id, organization_id, conversation_id, direction, type, text, content,
                      wamid, context_wamid, status, status_at, meta_timestamp)
SELECT m.id, $1, m.conversation_id, 'inbound', m.type, m.text, m.content::jsonb, m.wamid,
       m.context_wamid, 'received', m.at, m.at
FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::timestamptz[]) WITH ORDINALITY
    AS m(id, conversation_id, type, text, content, wamid, context_wamid, at, ord)
ORDER BY m.ord
ON CONFLICT DO NOTHING
RETURNING *
"""

#: Each conversation once: what its new messages change (as the per-message statement).
_UPDATE = """
UPDATE conversations AS c
SET last_inbound_at = GREATEST(c.last_inbound_at, u.last_inbound_at),
    last_message_at = GREATEST(c.last_message_at, now()),
    unread_count = c.unread_count + u.added,
    wa_id = COALESCE(u.wa_id, c.wa_id), user_id = COALESCE(u.user_id, c.user_id),
    updated_at = now()
FROM unnest($2::uuid[], $3::timestamptz[], $4::int[], $5::text[], $6::text[])
    AS u(id, last_inbound_at, added, wa_id, user_id)
WHERE c.organization_id = $1 AND c.id = u.id
RETURNING c.*
"""

#: The customers' WhatsApp profile names, unless contacts' own events gave one already.
_PROFILE_NAMES = """
INSERT INTO contact_replicas (id, organization_id, name)
SELECT p.id, $1, p.name FROM unnest($2::uuid[], $3::text[]) AS p(id, name)
ON CONFLICT DO NOTHING
"""


class Received(BaseModel):
    """A record of the set: its envelope (for the per-message handler) and its data."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    event: CloudEvent
    data: per_message.MessageReceived


def _read(event: CloudEvent) -> Received:
    return Received.model_construct(event=event, data=event.parse_data(per_message.MessageReceived))


async def lock_active(
    conn: Any, org: uuid.UUID, pairs: Iterable[tuple[uuid.UUID, uuid.UUID]]
) -> list[Any]:
    """Each (contact, number)'s active conversation, locked in id order (:data:`_LOCK`);
    campaign sends take the same locks in the same order."""
    listed = list(pairs)
    return list(await conn.fetch(_LOCK, org, [p[0] for p in listed], [p[1] for p in listed]))


async def on_messages_received(session: Any, rows: list[Received]) -> None:
    org = rows[0].data.organization_id
    conn = await rawpg.driver(session)
    locked = await lock_active(conn, org, {(r.data.contact_id, r.data.number_id) for r in rows})
    open_by_pair = {
        (c["contact_id"], c["number_id"]): dict(c)
        for c in locked
        if c["status"] not in WAKES_ON_INBOUND
    }
    fast = [r for r in rows if (r.data.contact_id, r.data.number_id) in open_by_pair]
    slow = [r for r in rows if (r.data.contact_id, r.data.number_id) not in open_by_pair]
    if fast:
        await _append(session, conn, org, fast, open_by_pair)
    for row in slow:  # in the batch's order
        await per_message.on_message_received(session, row.event)


async def _append(
    session: Any,
    conn: Any,
    org: uuid.UUID,
    rows: list[Received],
    open_by_pair: Mapping[tuple[uuid.UUID, uuid.UUID], dict[str, Any]],
) -> None:
    data = [r.data for r in rows]
    conversation_of = {d.message_id: open_by_pair[(d.contact_id, d.number_id)] for d in data}
    inserted = {
        m["id"]: dict(m)
        for m in await conn.fetch(
            _INSERT,
            org,
            [d.message_id for d in data],
            [conversation_of[d.message_id]["id"] for d in data],
            [d.type for d in data],
            [d.text for d in data],
            [json.dumps(d.content) for d in data],
            [d.wamid for d in data],
            [d.context.id if d.context else None for d in data],
            [d.timestamp for d in data],
        )
    }
    # The messages stored now, each once (a copy in the batch, or one stored before, is not).
    stored = dict(inserted)
    new = [d for d in data if stored.pop(d.message_id, None) is not None]
    if not new:
        return
    changes: dict[uuid.UUID, dict[str, Any]] = {}
    for d in new:
        change = changes.setdefault(
            conversation_of[d.message_id]["id"],
            {"at": None, "added": 0, "wa_id": None, "user_id": None},
        )
        change["at"] = d.timestamp if change["at"] is None else max(change["at"], d.timestamp)
        change["added"] += 1
        change["wa_id"] = d.wa_id or change["wa_id"]
        change["user_id"] = d.user_id or change["user_id"]
    ids = list(changes)
    final = {
        c["id"]: dict(c)
        for c in await conn.fetch(
            _UPDATE,
            org,
            ids,
            [changes[i]["at"] for i in ids],
            [changes[i]["added"] for i in ids],
            [changes[i]["wa_id"] for i in ids],
            [changes[i]["user_id"] for i in ids],
        )
    }
    frames: list[tuple[str, str]] = []
    events: list[CloudEvent] = []
    states = {c["id"]: dict(c) for c in open_by_pair.values()}
    for d in new:
        conversation_id = conversation_of[d.message_id]["id"]
        state = _after(states[conversation_id], final[conversation_id], d)
        message = inserted[d.message_id]
        # the frames' JSON as the models write it, without building them
        frames.append(("conversation.updated", _json({"conversation": conversation_fields(state)})))
        frames.append(("message.created", _json({"message": message_fields(message)})))
        appended = MessageAppended(
            message_id=d.message_id,
            organization_id=org,
            conversation_id=conversation_id,
            contact_id=d.contact_id,
            text=d.text,
            reply=interactive_reply(d.type, d.content),
            direction=INBOUND,
            type=d.type,
            created_at=message["created_at"],
        )
        events.append(CloudEvent.of(appended, subject=d.message_id, tenant_id=org))
    await publish_json(session, org, frames)
    await add_events(session, events)
    names: dict[uuid.UUID, str] = {}
    for d in new:  # the first one, as the per-message inserts (ON CONFLICT DO NOTHING)
        if d.profile_name:
            names.setdefault(d.contact_id, d.profile_name)
    if names:
        await conn.execute(_PROFILE_NAMES, org, list(names), list(names.values()))


def _json(frame: dict[str, Any]) -> str:
    return page_json(frame).decode()


def _after(
    state: dict[str, Any], final: dict[str, Any], d: per_message.MessageReceived
) -> dict[str, Any]:
    """The conversation as the per-message statement leaves it after ``d`` (``state``:
    as it stood before; the transaction's time is ``final``'s)."""
    last: datetime | None = state["last_inbound_at"]
    state["last_inbound_at"] = d.timestamp if last is None else max(last, d.timestamp)
    state["unread_count"] += 1
    state["wa_id"] = d.wa_id if d.wa_id is not None else state["wa_id"]
    state["user_id"] = d.user_id if d.user_id is not None else state["user_id"]
    state["last_message_at"] = final["last_message_at"]
    state["updated_at"] = final["updated_at"]
    return dict(state)


RECEIVED_SET = SetHandler(Received, on_messages_received, parse=_read)
