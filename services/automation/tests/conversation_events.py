"""Conversations' events about one conversation, as automation reads them (for tests)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pytake_common import event_types as et
from pytake_common.events import CloudEvent

from .helpers import internal, now


@dataclass
class Conversation:
    org: uuid.UUID = field(default_factory=uuid.uuid4)
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    contact_id: uuid.UUID = field(default_factory=uuid.uuid4)
    number_id: uuid.UUID = field(default_factory=uuid.uuid4)

    def _event(self, etype: str, **data: Any) -> CloudEvent:
        base = {"conversation_id": self.id, "contact_id": self.contact_id}
        return internal(etype, self.org, self.id, **base, **data)

    def opened(self, at: datetime | None = None, started_by: uuid.UUID | None = None) -> CloudEvent:
        return self._event(
            et.CONVERSATIONS_CONVERSATION_OPENED_V1,
            number_id=self.number_id,
            opened_at=at or now(),
            started_by=started_by,
        )

    def says(
        self, text: str | None = "hello", at: datetime | None = None, reply: dict | None = None
    ) -> CloudEvent:
        return self._message("inbound", None, text, at, reply)

    def replies(
        self, sender_type: str = "user", at: datetime | None = None, text: str = "hi"
    ) -> CloudEvent:
        return self._message("outbound", sender_type, text, at, None)

    def _message(self, direction, sender_type, text, at, reply) -> CloudEvent:
        message_id = uuid.uuid4()
        return internal(
            et.CONVERSATIONS_MESSAGE_APPENDED_V1,
            self.org,
            message_id,
            message_id=message_id,
            conversation_id=self.id,
            contact_id=self.contact_id,
            direction=direction,
            type="interactive" if reply else "text",
            created_at=at or now(),
            sender_type=sender_type,
            sender_id=uuid.uuid4() if sender_type else None,
            text=text,
            reply=reply,
        )

    def status(self, old: str, new: str, at: datetime | None = None) -> CloudEvent:
        return self._event(
            et.CONVERSATIONS_CONVERSATION_STATUS_CHANGED_V1,
            old_status=old,
            new_status=new,
            changed_by=None,
            at=at or now(),
        )

    def assigned(
        self, assignee: uuid.UUID | None, department: uuid.UUID | None = None
    ) -> CloudEvent:
        return self._event(
            et.CONVERSATIONS_CONVERSATION_ASSIGNED_V1,
            assignee_id=assignee,
            department_id=department,
            assigned_by=None,
            at=now(),
        )

    def priority(self, old: str, new: str) -> CloudEvent:
        return self._event(
            et.CONVERSATIONS_CONVERSATION_PRIORITY_CHANGED_V1,
            old_priority=old,
            new_priority=new,
            changed_by=None,
            at=now(),
        )


def organization_settings(org: uuid.UUID, **settings: Any) -> CloudEvent:
    return internal(et.TENANTS_ORGANIZATION_UPDATED_V1, org, org, settings=settings)


def contact_blocked(org: uuid.UUID, contact_id: uuid.UUID) -> CloudEvent:
    return internal(
        et.CONTACTS_CONTACT_BLOCKED_V1, org, contact_id, contact_id=contact_id, blocked_at=now()
    )


async def emitted(app: Any, org: uuid.UUID, suffix: str) -> list[dict[str, Any]]:
    """The data of the events automation staged for ``org`` whose type ends with ``suffix``."""
    from sqlalchemy import select

    from pytake_common.mechanics import outbox

    async with app.state.db.transaction(bypass_rls=True) as s:
        events = (await s.execute(select(outbox.c.event).order_by(outbox.c.id))).scalars().all()
    return [e["data"] for e in events if e["tenantid"] == str(org) and e["type"].endswith(suffix)]
