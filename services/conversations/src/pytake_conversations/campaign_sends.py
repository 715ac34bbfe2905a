"""Consumer of campaigns' ``recipient.dispatched``: each recipient's message, or its refusal.

The rules are exactly those of ``POST /v1/conversations`` (``starting.start``): the
contact's open conversation on the number is reused or a new one opened, the template's
parameters are filled from the contact replica, blocked/erased contacts, missing consent
and unapproved templates are refused. The message is stored ``pending`` with
``sender_type`` ``campaign`` and asked of whatsapp-gateway at ``campaign`` priority.

A recipient gets at most ONE message ever: the recipient id is claimed
(``campaign_recipients``) before anything else, so the same recipient dispatched again
under another event id (campaigns restarted between its commit and its relay) is
recognised and skipped; ``messages.recipient_id`` is unique besides. A refusal is
recorded on the claim and published as ``message.refused`` (nothing is written else).

Set-based (:class:`~pytake_common.consumer.SetHandler`): a campaign's recipients arrive
by the dozen in a consumer batch, and handled one at a time through ``starting.start``
each cost some twenty statements. Here all recipients of one organization in a batch take
a fixed handful: claim them, read their numbers and contacts, the template(s), the
month's message count (when the plan limits it), lock the contacts' active
conversations, open the missing ones, insert the messages, update each conversation
once, then the stream frames, the outbox events and the claims' outcomes. Every rule is
decided before anything but the claims is written (a refusal never leaves a
conversation behind, as the per-recipient savepoint guaranteed); a recipient alone is a
set of one through the same code.

A recipient whose contact is not in the contact replica yet (campaigns consumed the
contact's creation before we did) is not refused at once: it is parked on its claim
(the event's data and a deadline, ``contact_wait_s`` on), the rest of the batch goes on,
and :func:`resume_parked` (the maintenance worker) handles it again once the replica has
the contact, or refuses it as ``contact_not_found`` once the deadline passed. Retrying in
the consumer could not help: the contacts' events come through this same consumer.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common import rawpg
from pytake_common.consumer import Handler, SetHandler
from pytake_common.db import Database
from pytake_common.errors import DomainError, OrganizationSuspended, UnprocessableState
from pytake_common.event_types import CAMPAIGNS_RECIPIENT_DISPATCHED_V1
from pytake_common.events import EventData, TenantEventData
from pytake_common.outbox import emit_many
from pytake_conversations import outreach
from pytake_conversations.domain import DEFAULT_WINDOW_HOURS, OUTBOUND
from pytake_conversations.events import (
    ConversationOpened,
    MessageAppended,
    MessageRefused,
    MessageSendRequested,
    TextBody,
)
from pytake_conversations.inbound_batch import lock_active
from pytake_conversations.inbox import assign_to_department, conversation_data, route_department
from pytake_conversations.outbound import SendMessage, TemplateInput
from pytake_conversations.senders import Sender
from pytake_conversations.sending import MONTHLY_LIMIT
from pytake_conversations.starting import Target, TemplateRequest, load_template
from pytake_conversations.stream import publish_many
from pytake_conversations.views import Message

#: Refusals whose own code says less than the recipient needs.
REFUSAL_CODES: dict[type[DomainError], str] = {
    outreach.NumberNotFound: "number_unavailable",
    outreach.ContactNotFound: "contact_not_found",
}


# --- what conversations reads of campaigns' event (a tolerant reader) -------------------


class DispatchedTemplate(TenantEventData):
    name: str
    language: str
    category: str | None = None


class DispatchedParameter(TenantEventData):
    value: str
    default: str | None = None


Parameter = str | DispatchedParameter


class ParameterSpec(TenantEventData):
    """The template part of ``POST /v1/conversations``'s body, placeholders unfilled."""

    parameters: list[Parameter] = Field(default_factory=list)
    header_parameters: list[Parameter] = Field(default_factory=list)
    button_parameters: list[Parameter] = Field(default_factory=list)


