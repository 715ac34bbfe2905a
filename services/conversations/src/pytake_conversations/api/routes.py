"""Conversations API: the inbox (list with filters, counts, read), lifecycle, priority,
assignment and marking the customer's messages read."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, model_validator
from sqlalchemy import func, update

from pytake_common.errors import InvalidInput
from pytake_common.outbox import emit
from pytake_common.pagination import ROW_ID, TIMESTAMP, keyset
from pytake_common.rawpg import TenantReads
from pytake_common.security import READERS, Principal, Reader, Worker, authorize
from pytake_common.strict import StrictParams, Unusual, disjoint, read_query
from pytake_common.web import FastPathRoute, fast_path
from pytake_conversations.api.deps import (
    DB,
    Limit,
    Reads,
    WindowHours,
    load_conversation,
    reads_of,
    window_hours_of,
)
from pytake_conversations.domain import (
    CONVERSATION_STATUSES,
    INBOUND,
    PENDING,
    check_transition,
)
from pytake_conversations.events import MessageReadRequested
from pytake_conversations.inbox import (
    change_priority,
    change_status,
    check_assignee,
    check_department,
    push_conversation,
    set_assignment,
    update_conversation,
)
from pytake_conversations.tables import messages
from pytake_conversations.views import (
    CONVERSATION_COLUMNS,
    Conversation,
    conversation_dict,
    page_json,
)

#: the inbox, newest activity first by (last_message_at, id)
INBOX = keyset("conversations", TIMESTAMP, ROW_ID)

router = APIRouter(prefix="/v1/conversations", tags=["conversations"], route_class=FastPathRoute)
ConversationStatus = Literal["open", "pending", "resolved", "closed"]
Priority = Literal["low", "normal", "high", "urgent"]


class ConversationPage(BaseModel):
    items: list[Conversation]
    next_cursor: str | None


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: ConversationStatus
    #: with ``pending`` only: wake up (back to open) at this time unless the customer writes first
    snooze_until: datetime | None = None
    priority: Priority | None = None

    @model_validator(mode="after")
    def _snooze(self) -> Self:
        if self.snooze_until is not None:
            if self.status != PENDING:
                raise ValueError("snooze_until goes with status pending")
            if self.snooze_until.tzinfo is None:
                raise ValueError("snooze_until needs a time zone (RFC 3339)")
            if self.snooze_until <= datetime.now(UTC):
                raise ValueError("snooze_until must be in the future")
        return self


class PriorityChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    priority: Priority


class Assignment(BaseModel):
    """Fields given change (null clears); fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    assignee_id: uuid.UUID | None = None
    department_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("give assignee_id and/or department_id (null to clear)")
        return self


class ReadResult(BaseModel):
    conversation: Conversation
    #: how many of the customer's messages this call marked read
    marked: int


@dataclass(frozen=True, slots=True)
class Filters:
    """The inbox filters, as ``_filters`` gives them (called by FastAPI, or by a fast path
    with the values it read strictly)."""

    status: list[ConversationStatus] | None = None
    assignee_id: uuid.UUID | None = None
    department_id: uuid.UUID | None = None
    unassigned: bool | None = None
    contact_id: uuid.UUID | None = None
    number_id: uuid.UUID | None = None
    has_unread: bool | None = None
    priority: list[Priority] | None = None
    updated_since: datetime | None = None

    def where(self, where: "SqlWhere", *, with_status: bool = True) -> None:
        """Add the filters' conditions on ``conversations`` to ``where``."""
        if with_status and self.status:
            where.add_in("status", self.status)
        if self.assignee_id is not None:
            where.add("assignee_id = {}", self.assignee_id)
        if self.unassigned is True:
            where.add("assignee_id IS NULL")
        elif self.unassigned is False:
            where.add("assignee_id IS NOT NULL")
        if self.department_id is not None:
            where.add("department_id = {}", self.department_id)
        if self.contact_id is not None:
            where.add("contact_id = {}", self.contact_id)
        if self.number_id is not None:
            where.add("number_id = {}", self.number_id)
        if self.has_unread is True:
            where.add("unread_count > 0")
        elif self.has_unread is False:
            where.add("unread_count = 0")
        if self.priority:
            where.add_in("priority", self.priority)
        if self.updated_since is not None:
            where.add("updated_at >= {}", self.updated_since)


