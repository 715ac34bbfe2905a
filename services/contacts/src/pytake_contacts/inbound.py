"""Inbound messages and the timeline, a consumer batch at a time (set-based handlers).

Every inbound message costs contacts a ``message.received`` (the contact exists, its
profile name and last interaction move on) and a ``message.appended`` (a timeline
fact). Handled one by one that was five statements a message; here a batch's
records of one organization take:

- ``message.received``: one ``SELECT ... FOR UPDATE`` of every contact the batch
  names, one ``INSERT`` of the new ones, one ``UPDATE`` of the changed ones and one
  outbox statement for their events. The rules are :mod:`pytake_contacts.handlers`'
  own, applied in the batch's order to each contact's row in memory. A contact whose
  message needs more than that (an erased contact, an identifier to learn, messages
  naming it by different identifiers, a new contact someone else created
  meanwhile) has its messages handled by the per-message handler, in order;
- ``message.appended``: one ``INSERT`` of the timeline facts and one ``UPDATE`` of
  the contacts' last interactions.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common import rawpg
from pytake_common.consumer import PermanentError
from pytake_common.events import EventData
from pytake_common.outbox import emit_many
from pytake_contacts import handlers as per_message
from pytake_contacts.domain import PROFILE, clean_name, phone_from_wa_id
from pytake_contacts.events import ContactUpdated
from pytake_contacts.timeline import Appended, record_facts

#: Every contact a batch names, by any of its identifiers, locked in id order.
_LOCK = """
SELECT id, wa_id, user_id, name, name_source, phone, last_interaction_at, deleted_at, erased_at
FROM contacts
WHERE organization_id = $1
  AND (id = ANY($2::uuid[]) OR wa_id = ANY($3::text[]) OR user_id = ANY($4::text[]))
ORDER BY id
FOR UPDATE
"""

#: The batch's new contacts (any unique key already taken: not created, handled alone).
_CREATE = """
INSERT INTO contacts (id, organization_id, wa_id, user_id, name, name_source, phone,
                      last_interaction_at)
SELECT c.id, $1, c.wa_id, c.user_id, c.name, 'profile', c.phone, c.at
FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])
    AS c(id, wa_id, user_id, name, phone, at)
ON CONFLICT DO NOTHING
RETURNING id
"""

#: What the batch changed in existing contacts (``deleted`` false: the contact is restored).
_UPDATE = """
UPDATE contacts AS t
SET name = c.name, last_interaction_at = c.at,
    deleted_at = CASE WHEN c.restored THEN NULL ELSE t.deleted_at END, updated_at = now()
FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::bool[]) AS c(id, name, at, restored)
WHERE t.id = c.id AND t.id = ANY($1::uuid[])
"""

#: A message appended is an interaction (an agent's reply too): each contact's last
#: interaction moves on to its latest message of the batch. Both updates join by primary
#: key only (the batch's ids): with an organization_id condition the planner may scan
#: the organization's contacts (and re-read the unnest for each) when its statistics
#: predate them; row-level security binds the transaction to the organization anyway.
_MOVED_ON = """
UPDATE contacts AS t SET last_interaction_at = c.at, updated_at = now()
FROM (SELECT id, max(at) AS at FROM unnest($1::uuid[], $2::timestamptz[]) AS r(id, at)
      GROUP BY id) AS c
WHERE t.id = c.id AND t.id = ANY($1::uuid[])
  AND (t.last_interaction_at IS NULL OR t.last_interaction_at < c.at)