class RecipientDispatched(TenantEventData):
    organization_id: uuid.UUID
    campaign_id: uuid.UUID
    recipient_id: uuid.UUID
    contact_id: uuid.UUID
    number_id: uuid.UUID
    template: DispatchedTemplate
    #: the spec object, or (tolerated) just the body's parameters as a list
    parameters: ParameterSpec | list[Parameter] = Field(default_factory=ParameterSpec)

    def template_request(self) -> TemplateRequest:
        spec = self.parameters
        if isinstance(spec, list):
            spec = ParameterSpec(parameters=spec)
        return TemplateRequest(
            name=self.template.name,
            language=self.template.language,
            parameters=outreach.parameters(spec.parameters),
            header_parameters=outreach.parameters(spec.header_parameters),
            button_parameters=outreach.parameters(spec.button_parameters),
        )


def refusal_code(error: DomainError) -> str:
    for kind, code in REFUSAL_CODES.items():
        if isinstance(error, kind):
            return code
    return error.code


# --- the statements ---------------------------------------------------------------------

_CLAIM = """
INSERT INTO campaign_recipients (id, organization_id, campaign_id)
SELECT r.id, $1, r.campaign_id
FROM unnest($2::uuid[], $3::uuid[]) WITH ORDINALITY AS r(id, campaign_id, ord)
ORDER BY r.ord
ON CONFLICT DO NOTHING
RETURNING id
"""

_NUMBERS = "SELECT * FROM number_replicas WHERE organization_id = $1 AND id = ANY($2::uuid[])"
_CONTACTS = "SELECT * FROM contact_replicas WHERE organization_id = $1 AND id = ANY($2::uuid[])"

#: A contact that wrote before contacts' event carried its ids: its conversations know.
_KNOWN_IDS = """
SELECT DISTINCT ON (contact_id) contact_id, wa_id, user_id FROM conversations
WHERE organization_id = $1 AND contact_id = ANY($2::uuid[])
  AND (wa_id IS NOT NULL OR user_id IS NOT NULL)
ORDER BY contact_id, last_message_at DESC
"""

_MONTH_COUNT = """
SELECT count(*) FROM messages
WHERE organization_id = $1 AND direction = 'outbound'
  AND created_at >= date_trunc('month', now())
"""


#: New conversations (starting.open_or_reuse's insert, a row per pair): each carries the
#: customer's last message time over from the pair's earlier ones and links to the last
#: closed one. A pair a concurrent delivery opened meanwhile inserts nothing (the
#: one-active-conversation index): the caller locks that one instead.
_OPEN = """
INSERT INTO conversations (id, organization_id, contact_id, number_id, phone_number_id,
                           wa_id, user_id, status, last_inbound_at, previous_conversation_id,
                           started_by)
SELECT n.id, $1, n.contact_id, n.number_id, n.phone_number_id, n.wa_id, n.user_id, 'open',
       (SELECT max(c.last_inbound_at) FROM conversations c
        WHERE c.organization_id = $1 AND c.contact_id = n.contact_id
          AND c.number_id = n.number_id),
       (SELECT c.id FROM conversations c
        WHERE c.organization_id = $1 AND c.contact_id = n.contact_id
          AND c.number_id = n.number_id AND c.status = 'closed'
        ORDER BY c.closed_at DESC NULLS LAST, c.created_at DESC LIMIT 1),
       n.started_by
FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::text[],
            $8::uuid[]) WITH ORDINALITY
    AS n(id, contact_id, number_id, phone_number_id, wa_id, user_id, started_by, ord)
ORDER BY n.ord
ON CONFLICT DO NOTHING
RETURNING *
"""

_INSERT_MESSAGES = """
INSERT INTO messages (id, organization_id, conversation_id, direction, type, text, content,
                      status, status_at, sent_by, sender_type, recipient_id)
SELECT m.id, $1, m.conversation_id, 'outbound', 'template', m.text, m.content::jsonb,
       'pending', now(), m.sent_by, 'campaign', m.recipient_id
FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::uuid[], $7::uuid[])
    WITH ORDINALITY AS m(id, conversation_id, text, content, sent_by, recipient_id, ord)
ORDER BY m.ord
RETURNING *
"""

#: Each conversation once, as ``request_send`` updates it (every message of the
#: transaction has the same ``created_at``: now()).
_TOUCH = """
UPDATE conversations AS c
SET last_message_at = GREATEST(c.last_message_at, now()),
    first_response_at = COALESCE(c.first_response_at, now()),
    sla_responded_at = COALESCE(c.sla_responded_at, now()),
    updated_at = now()
WHERE c.organization_id = $1 AND c.id = ANY($2::uuid[])
RETURNING c.*
"""