class SqlWhere:
    """Conditions joined by AND with numbered parameters; ``organization_id = $1`` first."""

    def __init__(self, org: uuid.UUID) -> None:
        self.parts = ["organization_id = $1"]
        self.args: list[Any] = [org]

    def add(self, condition: str, *values: Any) -> None:
        marks = []
        for value in values:
            self.args.append(value)
            marks.append(f"${len(self.args)}")
        self.parts.append(condition.format(*marks))

    def add_in(self, column: str, values: Sequence[str]) -> None:
        # One value as "=": the (organization, column, last_message_at) indexes then
        # give the order too.
        if len(values) == 1:
            self.add(f"{column} = {{}}", values[0])
        else:
            self.add(f"{column} = ANY({{}}::text[])", list(values))

    @property
    def sql(self) -> str:
        return " AND ".join(self.parts)


async def _filters(
    status: Annotated[list[ConversationStatus] | None, Query()] = None,
    assignee_id: uuid.UUID | None = None,
    department_id: uuid.UUID | None = None,
    unassigned: bool | None = None,
    contact_id: uuid.UUID | None = None,
    number_id: uuid.UUID | None = None,
    has_unread: bool | None = None,
    priority: Annotated[list[Priority] | None, Query()] = None,
    updated_since: datetime | None = None,
) -> Filters:
    if updated_since is not None and updated_since.tzinfo is None:
        raise InvalidInput("updated_since needs a time zone (RFC 3339)")
    return Filters(
        status=status,
        assignee_id=assignee_id,
        department_id=department_id,
        unassigned=unassigned,
        contact_id=contact_id,
        number_id=number_id,
        has_unread=has_unread,
        priority=priority,
        updated_since=updated_since,
    )


InboxFilters = Annotated[Filters, Depends(_filters)]


