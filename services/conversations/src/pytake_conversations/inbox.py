"""Inbox operations shared by the API and the consumers: lifecycle moves, assignment
(manual and round-robin), and what each change tells Kafka and the realtime stream.

Helpers here run inside the caller's transaction and never commit.
"""

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import any_, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.db import Database
from pytake_common.errors import NotFound
from pytake_common.outbox import emit
from pytake_conversations.domain import (
    CLOSED,
    INBOUND,
    OPEN,
    PENDING,
    RESOLVED,
    WORKLOAD,
    InvalidAssignee,
    InvalidDepartment,
    check_transition,
)
from pytake_conversations.events import (
    ConversationAssigned,
    ConversationPriorityChanged,
    ConversationStatusChanged,
    MessageReadRequested,
)
from pytake_conversations.stream import publish
from pytake_conversations.tables import conversations, departments, messages, user_replicas
from pytake_conversations.views import Conversation, Message

#: A conversation (or department, message) row: as read, or as a merged statement returned it.
Row = Mapping[Any, Any]
#: Roles that work conversations (viewers only read).
WORKING_ROLES = ("super_admin", "org_admin", "agent")


def conversation_data(row: Row) -> dict[str, Any]:
    return Conversation.of(row).model_dump(mode="json")


async def push_conversation(
    session: AsyncSession, org: uuid.UUID, row: Row, type_: str, **extra: Any
) -> None:
    await publish(session, org, type_, {"conversation": conversation_data(row), **extra})


async def push_message(session: AsyncSession, org: uuid.UUID, row: Row, type_: str) -> None:
    await publish(session, org, type_, {"message": Message.of(row).model_dump(mode="json")})


async def find_conversation(
    session: AsyncSession, org: uuid.UUID, conversation_id: uuid.UUID, *, lock: bool = False
) -> RowMapping | None:
    """The organization's conversation (locked with ``lock``), or None."""
    stmt = select(conversations).where(
        conversations.c.id == conversation_id, conversations.c.organization_id == org
    )
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).mappings().first()


async def load_conversation(
    session: AsyncSession, org: uuid.UUID, conversation_id: uuid.UUID, *, lock: bool = False
) -> RowMapping:
    """:func:`find_conversation`, or NotFound (also for another organization's id)."""
    row = await find_conversation(session, org, conversation_id, lock=lock)
    if row is None:
        raise NotFound("conversation not found")
    return row


async def update_conversation(
    session: AsyncSession, org: uuid.UUID, conv_id: uuid.UUID, **values: Any
) -> RowMapping:
    return (
        (
            await session.execute(
                update(conversations)
                .where(conversations.c.id == conv_id, conversations.c.organization_id == org)
                .values(updated_at=func.now(), **values)
                .returning(*conversations.c)
            )
        )
        .mappings()
        .one()
    )


def _actor(automation: uuid.UUID | None) -> dict[str, Any]:
    return {"actor_type": "automation", "actor_id": automation} if automation else {}


async def change_status(
    session: AsyncSession,
    org: uuid.UUID,
    conv: Row,
    new: str,
    *,
    by: uuid.UUID | None,
    snooze_until: datetime | None = None,
    extra: dict[str, Any] | None = None,
    automation: uuid.UUID | None = None,
) -> RowMapping:
    """Move a (locked) conversation to ``new``; the caller checked the transition.
    ``automation``: the rule or flow that asked (said in the event: loop protection)."""
    values: dict[str, Any] = dict(extra or {})
    values["snoozed_until"] = snooze_until if new == PENDING else None
    if new != conv["status"]:
        values["status"] = new
        if new == RESOLVED:
            values["resolved_at"] = func.now()
        elif new == CLOSED:
            values["closed_at"] = func.now()
        elif new == OPEN:
            values["resolved_at"] = None
    row = await update_conversation(session, org, conv["id"], **values)
    if new == conv["status"]:
        await push_conversation(session, org, row, "conversation.updated")
        return row
    changed = ConversationStatusChanged(
        conversation_id=row["id"],
        organization_id=org,
        contact_id=row["contact_id"],
        old_status=conv["status"],
        new_status=new,
        changed_by=by,
        at=row["updated_at"],
        **_actor(automation),
    )
    await emit(session, changed, row["id"], org)
    await push_conversation(
        session,
        org,
        row,
        "conversation.status_changed",
        old_status=conv["status"],
        new_status=new,
        changed_by=str(by) if by else None,
    )
    return row


async def move(
    session: AsyncSession,
    org: uuid.UUID,
    conv: Row,
    new: str,
    *,
    by: uuid.UUID | None,
    snooze_until: datetime | None = None,
    priority: str | None = None,
) -> Row:
    """An agent moves a (locked) conversation in its lifecycle (and may set its priority
    with it); a request that changes nothing changes nothing, an illegal one refuses."""
    check_transition(conv["status"], new)
    unchanged = (
        new == conv["status"]
        and snooze_until == conv["snoozed_until"]
        and (priority is None or priority == conv["priority"])
    )
    if unchanged:
        return conv
    extra = {"priority": priority} if priority else {}
    row = await change_status(
        session, org, conv, new, by=by, snooze_until=snooze_until, extra=extra
    )
    await tell_priority(session, org, conv, row, by=by)
    return row