_RECORD = """
UPDATE campaign_recipients AS r SET message_id = u.message_id, refused_code = u.code
FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS u(id, message_id, code)
WHERE r.id = u.id AND r.id = ANY($1::uuid[])
"""

_PARK = """
UPDATE campaign_recipients AS r
SET parked = u.data::jsonb, parked_until = now() + make_interval(secs => $3)
FROM unnest($1::uuid[], $2::text[]) AS u(id, data)
WHERE r.id = u.id AND r.id = ANY($1::uuid[])
"""

#: Parked recipients to handle again: their contact came, or their time is up.
_DUE = """
SELECT r.organization_id, r.id FROM campaign_recipients r
WHERE r.parked_until IS NOT NULL
  AND (r.parked_until <= now()
       OR EXISTS (SELECT 1 FROM contact_replicas c
                  WHERE c.organization_id = r.organization_id
                    AND c.id = (r.parked->>'contact_id')::uuid))
ORDER BY r.parked_until
LIMIT $1
"""

#: Unpark them (another worker's are skipped), returning each one's event data.
_UNPARK = """
WITH due AS (
    SELECT id, parked FROM campaign_recipients
    WHERE organization_id = $1 AND id = ANY($2::uuid[]) AND parked_until IS NOT NULL
    FOR UPDATE SKIP LOCKED
)
UPDATE campaign_recipients AS r SET parked = NULL, parked_until = NULL
FROM due WHERE r.organization_id = $1 AND r.id = due.id
RETURNING due.parked
"""


# --- the handler -------------------------------------------------------------------------


@dataclass(slots=True)
class _Send:
    """A recipient whose message passed every rule: what to store and ask for."""

    data: RecipientDispatched
    target: Target
    send: SendMessage
    preview: str | None
    message_id: uuid.UUID = field(default_factory=uuid.uuid4)
    #: the conversation it goes to (locked), once reused or opened
    conversation: dict[str, Any] = field(default_factory=dict)


def _target(
    number: Mapping[str, Any] | None,
    contact: Mapping[str, Any] | None,
    known: Mapping[uuid.UUID, tuple[str | None, str | None]],
) -> Target:
    """``starting.load_target``'s rules (``outreach``'s), in its order, over rows read for
    the whole set."""
    number = outreach.check_number(number)
    contact = outreach.check_contact(contact)
    wa_id, user_id = contact["wa_id"], contact["user_id"]
    if not (wa_id or user_id):
        wa_id, user_id = known.get(contact["id"], (None, None))
    outreach.check_recipient(wa_id, user_id)
    return Target(number, contact, wa_id, user_id)  # type: ignore[arg-type]


