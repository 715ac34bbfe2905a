"""What a trigger hands to rules, automatic messages and flows: one conversation, now."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pytake_automation.actions import Target


@dataclass(frozen=True, slots=True)
class ConversationView:
    id: uuid.UUID
    organization_id: uuid.UUID
    contact_id: uuid.UUID
    number_id: uuid.UUID | None
    status: str
    priority: str
    assignee_id: uuid.UUID | None
    department_id: uuid.UUID | None
    inbound_count: int
    started_by_business: bool

    @classmethod
    def of(cls, row: Any) -> ConversationView:
        return cls(
            id=row.id,
            organization_id=row.organization_id,
            contact_id=row.contact_id,
            number_id=row.number_id,
            status=row.status,
            priority=row.priority,
            assignee_id=row.assignee_id,
            department_id=row.department_id,
            inbound_count=row.inbound_count,
            started_by_business=row.started_by_business,
        )


@dataclass(frozen=True, slots=True)
class ContactView:
    id: uuid.UUID
    name: str | None = None
    blocked: bool = False
    erased: bool = False
    tag_ids: frozenset[uuid.UUID] = frozenset()
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TriggerContext:
    """One trigger on one conversation.

    ``trigger``: ``message_received``, ``conversation_opened``, ``status_changed``,
    ``assigned``, ``no_agent_reply``, ``unassigned``. ``trigger_key`` names the fact (a
    message id, a status change's time, a timer's arming): runs are unique per
    (source, trigger_key), which is what makes redelivery harmless.
    """

    trigger: str
    trigger_key: str
    at: datetime
    conversation: ConversationView
    contact: ContactView
    #: the business is open now (organization's time zone, weekly hours, holidays)
    business_open: bool
    #: message_received: the text (or the interactive reply's title) and the reply
    text: str | None = None
    reply: dict[str, Any] | None = None
    #: message_received: the conversation's first message from the customer
    first_message: bool = False
    #: status_changed: the new status; assigned: nothing more (see conversation)
    new_status: str | None = None
    #: who caused the event (loop protection): ``automation`` and the rule/flow id
    actor_type: str | None = None
    actor_id: uuid.UUID | None = None
    #: no_agent_reply / unassigned: the rule whose timer fired (a timer is per rule)
    timer_rule_id: uuid.UUID | None = None

    @property
    def target(self) -> Target:
        c = self.conversation
        return Target(c.organization_id, c.id, c.contact_id, c.number_id)
