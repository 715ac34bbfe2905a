"""What the API answers: conversations and messages as clients see them."""

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, get_args

import orjson
from pydantic import BaseModel
from pydantic_core import to_json

from pytake_conversations.domain import DEFAULT_WINDOW_HOURS, window_closes_at
from pytake_conversations.senders import SenderType


class Conversation(BaseModel):
    id: uuid.UUID
    organization_id: uuid.UUID
    contact_id: uuid.UUID
    number_id: uuid.UUID
    phone_number_id: str
    wa_id: str | None
    user_id: str | None
    status: str
    priority: str
    #: while pending: when the conversation wakes up (back to open) by itself
    snoozed_until: datetime | None
    assignee_id: uuid.UUID | None
    department_id: uuid.UUID | None
    #: the customer's messages no agent has marked read yet
    unread_count: int
    last_inbound_at: datetime | None
    last_message_at: datetime
    #: when free-form replies stop being possible (24 h after the customer's last message)
    service_window_expires_at: datetime | None
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    #: the contact's closed conversation on this number that this one follows
    previous_conversation_id: uuid.UUID | None = None
    #: who started it (``POST /v1/conversations``); null when the customer's message did
    started_by: uuid.UUID | None = None
    #: the SLA policy automation applied to the current cycle (opened or reopened)
    sla_policy_id: uuid.UUID | None = None
    first_response_due_at: datetime | None = None
    resolution_due_at: datetime | None = None
    #: the first agent reply of the SLA cycle (``first_response_at`` is the first ever)
    sla_responded_at: datetime | None = None
    first_response_breached_at: datetime | None = None
    resolution_breached_at: datetime | None = None

    @classmethod
    def of(
        cls, row: Mapping[Any, Any], window_hours: float = DEFAULT_WINDOW_HOURS
    ) -> "Conversation":
        return cls.model_validate(
            {
                **row,
                "service_window_expires_at": window_closes_at(row["last_inbound_at"], window_hours),
            }
        )


class Message(BaseModel):
    id: uuid.UUID
    conversation_id: uuid.UUID
    direction: str
    type: str
    text: str | None
    content: dict[str, Any]
    status: str
    status_at: datetime | None
    error_code: int | None
    error_detail: str | None
    wamid: str | None
    context_wamid: str | None
    sent_by: uuid.UUID | None
    #: what ``sent_by`` is: a person (``user``), an integration (``api_client``), a rule or
    #: flow (``automation``) or a campaign (``campaign``)
    sender_type: SenderType | None = None
    created_at: datetime
    meta_timestamp: datetime | None
    #: inbound only: when an agent marked it read
    read_at: datetime | None = None

    @classmethod
    def of(cls, row: Mapping[Any, Any]) -> "Message":
        return cls.model_validate(dict(row))


# The hot reads (inbox list, history) skip the models: each asyncpg row becomes a plain
# dict (``dict(row)``, the columns selected in the models' field order) and orjson writes
# the JSON, the same text ``model_dump_json`` gives (tests compare both): UUIDs as
# strings, datetimes in RFC 3339 with ``Z`` for UTC and microseconds only when non-zero.
# UUID columns are selected as text (PostgreSQL writes them in the canonical lowercase
# form pydantic writes): no UUID objects to build, and nothing for orjson to call back for.
_WINDOW = "service_window_expires_at"


def _column(name: str, annotation: Any) -> str:
    if annotation is uuid.UUID or uuid.UUID in get_args(annotation):
        return f"{name}::text AS {name}"
    if name == _WINDOW:  # computed in Python: a NULL keeps its place in dict(row)
        return f"NULL::timestamptz AS {name}"
    return name


def _columns(model: type[BaseModel]) -> str:
    return ", ".join(_column(name, f.annotation) for name, f in model.model_fields.items())


CONVERSATION_COLUMNS = _columns(Conversation)
MESSAGE_COLUMNS = _columns(Message)


def conversation_dict(row: Mapping[str, Any], window_hours: float) -> dict[str, Any]:
    """A row of ``CONVERSATION_COLUMNS`` as ``Conversation`` would serialise it, without
    validation."""
    item = dict(row)
    last_inbound_at = item["last_inbound_at"]
    if last_inbound_at is not None:
        item[_WINDOW] = window_closes_at(last_inbound_at, window_hours)
    return item


def message_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row of ``MESSAGE_COLUMNS`` as ``Message`` would serialise it."""
    return dict(row)


_CONVERSATION_FIELDS = tuple(Conversation.model_fields)
_MESSAGE_FIELDS = tuple(Message.model_fields)


def conversation_fields(
    row: Mapping[str, Any], window_hours: float = DEFAULT_WINDOW_HOURS
) -> dict[str, Any]:
    """Any conversation row (e.g. ``SELECT *``) as ``Conversation`` would serialise it
    with :func:`page_json`, without validation: the model's fields only."""
    window = window_closes_at(row["last_inbound_at"], window_hours)
    return {name: window if name == _WINDOW else row[name] for name in _CONVERSATION_FIELDS}


def message_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """Any message row as ``Message`` would serialise it with :func:`page_json`."""
    return {name: row[name] for name in _MESSAGE_FIELDS}


def _uuid_text(value: object) -> str:
    # asyncpg gives its own uuid.UUID subclass, which orjson only takes through here
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError


def page_json(page: dict[str, Any]) -> bytes:
    """A page of plain dicts as JSON, as pydantic would write it (see above)."""
    try:
        return orjson.dumps(page, default=_uuid_text, option=orjson.OPT_UTC_Z)
    except orjson.JSONEncodeError:  # e.g. an integer past 64 bits inside a message's content
        return to_json(page)