class _Batch:
    """One organization's recipients of a consumer batch, handled together."""

    def __init__(
        self,
        session: AsyncSession,
        conn: Any,
        org: uuid.UUID,
        directory: Any,
        contact_wait_s: float = 0.0,
    ) -> None:
        self.session = session
        self.conn = conn
        self.org = org
        self.directory = directory
        #: how long a recipient whose contact the replica lacks is parked (0: refused)
        self.contact_wait_s = contact_wait_s
        self.parked: list[RecipientDispatched] = []
        self.frames: list[tuple[str, dict[str, Any]]] = []
        self.events: list[tuple[EventData, uuid.UUID]] = []
        #: (recipient, message id, refusal code) for the claims
        self.outcomes: list[tuple[uuid.UUID, uuid.UUID | None, str | None]] = []

    def refuse(self, data: RecipientDispatched, error: DomainError) -> None:
        code = refusal_code(error)
        self.outcomes.append((data.recipient_id, None, code))
        refused = MessageRefused(
            organization_id=self.org,
            campaign_id=data.campaign_id,
            recipient_id=data.recipient_id,
            contact_id=data.contact_id,
            number_id=data.number_id,
            code=code,
            detail=error.detail,
        )
        self.events.append((refused, data.recipient_id))

    async def run(self, rows: list[RecipientDispatched]) -> None:
        org, conn = self.org, self.conn
        unique: dict[uuid.UUID, RecipientDispatched] = {}
        for d in rows:  # a copy in this batch is the same recipient: the first one counts
            unique.setdefault(d.recipient_id, d)
        claimed = {
            r["id"]
            for r in await conn.fetch(
                _CLAIM, org, list(unique), [d.campaign_id for d in unique.values()]
            )
        }
        # the others were handled already: their message (or refusal) exists
        mine = [d for d in unique.values() if d.recipient_id in claimed]
        if mine:
            await self.handle(mine)

    async def handle(self, mine: list[RecipientDispatched]) -> None:
        """The claimed recipients' messages, refusals, or parking."""
        org, conn = self.org, self.conn
        if self.directory is not None and self.directory.is_suspended(org):
            suspended = OrganizationSuspended("the organization is suspended; nothing can be sent")
            for d in mine:
                self.refuse(d, suspended)
        else:
            sends = await self._checked(mine)
            if sends:
                await self._store(sends)
        await self._flush()
        await conn.execute(
            _RECORD,
            [o[0] for o in self.outcomes],
            [o[1] for o in self.outcomes],
            [o[2] for o in self.outcomes],
        )
        if self.parked:
            await conn.execute(
                _PARK,
                [d.recipient_id for d in self.parked],
                [d.model_dump_json() for d in self.parked],
                self.contact_wait_s,
            )

    async def _checked(self, rows: list[RecipientDispatched]) -> list[_Send]:
        """The recipients that pass every rule up to the conversation (the others are
        refused here, in the per-recipient path's order of checks)."""
        org, conn = self.org, self.conn
        numbers = {
            r["id"]: dict(r)
            for r in await conn.fetch(_NUMBERS, org, list({d.number_id for d in rows}))
        }
        contacts = {
            r["id"]: dict(r)
            for r in await conn.fetch(_CONTACTS, org, list({d.contact_id for d in rows}))
        }
        unknown = [c["id"] for c in contacts.values() if not (c["wa_id"] or c["user_id"])]
        known: dict[uuid.UUID, tuple[str | None, str | None]] = {}
        if unknown:
            for r in await conn.fetch(_KNOWN_IDS, org, unknown):
                known[r["contact_id"]] = (r["wa_id"], r["user_id"])
        templates: dict[tuple[str, str, uuid.UUID], outreach.Template | DomainError] = {}
        sends: list[_Send] = []
        for d in rows:
            request = d.template_request()
            try:
                target = _target(numbers.get(d.number_id), contacts.get(d.contact_id), known)
                key = (request.name, request.language, d.number_id)
                if key not in templates:
                    try:
                        templates[key] = await load_template(
                            self.session, org, target.number, request.name, request.language
                        )
                    except DomainError as error:
                        templates[key] = error
                found = templates[key]
                if isinstance(found, DomainError):
                    raise found
                contact = target.profile()
                outreach.check_template(found, contact)
                components, values = outreach.components(
                    found,
                    request.parameters,
                    request.header_parameters,
                    contact,
                    request.button_parameters,
                )
            except DomainError as error:
                if isinstance(error, outreach.ContactNotFound) and self.contact_wait_s > 0:
                    self.parked.append(d)  # the replica may lag: handled again later
                else:
                    self.refuse(d, error)
                continue
            send = SendMessage(
                type="template",
                template=TemplateInput(
                    name=found.name, language=found.language, components=components
                ),
            )
            sends.append(_Send(d, target, send, outreach.rendered_body(found, values)))
        return sends

    async def _store(self, sends: list[_Send]) -> None:
        """Reuse or open each pair's conversation, then the messages (refusing those the
        plan's monthly limit or a conversation without a recipient stop)."""
        org, conn = self.org, self.conn
        pairs = {(s.data.contact_id, s.data.number_id) for s in sends}
        active = await self._lock(pairs)
        limit = None if self.directory is None else self.directory.limit(org, MONTHLY_LIMIT)
        used = int(await conn.fetchval(_MONTH_COUNT, org)) if limit is not None else 0
        passed: list[_Send] = []
        for s in sends:
            try:
                if limit is not None:
                    await self.directory.check_limit(org, MONTHLY_LIMIT, used=used + len(passed))
                conv = active.get((s.data.contact_id, s.data.number_id))
                if conv is not None and not (conv["wa_id"] or conv["user_id"]):
                    raise UnprocessableState("the conversation has no WhatsApp recipient")
            except DomainError as error:
                self.refuse(s.data, error)
                continue
            passed.append(s)
        if not passed:
            return
        await self._open(passed, active)
        for s in passed:
            s.conversation = active[(s.data.contact_id, s.data.number_id)]
        await self._insert(passed)

    async def _lock(
        self, pairs: set[tuple[uuid.UUID, uuid.UUID]]
    ) -> dict[tuple[uuid.UUID, uuid.UUID], dict[str, Any]]:
        rows = await lock_active(self.conn, self.org, pairs)
        return {(r["contact_id"], r["number_id"]): dict(r) for r in rows}

    async def _open(
        self, sends: list[_Send], active: dict[tuple[uuid.UUID, uuid.UUID], dict[str, Any]]
    ) -> None:
        """Open a conversation for every pair without an active one (race-safe as
        ``starting.open_or_reuse``: a pair opened concurrently is locked instead)."""
        org = self.org
        created: list[dict[str, Any]] = []
        for _ in range(5):
            first: dict[tuple[uuid.UUID, uuid.UUID], _Send] = {}
            for s in sends:
                pair = (s.data.contact_id, s.data.number_id)
                if pair not in active:
                    first.setdefault(pair, s)
            if not first:
                break
            new = list(first.values())
            rows = await self.conn.fetch(
                _OPEN,
                org,
                [uuid.uuid4() for _ in new],
                [s.data.contact_id for s in new],
                [s.data.number_id for s in new],
                [s.target.number["phone_number_id"] for s in new],
                [s.target.wa_id for s in new],
                [s.target.user_id for s in new],
                [s.data.campaign_id for s in new],
            )
            for r in rows:
                row = dict(r)
                active[(row["contact_id"], row["number_id"])] = row
                created.append(row)
            if len(rows) < len(new):
                active.update(await self._lock(set(first) - set(active)))
        else:
            raise RuntimeError("could not open the recipients' conversations")
        if not created:
            return
        for row in created:
            self.frames.append(("conversation.created", {"conversation": conversation_data(row)}))
            opened = ConversationOpened(
                conversation_id=row["id"],
                organization_id=org,
                contact_id=row["contact_id"],
                number_id=row["number_id"],
                opened_at=row["created_at"],
                previous_conversation_id=row["previous_conversation_id"],
                started_by=row["started_by"],
            )
            self.events.append((opened, row["id"]))
        await self._assign(created, active)

    async def _assign(
        self,
        created: list[dict[str, Any]],
        active: dict[tuple[uuid.UUID, uuid.UUID], dict[str, Any]],
    ) -> None:
        """``inbox.auto_assign`` for each new conversation: its number's department (read
        once per number), and an agent by round-robin when the department says so."""
        departments: dict[uuid.UUID, dict[str, Any] | None] = {}
        for row in created:
            number_id = row["number_id"]
            if number_id not in departments:
                routed = await route_department(self.session, self.org, number_id)
                departments[number_id] = None if routed is None else dict(routed)
            dept = departments[number_id]
            if dept is None:
                continue
            # Its frames and events follow the conversation's own (as one by one).
            await self._flush()
            assigned = await assign_to_department(self.session, self.org, row, dept)
            if dept["strategy"] == "round_robin" and assigned["assignee_id"] is not None:
                dept["last_assignee_id"] = assigned["assignee_id"]
            active[(row["contact_id"], row["number_id"])] = dict(assigned)

    async def _insert(self, sends: list[_Send]) -> None:
        org, conn = self.org, self.conn
        payloads = [s.send.whatsapp_object() for s in sends]
        stored = {
            r["id"]: dict(r)
            for r in await conn.fetch(
                _INSERT_MESSAGES,
                org,
                [s.message_id for s in sends],
                [s.conversation["id"] for s in sends],
                [s.preview or s.send.preview() for s in sends],
                [json.dumps({"type": "template", "template": p}) for p in payloads],
                [s.data.campaign_id for s in sends],
                [s.data.recipient_id for s in sends],
            )
        }
        touched = {
            r["id"]: dict(r)
            for r in await conn.fetch(_TOUCH, org, list({s.conversation["id"] for s in sends}))
        }
        for s, payload in zip(sends, payloads, strict=True):
            conv = touched[s.conversation["id"]]
            row = stored[s.message_id]
            sender = Sender.campaign(org, s.data.campaign_id, s.data.recipient_id)
            self.frames.append(("conversation.updated", {"conversation": conversation_data(conv)}))
            requested = MessageSendRequested(
                message_id=s.message_id,
                organization_id=org,
                conversation_id=conv["id"],
                number_id=conv["number_id"],
                phone_number_id=conv["phone_number_id"],
                to=s.conversation["wa_id"] or s.conversation["user_id"],
                type="template",
                text=TextBody(body="", preview_url=False),
                context_wamid=None,
                requested_by=sender.id,
                payload=payload,
                priority=sender.priority,
                campaign_id=sender.campaign_id,
                recipient_id=sender.recipient_id,
            )
            self.events.append((requested, conv["id"]))  # one partition per conversation
            appended = MessageAppended(
                message_id=s.message_id,
                organization_id=org,
                conversation_id=conv["id"],
                contact_id=conv["contact_id"],
                sender_type=sender.type,
                sender_id=sender.id,
                text=row["text"],
                direction=OUTBOUND,
                type="template",
                created_at=row["created_at"],
                campaign_id=sender.campaign_id,
                recipient_id=sender.recipient_id,
            )
            self.events.append((appended, s.message_id))
            self.frames.append(
                ("message.created", {"message": Message.of(row).model_dump(mode="json")})
            )
            self.outcomes.append((s.data.recipient_id, s.message_id, None))

    async def _flush(self) -> None:
        """Write the frames and events gathered so far (in order)."""
        if self.frames:
            await publish_many(self.session, self.org, self.frames)
            self.frames = []
        if self.events:
            await emit_many(self.session, self.events)
            self.events = []