"""


@dataclass
class _Contact:
    """A contact's row as the batch's messages change it."""

    id: uuid.UUID
    name: str | None
    name_source: str
    phone: str | None
    last: datetime | None
    deleted: bool
    new: bool = False
    dirty: bool = False
    restored: bool = False
    messages: list[per_message.MessageReceived] = field(default_factory=list)


async def on_messages_received(
    session: AsyncSession, rows: list[per_message.MessageReceived]
) -> None:
    """Apply a batch's inbound messages of one organization (see the module's docstring)."""
    for data in rows:
        if not data.wa_id and not data.user_id:
            # the whole set goes one by one, where this one is dead-lettered alone
            raise PermanentError("message.received without wa_id or user_id")
    org = rows[0].organization_id
    conn = await rawpg.driver(session)
    found = await conn.fetch(
        _LOCK,
        org,
        list({r.contact_id for r in rows}),
        list({r.wa_id for r in rows if r.wa_id}),
        list({r.user_id for r in rows if r.user_id}),
    )
    contacts, alone = _group(rows, found)
    events: list[tuple[EventData, uuid.UUID]] = []
    new = [c for c in contacts.values() if c.new]
    if new:
        firsts = [c.messages[0] for c in new]
        created = set(await _create(conn, org, firsts))
        for contact, first in zip(new, firsts, strict=True):
            if contact.id not in created:
                # created meanwhile (e.g. by an agent): the per-message rules decide
                del contacts[contact.id]
                alone.extend(contact.messages)
                continue
            events.append((per_message.first_seen(first, contact.name, contact.phone), contact.id))
            contact.messages = contact.messages[1:]
    for contact in contacts.values():
        for data in contact.messages:
            changed = _apply(contact, data)
            if changed:
                payload = ContactUpdated(
                    contact_id=contact.id,
                    organization_id=org,
                    name=contact.name,
                    phone=contact.phone,
                    changed=changed,
                )
                events.append((payload, contact.id))
    dirty = [c for c in contacts.values() if c.dirty]
    if dirty:
        await conn.execute(
            _UPDATE,
            [c.id for c in dirty],
            [c.name for c in dirty],
            [c.last for c in dirty],
            [c.restored for c in dirty],
        )
    await emit_many(session, events)
    # In the batch's order: each contact's messages still go one after the other.
    order = {id(data): index for index, data in enumerate(rows)}
    for data in sorted(alone, key=lambda data: order[id(data)]):
        await per_message.apply_received(session, data)


async def _create(
    conn: asyncpg.Connection, org: uuid.UUID, firsts: list[per_message.MessageReceived]
) -> list[uuid.UUID]:
    created = await conn.fetch(
        _CREATE,
        org,
        [m.contact_id for m in firsts],
        [m.wa_id for m in firsts],
        [m.user_id for m in firsts],
        [clean_name(m.profile_name) for m in firsts],
        [phone_from_wa_id(m.wa_id) for m in firsts],
        [m.timestamp for m in firsts],
    )
    return [row["id"] for row in created]


def _group(
    rows: list[per_message.MessageReceived], found: list[asyncpg.Record]
) -> tuple[dict[uuid.UUID, _Contact], list[per_message.MessageReceived]]:
    """Each simple contact with its messages, in order, and the messages left to the
    per-message handler (every message of a contact any of whose messages needs it)."""
    by_id = {r["id"]: r for r in found}
    by_wa = {r["wa_id"]: r for r in found if r["wa_id"]}
    by_user = {r["user_id"]: r for r in found if r["user_id"]}
    contacts: dict[uuid.UUID, _Contact] = {}
    complex_ids: set[uuid.UUID] = set()
    owner: dict[tuple[str, str], uuid.UUID] = {}  # identifier -> the contact it named
    for data in rows:
        row = by_id.get(data.contact_id)
        if row is None and data.wa_id:
            row = by_wa.get(data.wa_id)
        if row is None and data.user_id:
            row = by_user.get(data.user_id)
        key = row["id"] if row is not None else data.contact_id
        simple = _simple(data, row)
        for ident in (("id", str(data.contact_id)), ("wa", data.wa_id), ("user", data.user_id)):
            if ident[1] is None:
                continue
            other = owner.setdefault((ident[0], ident[1]), key)
            if other != key:  # one identifier, two contacts in this batch: in order, alone
                complex_ids.update((other, key))
        contact = contacts.get(key)
        if contact is None:
            if row is None:
                contact = _Contact(
                    id=data.contact_id,
                    name=clean_name(data.profile_name),
                    name_source=PROFILE,
                    phone=phone_from_wa_id(data.wa_id),
                    last=data.timestamp,
                    deleted=False,
                    new=True,
                )
            else:
                contact = _Contact(
                    id=row["id"],
                    name=row["name"],
                    name_source=row["name_source"],
                    phone=row["phone"],
                    last=row["last_interaction_at"],
                    deleted=row["deleted_at"] is not None,
                )
            contacts[key] = contact
        elif contact.new and (
            data.contact_id != contact.id
            or data.wa_id != contact.messages[0].wa_id
            or data.user_id != contact.messages[0].user_id
        ):
            simple = False  # a new contact named differently: the first one's rules decide
        contact.messages.append(data)
        if not simple:
            complex_ids.add(key)
    alone = [m for key in complex_ids if key in contacts for m in contacts.pop(key).messages]
    return contacts, alone


def _simple(data: per_message.MessageReceived, row: asyncpg.Record | None) -> bool:
    """Whether the message changes nothing but the name, the last interaction and
    a deletion (no erased contact to recreate, no identifier to learn)."""
    if row is None:
        return True
    if row["erased_at"] is not None:
        return False
    if data.wa_id and row["wa_id"] is None:
        return False
    return not (data.user_id and row["user_id"] is None)


def _apply(contact: _Contact, data: per_message.MessageReceived) -> list[str]:
    """One message's effect on the contact, by the rules of the per-message handler
    (:func:`pytake_contacts.handlers.apply_received`); the changes an event reports."""
    changed: list[str] = []
    touched = False
    if contact.deleted:  # deleted by an agent, and the customer wrote again
        contact.deleted, contact.restored, touched = False, True, True
        changed.append("deleted_at")
    name = clean_name(data.profile_name)
    last = contact.last
    newest = last is None or data.timestamp >= last
    if contact.name_source == PROFILE and name and name != contact.name and newest:
        contact.name, touched = name, True
        changed.append("name")
    if last is None or data.timestamp > last:
        contact.last, touched = data.timestamp, True
    contact.dirty = contact.dirty or touched
    return changed


async def on_appended_many(session: AsyncSession, rows: list[Appended]) -> None:
    """Timeline facts of a batch's appended messages, and the contacts' last interactions."""
    conn = await rawpg.driver(session)
    await record_facts(
        conn,
        rows[0].organization_id,
        [
            (
                r.contact_id,
                "message.inbound" if r.direction == "inbound" else "message.outbound",
                r.created_at,
                f"message:{r.message_id}",
                _fact_data(r),
            )
            for r in rows
        ],
    )
    await conn.execute(_MOVED_ON, [r.contact_id for r in rows], [r.created_at for r in rows])


def _fact_data(row: Appended) -> dict[str, Any]:
    return {
        "conversation_id": str(row.conversation_id),
        "message_id": str(row.message_id),
        "type": row.type,
    }