async def tell_priority(
    session: AsyncSession,
    org: uuid.UUID,
    before: Row,
    row: Row,
    *,
    by: uuid.UUID | None,
    automation: uuid.UUID | None = None,
) -> None:
    """Say on Kafka that ``before``'s priority became ``row``'s (nothing if it did not)."""
    if before["priority"] == row["priority"]:
        return
    changed = ConversationPriorityChanged(
        conversation_id=row["id"],
        organization_id=org,
        contact_id=row["contact_id"],
        old_priority=before["priority"],
        new_priority=row["priority"],
        changed_by=by,
        at=row["updated_at"],
        **_actor(automation),
    )
    await emit(session, changed, row["id"], org)


async def change_priority(
    session: AsyncSession,
    org: uuid.UUID,
    conv: Row,
    priority: str,
    *,
    by: uuid.UUID | None,
    automation: uuid.UUID | None = None,
) -> Row:
    """Set a (locked) conversation's priority and say so (Kafka + stream) if it changed."""
    if conv["priority"] == priority:
        return conv
    row = await update_conversation(session, org, conv["id"], priority=priority)
    await tell_priority(session, org, conv, row, by=by, automation=automation)
    await push_conversation(session, org, row, "conversation.updated")
    return row


async def set_assignment(
    session: AsyncSession,
    org: uuid.UUID,
    conv: Row,
    *,
    assignee_id: uuid.UUID | None,
    department_id: uuid.UUID | None,
    by: uuid.UUID | None,
    automation: uuid.UUID | None = None,
) -> Row:
    """Store who handles the conversation and say so (Kafka + stream) if it changed."""
    if (conv["assignee_id"], conv["department_id"]) == (assignee_id, department_id):
        return conv
    row = await update_conversation(
        session, org, conv["id"], assignee_id=assignee_id, department_id=department_id
    )
    assigned = ConversationAssigned(
        conversation_id=row["id"],
        organization_id=org,
        contact_id=row["contact_id"],
        assignee_id=assignee_id,
        department_id=department_id,
        assigned_by=by,
        at=row["updated_at"],
        **_actor(automation),
    )
    await emit(session, assigned, row["id"], org)
    await push_conversation(
        session, org, row, "conversation.assigned", assigned_by=str(by) if by else None
    )
    return row


async def check_assignment(
    session: AsyncSession,
    org: uuid.UUID,
    conv: Row,
    assignee_id: uuid.UUID | None,
    department_id: uuid.UUID | None,
) -> None:
    """Before giving the conversation to an agent and/or a department (None: nobody): a
    new assignee must be an active agent or admin (``invalid_assignee``), a new department
    a live one of the organization (``invalid_department``)."""
    if assignee_id is not None and assignee_id != conv["assignee_id"]:
        await check_assignee(session, org, assignee_id)
    if department_id is not None and department_id != conv["department_id"]:
        await check_department(session, org, department_id)


async def check_assignee(session: AsyncSession, org: uuid.UUID, user_id: uuid.UUID) -> None:
    ok = await session.scalar(
        select(func.count())
        .select_from(user_replicas)
        .where(
            user_replicas.c.organization_id == org,
            user_replicas.c.id == user_id,
            user_replicas.c.is_active.is_(True),
            user_replicas.c.deleted_at.is_(None),
            user_replicas.c.role.in_(WORKING_ROLES),
        )
    )
    if not ok:
        raise InvalidAssignee(
            "the assignee must be an active agent or admin of this organization",
            assignee_id=str(user_id),
        )


async def check_department(session: AsyncSession, org: uuid.UUID, department_id: uuid.UUID) -> None:
    ok = await session.scalar(
        select(func.count())
        .select_from(departments)
        .where(
            departments.c.organization_id == org,
            departments.c.id == department_id,
            departments.c.deleted.is_(False),
        )
    )
    if not ok:
        raise InvalidDepartment(department_id=str(department_id))


async def lock_department(
    session: AsyncSession, org: uuid.UUID, department_id: uuid.UUID
) -> RowMapping | None:
    """The organization's live department (locked, for round-robin), or None."""
    return (
        (
            await session.execute(
                select(departments)
                .where(
                    departments.c.id == department_id,
                    departments.c.organization_id == org,
                    departments.c.deleted.is_(False),
                )
                .with_for_update()
            )
        )
        .mappings()
        .first()
    )


_NUMBERS_DEPARTMENT = bindparam("number_id", type_=UUID(as_uuid=True)) == any_(
    departments.c.number_ids
)
#: The number's own department first, else the organization's default one: one probe
#: (built once), locking only the department it returns.
_ROUTE = (
    select(departments)
    .where(
        departments.c.organization_id == bindparam("org", type_=UUID(as_uuid=True)),
        departments.c.deleted.is_(False),
        _NUMBERS_DEPARTMENT | departments.c.is_default.is_(True),
    )
    .order_by(_NUMBERS_DEPARTMENT.desc(), departments.c.name, departments.c.id)
    .limit(1)
    .with_for_update()
)