async def resume_parked(db: Database, directory: Any = None, limit: int = 500) -> int:
    """Handle again the parked recipients whose contact the replica now has (their
    message, or another rule's refusal) or whose wait is over (``contact_not_found``);
    returns how many. Safe on every replica at once (``SKIP LOCKED``)."""
    async with db.transaction(bypass_rls=True) as session:
        conn = await rawpg.driver(session)
        due = await conn.fetch(_DUE, limit)
    by_org: dict[uuid.UUID, list[uuid.UUID]] = {}
    for r in due:
        by_org.setdefault(r["organization_id"], []).append(r["id"])
    resumed = 0
    for org, ids in by_org.items():
        async with db.transaction(organization_id=org) as session:
            conn = await rawpg.driver(session)
            rows = [
                RecipientDispatched.model_validate(
                    r["parked"] if isinstance(r["parked"], dict) else json.loads(r["parked"])
                )
                for r in await conn.fetch(_UNPARK, org, ids)
            ]
            if rows:
                await _Batch(session, conn, org, directory).handle(rows)
                resumed += len(rows)
    return resumed


def campaign_handlers(
    hours: float = DEFAULT_WINDOW_HOURS, directory: Any = None, contact_wait_s: float = 0.0
) -> dict[str, Handler]:
    """The consumer's handlers of campaigns' events (``directory``: the organizations'
    plan, limits and suspension, when the platform provides it). ``hours``, the
    customer-service window, does not bear on templates (the only messages campaigns
    send); kept for the composition root's call. ``contact_wait_s``: how long a
    recipient whose contact the replica lacks is parked before it is refused (0: at
    once)."""

    async def on_recipients_dispatched(
        session: AsyncSession, rows: list[RecipientDispatched]
    ) -> None:
        by_org: dict[uuid.UUID, list[RecipientDispatched]] = {}
        for d in rows:
            by_org.setdefault(d.organization_id, []).append(d)
        conn = await rawpg.driver(session)
        for org, mine in by_org.items():
            await _Batch(session, conn, org, directory, contact_wait_s).run(mine)

    return {
        CAMPAIGNS_RECIPIENT_DISPATCHED_V1: SetHandler(RecipientDispatched, on_recipients_dispatched)
    }
