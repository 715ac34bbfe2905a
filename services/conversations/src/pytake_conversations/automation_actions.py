"""Applying automation's ``actions_requested``: the conversation's part, in list order.

Conversations owns ``send_text``, ``send_template``, ``send_interactive``, ``assign``,
``set_priority``, ``set_status`` and ``add_note`` (contacts applies the rest). Each action
is claimed once by its ``action_id`` (``automation_actions``, ``ON CONFLICT DO NOTHING``)
in the inbox's transaction, so a redelivered or republished request changes nothing, and
applied in a savepoint: one action that cannot apply (an agent who left, a closed
conversation) is recorded with its problem code and the next ones still run.

Sends are ``sender_type`` ``automation`` (``sent_by`` = the rule or flow), priority
``automation``; the message id is the action id. WhatsApp's customer-service window
applies: outside it only a template is sent, and a text or interactive message is stored
``failed`` with ``window_closed`` and never sent. Nothing is sent to a blocked or erased
contact. Flows also send media (``send_media``), through the same path.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.applied_actions import apply_once
from pytake_common.consumer import Handler
from pytake_common.errors import DomainError
from pytake_common.event_types import AUTOMATION_SESSION_ACTIONS_REQUESTED_V1
from pytake_common.events import CloudEvent, TenantEventData
from pytake_common.outbox import emit
from pytake_conversations import outreach
from pytake_conversations.domain import (
    CLOSED,
    FAILED,
    NOTE,
    OUTBOUND,
    PENDING,
    RESOLVED,
    check_transition,
    window_closes_at,
)
from pytake_conversations.events import MessageAppended, MessageSendRequested, TextBody
from pytake_conversations.inbox import (
    assign_to_department,
    change_priority,
    change_status,
    check_assignment,
    find_conversation,
    lock_department,
    push_conversation,
    push_message,
    set_assignment,
    update_conversation,
)
from pytake_conversations.outbound import (
    InteractiveInput,
    MediaInput,
    SendMessage,
    TemplateInput,
    TextInput,
)
from pytake_conversations.starting import load_target, load_template
from pytake_conversations.tables import (
    automation_actions,
    contact_replicas,
    conversations,
    messages,
)

AUTOMATION = "automation"
STATUSES = {"snoozed": PENDING, "resolved": RESOLVED, "closed": CLOSED}


class Source(BaseModel):
    kind: str
    id: uuid.UUID | None = None
    run_id: uuid.UUID


class ActionsRequested(TenantEventData):
    organization_id: uuid.UUID
    conversation_id: uuid.UUID
    source: Source
    actions: list[dict[str, Any]]


class NotApplied(DomainError):
    """An action that cannot apply; its ``code`` is recorded as the outcome."""

    status, code, title = 422, "not_applied", "The action cannot be applied"


def _refuse(code: str, detail: str) -> NotApplied:
    error = NotApplied(detail)
    error.code = code
    return error


class Applying:
    """One action on one (locked) conversation."""

    def __init__(
        self,
        session: AsyncSession,
        conv: RowMapping,
        source: Source,
        action_id: uuid.UUID,
        window_hours: float,
    ) -> None:
        self.session = session
        self.conv = conv
        self.org: uuid.UUID = conv["organization_id"]
        self.source = source
        self.action_id = action_id
        self.window_hours = window_hours

    @property
    def sender(self) -> uuid.UUID:
        """Who ``sent_by`` names: the rule or flow, else the run (schedules, SLA)."""
        return self.source.id or self.source.run_id

    @property
    def actor(self) -> uuid.UUID:
        return self.sender


Apply = Callable[[Applying, dict[str, Any]], Awaitable[str]]


# --- sends ----------------------------------------------------------------------------------


async def _send(a: Applying, body: SendMessage, preview: str | None = None) -> str:
    conv = a.conv
    if conv["status"] == CLOSED:
        raise _refuse("conversation_closed", "the conversation is closed")
    contact = (
        await a.session.execute(
            select(contact_replicas.c.blocked, contact_replicas.c.erased_at).where(
                contact_replicas.c.id == conv["contact_id"],
                contact_replicas.c.organization_id == a.org,
            )
        )
    ).first()
    if contact is not None and contact.erased_at is not None:
        raise _refuse("contact_erased", "the contact's data was erased")
    if contact is not None and contact.blocked:
        raise _refuse("contact_blocked", "the contact is blocked")
    recipient = conv["wa_id"] or conv["user_id"]
    if not recipient:
        raise _refuse("no_recipient", "the conversation has no WhatsApp recipient")
    if body.type == "text":
        assert body.text is not None
        text = TextBody(body=body.text.body, preview_url=body.text.preview_url)
        payload: dict[str, Any] | None = None
        content: dict[str, Any] = {"type": "text", "text": text.model_dump()}
        shown: str | None = text.body
    else:
        text = TextBody(body="", preview_url=False)
        payload = body.whatsapp_object()
        content = {"type": body.type, body.type: payload}
        shown = preview or body.preview()
    closes_at = window_closes_at(conv["last_inbound_at"], a.window_hours)
    in_window = closes_at is not None and datetime.now(UTC) < closes_at
    if body.type != "template" and not in_window:
        # recorded for the team to see, never sent
        row = await _insert(a, body.type, shown, content, FAILED, error="window_closed")
        await push_message(a.session, a.org, row, "message.created")
        return "window_closed"
    row = await _insert(a, body.type, shown, content, "pending")
    updated = await update_conversation(
        a.session,
        a.org,
        conv["id"],
        last_message_at=func.greatest(conversations.c.last_message_at, row["created_at"]),
    )
    await push_conversation(a.session, a.org, updated, "conversation.updated")
    requested = MessageSendRequested(
        message_id=row["id"],
        organization_id=a.org,
        conversation_id=conv["id"],
        number_id=conv["number_id"],
        phone_number_id=conv["phone_number_id"],
        to=recipient,
        type=body.type,
        text=text,
        context_wamid=None,
        requested_by=a.sender,
        payload=payload,
        priority="automation",
    )
    # keyed by the conversation: a flow's reprompt and prompt reach the customer in order
    await emit(a.session, requested, conv["id"], a.org)
    appended = MessageAppended(
        message_id=row["id"],
        organization_id=a.org,
        conversation_id=conv["id"],
        contact_id=conv["contact_id"],
        sender_type=AUTOMATION,
        sender_id=a.sender,
        text=shown,
        direction=OUTBOUND,
        type=body.type,
        created_at=row["created_at"],
    )
    await emit(a.session, appended, row["id"], a.org)
    await push_message(a.session, a.org, row, "message.created")
    return "applied"


async def _insert(
    a: Applying,
    type_: str,
    shown: str | None,
    content: dict[str, Any],
    status: str,
    error: str | None = None,
    direction: str = OUTBOUND,
) -> RowMapping:
    result = await a.session.execute(
        messages.insert()
        .values(
            id=a.action_id,  # the action's id: one message per action, ever
            organization_id=a.org,
            conversation_id=a.conv["id"],
            direction=direction,
            type=type_,
            text=shown,
            content=content,
            status=status,
            status_at=func.now(),
            error_detail=error,
            sent_by=a.sender,
            sender_type=AUTOMATION,
        )
        .returning(*messages.c)
    )
    return result.mappings().one()


async def send_text(a: Applying, action: dict[str, Any]) -> str:
    return await _send(a, SendMessage(type="text", text=TextInput(body=action["text"])))


async def send_interactive(a: Applying, action: dict[str, Any]) -> str:
    interactive = InteractiveInput.model_validate(action["interactive"])
    return await _send(a, SendMessage(type="interactive", interactive=interactive))


async def send_media(a: Applying, action: dict[str, Any]) -> str:
    """A flow's image, video, audio or document: ``media`` is the Graph API's object."""
    given = action["media"]
    media = MediaInput(
        link=given.get("link"),
        media_id=given.get("id"),
        caption=given.get("caption"),
        filename=given.get("filename"),
    )
    kind = action["media_type"]
    return await _send(a, SendMessage.model_validate({"type": kind, kind: media}))


def _parameters(given: list[Any]) -> list[outreach.Parameter]:
    return [
        outreach.Parameter(p)
        if isinstance(p, str)
        else outreach.Parameter(str(p["value"]), p.get("default"))
        for p in given
    ]


async def send_template(a: Applying, action: dict[str, Any]) -> str:
    target = await load_target(a.session, a.org, a.conv["contact_id"], a.conv["number_id"])
    template = await load_template(
        a.session, a.org, target.number, action["name"], action["language"]
    )
    contact = target.profile()
    outreach.check_template(template, contact)
    components, values = outreach.components(
        template,
        _parameters(action.get("parameters") or []),
        _parameters(action.get("header_parameters") or []),
        contact,
        _parameters(action.get("button_parameters") or []),
    )
    body = SendMessage(
        type="template",
        template=TemplateInput(
            name=template.name, language=template.language, components=components
        ),
    )
    return await _send(a, body, preview=outreach.rendered_body(template, values))


# --- the conversation itself --------------------------------------------------------------


async def assign(a: Applying, action: dict[str, Any]) -> str:
    conv = a.conv
    if action.get("agent_id"):
        agent = uuid.UUID(str(action["agent_id"]))
        if agent == conv["assignee_id"]:
            return "unchanged"
        await check_assignment(a.session, a.org, conv, agent, conv["department_id"])
        await set_assignment(
            a.session,
            a.org,
            conv,
            assignee_id=agent,
            department_id=conv["department_id"],
            by=None,
            automation=a.actor,
        )
        return "applied"
    department_id = uuid.UUID(str(action["department_id"]))
    dept = await lock_department(a.session, a.org, department_id)
    if dept is None:
        raise _refuse("invalid_department", "no such department in this organization")
    await assign_to_department(a.session, a.org, conv, dept, automation=a.actor)
    return "applied"


async def set_priority(a: Applying, action: dict[str, Any]) -> str:
    if a.conv["priority"] == action["priority"]:
        return "unchanged"
    await change_priority(a.session, a.org, a.conv, action["priority"], by=None, automation=a.actor)
    return "applied"


async def set_status(a: Applying, action: dict[str, Any]) -> str:
    new = STATUSES[action["status"]]
    until = action.get("until")
    if new == PENDING and until is not None:
        until = datetime.fromisoformat(str(until))
    if new == a.conv["status"] and new != PENDING:
        return "unchanged"
    check_transition(a.conv["status"], new)
    await change_status(
        a.session,
        a.org,
        a.conv,
        new,
        by=None,
        snooze_until=until if new == PENDING else None,
        automation=a.actor,
    )
    return "applied"


async def add_note(a: Applying, action: dict[str, Any]) -> str:
    text = str(action["text"])
    row = await _insert(
        a, "text", text, {"type": "note", "note": {"body": text}}, "internal", direction=NOTE
    )
    await update_conversation(a.session, a.org, a.conv["id"])
    await push_message(a.session, a.org, row, "message.created")
    return "applied"


APPLY: dict[str, Apply] = {
    "send_text": send_text,
    "send_template": send_template,
    "send_interactive": send_interactive,
    "send_media": send_media,
    "assign": assign,
    "set_priority": set_priority,
    "set_status": set_status,
    "add_note": add_note,
}


def automation_handlers(window_hours: float) -> dict[str, Handler]:
    async def on_actions_requested(session: AsyncSession, event: CloudEvent) -> None:
        data = event.parse_data(ActionsRequested)
        org = data.organization_id
        for action in data.actions:
            apply = APPLY.get(str(action.get("type")))
            if apply is None:
                continue  # contacts' (or a newer type)
            action_id = uuid.UUID(str(action["action_id"]))
            values = {
                "organization_id": org,
                "conversation_id": data.conversation_id,
                "type": action["type"],
            }

            async def applying(
                apply: Apply = apply,
                action: dict[str, Any] = action,
                action_id: uuid.UUID = action_id,
            ) -> str:
                conv = await find_conversation(session, org, data.conversation_id, lock=True)
                if conv is None:
                    return "not_found"
                return await apply(
                    Applying(session, conv, data.source, action_id, window_hours), action
                )

            await apply_once(session, automation_actions, action_id, values, applying)

    return {AUTOMATION_SESSION_ACTIONS_REQUESTED_V1: on_actions_requested}
