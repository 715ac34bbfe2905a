"""Conversations API: the inbox (list with filters, counts, read), lifecycle, priority,
assignment and marking the customer's messages read."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Self

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, model_validator

from pytake_common.errors import InvalidInput
from pytake_common.rawpg import TenantReads
from pytake_common.security import READERS, Principal, Reader, Worker, authorize
from pytake_common.strict import StrictParams, Unusual, disjoint, read_query
from pytake_common.web import FastPathRoute, fast_path
from pytake_conversations import inbox, listing
from pytake_conversations.api.deps import (
    DB,
    AtRiskWindow,
    Limit,
    Reads,
    WindowHours,
    at_risk_window_of,
    reads_of,
    window_hours_of,
)
from pytake_conversations.domain import PENDING
from pytake_conversations.listing import ConversationStatus, Filters, Priority
from pytake_conversations.sla import SlaFilter
from pytake_conversations.views import Conversation, page_json

router = APIRouter(prefix="/v1/conversations", tags=["conversations"], route_class=FastPathRoute)


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
    sla: SlaFilter | None = None,
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
        sla=sla,
    )


InboxFilters = Annotated[Filters, Depends(_filters)]


async def inbox_page(
    reads: TenantReads,
    hours: float,
    at_risk: timedelta,
    principal: Principal,
    filters: Filters,
    limit: int,
    cursor: str | None,
) -> Response:
    page = await listing.inbox_json(
        reads, principal.organization_id, hours, at_risk, filters, limit, cursor
    )
    return Response(page, media_type="application/json")


async def _list_conversations_fast(request: Request) -> Response | None:
    """``list_conversations`` without FastAPI's dependency solving, for plain requests."""
    try:
        filter_args, page_args = read_query(request, FILTER_PARAMS, PAGE_PARAMS)
    except Unusual:
        return None
    principal = await authorize(request, READERS)
    filters = await _filters(**filter_args)
    return await inbox_page(
        reads_of(request),
        window_hours_of(request),
        at_risk_window_of(request),
        principal,
        filters,
        **page_args,
    )


@router.get("", response_model=ConversationPage)
@fast_path(_list_conversations_fast)
async def list_conversations(
    principal: Reader,
    reads: Reads,
    hours: WindowHours,
    at_risk: AtRiskWindow,
    filters: InboxFilters,
    limit: Limit = 50,
    cursor: str | None = None,
) -> Response:
    """The inbox, newest activity first (last message time, then id, both descending).

    ``sla=breached``: an SLA target of the current cycle was breached; ``sla=at_risk``:
    an active conversation with a target neither met nor breached that comes due within
    ``PYTAKE_SLA_AT_RISK_MINUTES`` (or is overdue, its breach not yet reported)."""
    return await inbox_page(reads, hours, at_risk, principal, filters, limit, cursor)


#: the list's fast path's reading of the query: the filters, then the page (limit, cursor)
FILTER_PARAMS, PAGE_PARAMS = disjoint(
    StrictParams.of(_filters), StrictParams.of(list_conversations)
)


async def _conversation_counts_fast(request: Request) -> Response | None:
    """``conversation_counts`` without FastAPI's dependency solving, for plain requests."""
    try:
        filter_args, _ = read_query(request, FILTER_PARAMS, COUNTS_PARAMS)
    except Unusual:
        return None
    principal = await authorize(request, READERS)
    filters = await _filters(**filter_args)
    counts = await listing.status_counts(
        reads_of(request), principal.organization_id, at_risk_window_of(request), filters
    )
    return Response(page_json(counts), media_type="application/json")


@router.get("/counts")
@fast_path(_conversation_counts_fast)
async def conversation_counts(
    principal: Reader, reads: Reads, at_risk: AtRiskWindow, filters: InboxFilters
) -> dict[str, int]:
    """How many conversations per status (with the same filters as the list, but status)."""
    return await listing.status_counts(reads, principal.organization_id, at_risk, filters)


#: the counts' fast path's reading of the query: the filters (the endpoint takes no other)
_, COUNTS_PARAMS = disjoint(FILTER_PARAMS, StrictParams.of(conversation_counts))


@router.get("/{conversation_id}", response_model=Conversation)
async def get_conversation(
    conversation_id: uuid.UUID, principal: Reader, db: DB, hours: WindowHours
) -> Conversation:
    async with db.transaction(organization_id=principal.organization_id) as session:
        row = await inbox.load_conversation(session, principal.organization_id, conversation_id)
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
        conv = await inbox.load_conversation(session, org, conversation_id, lock=True)
        row = await inbox.move(
            session,
            org,
            conv,
            body.status,
            by=principal.user_id,
            snooze_until=body.snooze_until,
            priority=body.priority,
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
        conv = await inbox.load_conversation(session, org, conversation_id, lock=True)
        row = await inbox.change_priority(session, org, conv, body.priority, by=principal.user_id)
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
        conv = await inbox.load_conversation(session, org, conversation_id, lock=True)
        fields = body.model_fields_set
        assignee = body.assignee_id if "assignee_id" in fields else conv["assignee_id"]
        department = body.department_id if "department_id" in fields else conv["department_id"]
        await inbox.check_assignment(session, org, conv, assignee, department)
        row = await inbox.set_assignment(
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
        conv = await inbox.load_conversation(session, org, conversation_id, lock=True)
        row, marked = await inbox.mark_read(session, org, conv)
    return ReadResult(conversation=Conversation.of(row, hours), marked=marked)
