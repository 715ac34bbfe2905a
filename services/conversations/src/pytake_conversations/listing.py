"""The inbox's reads on the raw read path (``TenantReads``) the endpoints and their fast
paths share: the filters as SQL conditions, a page of the list, the counts per status,
and a page of a conversation's history."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pytake_common.errors import InvalidInput, NotFound
from pytake_common.pagination import ROW_ID, TIMESTAMP, keyset
from pytake_common.rawpg import TenantReads
from pytake_conversations.domain import CONVERSATION_STATUSES, NOTE
from pytake_conversations.sla import BREACHED_SQL, SlaFilter, at_risk_sql
from pytake_conversations.views import (
    CONVERSATION_COLUMNS,
    MESSAGE_COLUMNS,
    conversation_dict,
    message_dict,
    page_json,
)

#: the inbox, newest activity first by (last_message_at, id)
INBOX = keyset("conversations", TIMESTAMP, ROW_ID)
#: a conversation's history, by (created_at, id)
HISTORY = keyset("messages", TIMESTAMP, ROW_ID)

ConversationStatus = Literal["open", "pending", "resolved", "closed"]
Priority = Literal["low", "normal", "high", "urgent"]


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
    sla: SlaFilter | None = None

    def where(self, where: "SqlWhere", at_risk: timedelta, *, with_status: bool = True) -> None:
        """Add the filters' conditions on ``conversations`` to ``where`` (``at_risk``: how
        soon an unmet SLA target is at risk)."""
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
        if self.sla == "breached":
            where.add(BREACHED_SQL)
        elif self.sla == "at_risk":
            where.add(at_risk_sql("{0}"), datetime.now(UTC) + at_risk)


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


async def inbox_json(
    reads: TenantReads,
    org: uuid.UUID,
    hours: float,
    at_risk: timedelta,
    filters: Filters,
    limit: int,
    cursor: str | None,
) -> bytes:
    """A page of the inbox as the JSON of a ``ConversationPage``."""
    where = SqlWhere(org)
    filters.where(where, at_risk)
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
    # Serialised here (the hot path): a response_model would validate every item again.
    return page_json(page)


COUNTS_SQL = (
    "SELECT status, sum(n) FROM conversation_counts WHERE organization_id = $1 GROUP BY status"
)


async def status_counts(
    reads: TenantReads, org: uuid.UUID, at_risk: timedelta, filters: Filters
) -> dict[str, int]:
    """How many conversations per status (and ``total``) with ``filters`` but the status."""
    where = SqlWhere(org)
    filters.where(where, at_risk, with_status=False)
    if len(where.parts) > 1:  # conditions are constants with $n parameters
        sql = f"SELECT status, count(*) FROM conversations WHERE {where.sql} GROUP BY status"  # noqa: S608
    else:  # no filter: the counters kept by triggers (migration 0003)
        sql = COUNTS_SQL
    rows = await reads.fetch(org, sql, *where.args)
    found = {row[0]: int(row[1]) for row in rows}
    counts = {status: found.get(status, 0) for status in CONVERSATION_STATUSES}
    counts["total"] = sum(counts.values())
    return counts


CONVERSATION_EXISTS = "SELECT 1 FROM conversations WHERE id = $1 AND organization_id = $2"
ANCHOR = (
    "SELECT created_at FROM messages"
    " WHERE id = $1 AND organization_id = $2 AND conversation_id = $3"
)


async def history_json(
    reads: TenantReads,
    org: uuid.UUID,
    conversation_id: uuid.UUID,
    limit: int,
    cursor: str | None,
    before: uuid.UUID | None = None,
    after: uuid.UUID | None = None,
    latest: bool = False,
    include_notes: bool = True,
) -> bytes:
    """A page of the conversation's history as the JSON of a ``MessagePage``: forward from
    the start, after ``cursor`` or after the message ``after``; backward, the newest page
    (``latest``) or the one before the message ``before`` (one of them at most)."""
    if sum(x is not None and x is not False for x in (cursor, before, after, latest)) > 1:
        raise InvalidInput("use only one of cursor, before, after, latest")
    start = HISTORY.decode(cursor) if cursor else None
    backward = before is not None or latest
    conditions = ["organization_id = $1", "conversation_id = $2"]
    if not include_notes:
        conditions.append(f"direction <> '{NOTE}'")
    async with reads.connection(org) as conn:

        async def check_conversation() -> None:
            if await conn.fetchval(CONVERSATION_EXISTS, conversation_id, org) is None:
                raise NotFound("conversation not found")

        anchor_id = before or after
        if anchor_id is not None and start is None:
            at = await conn.fetchval(ANCHOR, anchor_id, org, conversation_id)
            if at is None:
                await check_conversation()
                raise NotFound("message not found in this conversation")
            start = (at, anchor_id)
        args: list[Any] = [org, conversation_id]
        if start is not None:
            conditions.append("(created_at, id) " + ("<" if before else ">") + " ($3, $4)")
            args += start
        order = "DESC" if backward else "ASC"
        sql = (
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {' AND '.join(conditions)}"  # noqa: S608
            # the table's columns: a bare "id" would be the selected id::text
            f" ORDER BY messages.created_at {order}, messages.id {order}"
            f" LIMIT ${len(args) + 1}"
        )
        rows = await conn.fetch(sql, *args, limit + 1)
        if not rows and anchor_id is None:
            # A message of this organization's conversation proves that it exists (and is
            # visible): the look-up is only needed for an empty page.
            await check_conversation()
    more = len(rows) > limit
    page = rows[:limit]
    if backward:
        page.reverse()
    next_cursor = None
    if more and not backward:
        next_cursor = HISTORY.encode((page[-1]["created_at"], page[-1]["id"]))
    body = {
        "items": [message_dict(r) for r in page],
        "next_cursor": next_cursor,
        "has_more": more,
    }
    # Serialised here (the hot path): a response_model would validate every item again.
    return page_json(body)