async def route_department(
    session: AsyncSession, org: uuid.UUID, number_id: uuid.UUID
) -> RowMapping | None:
    """The department new conversations on ``number_id`` go to (locked), if any.

    The number's own department first, else the organization's default one.
    """
    found = await session.execute(_ROUTE, {"org": org, "number_id": number_id})
    return found.mappings().first()


async def pick_agent(session: AsyncSession, org: uuid.UUID, dept: Row) -> uuid.UUID | None:
    """Round-robin among the department's active agents with room under the cap."""
    members: list[uuid.UUID] = list(dept["member_ids"])
    if not members:
        return None
    active = set(
        (
            await session.execute(
                select(user_replicas.c.id).where(
                    user_replicas.c.organization_id == org,
                    user_replicas.c.id.in_(members),
                    user_replicas.c.is_active.is_(True),
                    user_replicas.c.deleted_at.is_(None),
                    user_replicas.c.role.in_(WORKING_ROLES),
                )
            )
        ).scalars()
    )
    candidates = [m for m in members if m in active]
    if not candidates:
        return None
    cap = dept["max_open_per_agent"]
    load: dict[uuid.UUID, int] = {}
    if cap is not None:
        load = {
            r.assignee_id: int(r.n)
            for r in await session.execute(
                select(conversations.c.assignee_id, func.count().label("n"))
                .where(
                    conversations.c.organization_id == org,
                    conversations.c.assignee_id.in_(candidates),
                    conversations.c.status.in_(WORKLOAD),
                )
                .group_by(conversations.c.assignee_id)
            )
        }
    last = dept["last_assignee_id"]
    start = candidates.index(last) + 1 if last in candidates else 0
    for i in range(len(candidates)):
        agent = candidates[(start + i) % len(candidates)]
        if cap is None or load.get(agent, 0) < cap:
            return agent
    return None


async def auto_assign(session: AsyncSession, org: uuid.UUID, conv: Row) -> Row:
    """Route a new conversation: its department, then an agent by round-robin if configured."""
    dept = await route_department(session, org, conv["number_id"])
    if dept is None:
        return conv
    return await assign_to_department(session, org, conv, dept)


async def assign_to_department(
    session: AsyncSession,
    org: uuid.UUID,
    conv: Row,
    dept: Row,
    automation: uuid.UUID | None = None,
) -> Row:
    """Give the conversation to the (locked) department, and to one of its agents by
    round-robin within the caps when the department routes that way."""
    agent = None
    if dept["strategy"] == "round_robin":
        agent = await pick_agent(session, org, dept)
        if agent is not None:
            await session.execute(
                update(departments)
                .where(departments.c.id == dept["id"], departments.c.organization_id == org)
                .values(last_assignee_id=agent)
            )
    return await set_assignment(
        session,
        org,
        conv,
        assignee_id=agent,
        department_id=dept["id"],
        by=None,
        automation=automation,
    )


async def mark_read(session: AsyncSession, org: uuid.UUID, conv: Row) -> tuple[Row, int]:
    """Mark the customer's unread messages of the (locked) conversation read, asking
    WhatsApp once per message; the conversation as it is now and how many were marked."""
    unread = (
        await session.execute(
            update(messages)
            .where(
                messages.c.organization_id == org,
                messages.c.conversation_id == conv["id"],
                messages.c.direction == INBOUND,
                messages.c.read_at.is_(None),
            )
            .values(read_at=func.now())
            .returning(messages.c.id, messages.c.wamid)
        )
    ).all()
    for message_id, wamid in unread:
        if not wamid:
            continue
        requested = MessageReadRequested(
            organization_id=org,
            conversation_id=conv["id"],
            number_id=conv["number_id"],
            phone_number_id=conv["phone_number_id"],
            wamid=wamid,
            message_id=message_id,
        )
        await emit(session, requested, message_id, org)
    row = conv
    if unread or conv["unread_count"]:
        row = await update_conversation(session, org, conv["id"], unread_count=0)
        await push_conversation(session, org, row, "conversation.updated")
    return row, len(unread)


async def wake_snoozed(db: Database, limit: int = 500) -> int:
    """Open every pending conversation whose snooze time passed; returns how many woke."""
    async with db.transaction(bypass_rls=True) as session:
        due = (
            await session.execute(
                select(conversations.c.id, conversations.c.organization_id)
                .where(
                    conversations.c.status == PENDING,
                    conversations.c.snoozed_until <= func.now(),
                )
                .order_by(conversations.c.snoozed_until)
                .limit(limit)
            )
        ).all()
    woke = 0
    for conv_id, org in due:
        async with db.transaction(organization_id=org) as session:
            conv = (
                (
                    await session.execute(
                        select(conversations)
                        .where(
                            conversations.c.id == conv_id,
                            conversations.c.organization_id == org,
                            conversations.c.status == PENDING,
                            conversations.c.snoozed_until <= func.now(),
                        )
                        .with_for_update(skip_locked=True)
                    )
                )
                .mappings()
                .first()
            )
            if conv is not None:
                await change_status(session, org, conv, OPEN, by=None)
                woke += 1
    return woke