async def inbox_page(
    reads: TenantReads,
    hours: float,
    principal: Principal,
    filters: Filters,
    limit: int,
    cursor: str | None,
) -> Response:
    org = principal.organization_id
    where = SqlWhere(org)
    filters.where(where)
    if cursor:
        at, last_id = INBOX.decode(cursor)
        where.add("(last_message_at, id) < ({}, {})", at, last_id)
    # The conditions are constants with $n parameters. ORDER BY names the table's
    # columns: a bare "id" would be the selected id::text (no index, text order).
    sql = (
        f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE {where.sql}"  # noqa: S608
        " ORDER BY conversations.last_message_at DESC, conversations.id DESC"
        f" LIMIT ${len(where.args) + 1}"
    )
    rows = await reads.fetch(org, sql, *where.args, limit + 1)
    items = [conversation_dict(r, hours) for r in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    page = {
        "items": items,
        "next_cursor": INBOX.encode((last["last_message_at"], last["id"])) if last else None,
    }
    # Serialised here (the hot path): response_model would validate every item again.
    return Response(page_json(page), media_type="application/json")


async def _list_conversations_fast(request: Request) -> Response | None:
    """``list_conversations`` without FastAPI's dependency solving, for plain requests."""
    try:
        filter_args, page_args = read_query(request, FILTER_PARAMS, PAGE_PARAMS)
    except Unusual:
        return None
    principal = await authorize(request, READERS)
    filters = await _filters(**filter_args)
    return await inbox_page(
        reads_of(request), window_hours_of(request), principal, filters, **page_args
    )


@router.get("", response_model=ConversationPage)
@fast_path(_list_conversations_fast)
async def list_conversations(
    principal: Reader,
    reads: Reads,
    hours: WindowHours,
    filters: InboxFilters,
    limit: Limit = 50,
    cursor: str | None = None,
) -> Response:
    """The inbox, newest activity first (last message time, then id, both descending)."""
    return await inbox_page(reads, hours, principal, filters, limit, cursor)


#: the list's fast path's reading of the query: the filters, then the page (limit, cursor)
FILTER_PARAMS, PAGE_PARAMS = disjoint(
    StrictParams.of(_filters), StrictParams.of(list_conversations)
)

COUNTS_SQL = (
    "SELECT status, sum(n) FROM conversation_counts WHERE organization_id = $1 GROUP BY status"
)


async def status_counts(
    reads: TenantReads, principal: Principal, filters: Filters
) -> dict[str, int]:
    org = principal.organization_id
    where = SqlWhere(org)
    filters.where(where, with_status=False)
    if len(where.parts) > 1:  # conditions are constants with $n parameters
        sql = f"SELECT status, count(*) FROM conversations WHERE {where.sql} GROUP BY status"  # noqa: S608
    else:  # no filter: the counters kept by triggers (migration 0003)
        sql = COUNTS_SQL
    rows = await reads.fetch(org, sql, *where.args)
    found = {row[0]: int(row[1]) for row in rows}
    counts = {status: found.get(status, 0) for status in CONVERSATION_STATUSES}
    counts["total"] = sum(counts.values())
    return counts


async def _conversation_counts_fast(request: Request) -> Response | None:
    """``conversation_counts`` without FastAPI's dependency solving, for plain requests."""
    try:
        filter_args, _ = read_query(request, FILTER_PARAMS, COUNTS_PARAMS)
    except Unusual:
        return None
    principal = await authorize(request, READERS)
    filters = await _filters(**filter_args)
    counts = await status_counts(reads_of(request), principal, filters)
    return Response(page_json(counts), media_type="application/json")


@router.get("/counts")
@fast_path(_conversation_counts_fast)
async def conversation_counts(
    principal: Reader, reads: Reads, filters: InboxFilters
) -> dict[str, int]:
    """How many conversations per status (with the same filters as the list, but status)."""
    return await status_counts(reads, principal, filters)


#: the counts' fast path's reading of the query: the filters (the endpoint takes no other)
_, COUNTS_PARAMS = disjoint(FILTER_PARAMS, StrictParams.of(conversation_counts))


@router.get("/{conversation_id}", response_model=Conversation)
async def get_conversation(
    conversation_id: uuid.UUID, principal: Reader, db: DB, hours: WindowHours
) -> Conversation:
    async with db.transaction(organization_id=principal.organization_id) as session:
        row = await load_conversation(session, principal.organization_id, conversation_id)
    return Conversation.of(row, hours)


@router.post(
    "/{conversation_id}/status",
    response_model=Conversation,
    responses={409: {"description": "transition not allowed (`invalid_transition`)"}},
)
async def set_status(
    conversation_id: uuid.UUID, body: StatusChange, principal: Worker, db: DB, hours: WindowHours
) -> Conversation:
    """Move the conversation in its lifecycle (see the service README for the table)."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        conv = await load_conversation(session, org, conversation_id, lock=True)
        check_transition(conv["status"], body.status)
        extra = {"priority": body.priority} if body.priority else {}
        unchanged = (
            body.status == conv["status"]
            and body.snooze_until == conv["snoozed_until"]
            and (body.priority is None or body.priority == conv["priority"])
        )
        row = conv
        if not unchanged:
            row = await change_status(
                session,
                org,
                conv,
                body.status,
                by=principal.user_id,
                snooze_until=body.snooze_until,
                extra=extra,
            )
    return Conversation.of(row, hours)


@router.post("/{conversation_id}/priority", response_model=Conversation)
async def set_priority(
    conversation_id: uuid.UUID,
    body: PriorityChange,
    principal: Worker,
    db: DB,
    hours: WindowHours,
) -> Conversation:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        conv = await load_conversation(session, org, conversation_id, lock=True)
        row = await change_priority(session, org, conv, body.priority, by=principal.user_id)
    return Conversation.of(row, hours)


@router.post(
    "/{conversation_id}/assign",
    response_model=Conversation,
    responses={422: {"description": "`invalid_assignee` or `invalid_department`"}},
)
async def assign(
    conversation_id: uuid.UUID, body: Assignment, principal: Worker, db: DB, hours: WindowHours
) -> Conversation:
    """Give the conversation to an agent and/or a department (null clears)."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        conv = await load_conversation(session, org, conversation_id, lock=True)
        fields = body.model_fields_set
        assignee = body.assignee_id if "assignee_id" in fields else conv["assignee_id"]
        department = body.department_id if "department_id" in fields else conv["department_id"]
        if assignee is not None and assignee != conv["assignee_id"]:
            await check_assignee(session, org, assignee)
        if department is not None and department != conv["department_id"]:
            await check_department(session, org, department)
        row = await set_assignment(
            session,
            org,
            conv,
            assignee_id=assignee,
            department_id=department,
            by=principal.user_id,
        )
    return Conversation.of(row, hours)


@router.post("/{conversation_id}/read", response_model=ReadResult)
async def mark_read(
    conversation_id: uuid.UUID, principal: Worker, db: DB, hours: WindowHours
) -> ReadResult:
    """Mark the customer's unread messages read; WhatsApp is asked once per message."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        conv = await load_conversation(session, org, conversation_id, lock=True)
        unread = (
            await session.execute(
                update(messages)
                .where(
                    messages.c.organization_id == org,
                    messages.c.conversation_id == conversation_id,
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
                conversation_id=conversation_id,
                number_id=conv["number_id"],
                phone_number_id=conv["phone_number_id"],
                wamid=wamid,
                message_id=message_id,
            )
            await emit(session, requested, message_id, org)
        row = conv
        if unread or conv["unread_count"]:
            row = await update_conversation(session, org, conversation_id, unread_count=0)
            await push_conversation(session, org, row, "conversation.updated")
    return ReadResult(conversation=Conversation.of(row, hours), marked=len(unread))
