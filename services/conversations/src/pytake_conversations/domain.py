"""Conversation and message rules: lifecycle, status order, the customer-service window."""

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pytake_common.errors import Conflict, DomainError, InvalidInput

OPEN, PENDING, RESOLVED, CLOSED = "open", "pending", "resolved", "closed"
CONVERSATION_STATUSES = (OPEN, PENDING, RESOLVED, CLOSED)
#: Statuses in which a conversation is the contact's current one on a number.
ACTIVE = (OPEN, PENDING, RESOLVED)

#: Who may move a conversation where (agents through the API; the customer's next message
#: and the snooze timer move pending/resolved back to open on their own). Staying in the
#: same status is a no-op, except pending → pending, which changes the snooze time.
TRANSITIONS: Mapping[str, frozenset[str]] = {
    OPEN: frozenset({PENDING, RESOLVED, CLOSED}),
    PENDING: frozenset({OPEN, PENDING, RESOLVED, CLOSED}),
    RESOLVED: frozenset({OPEN, CLOSED}),
    CLOSED: frozenset(),
}
#: Statuses the customer's next message turns back into ``open``.
WAKES_ON_INBOUND = frozenset({PENDING, RESOLVED})
PRIORITIES = ("low", "normal", "high", "urgent")
#: Statuses counting against an agent's ``max_open_per_agent``.
WORKLOAD = (OPEN, PENDING)

#: WhatsApp's customer-service window (the service's setting may differ).
DEFAULT_WINDOW_HOURS = 24.0

INBOUND, OUTBOUND, NOTE = "inbound", "outbound", "note"
INTERNAL = "internal"  # the status of a private note: stored, never sent
RECEIVED, FAILED = "received", "failed"
#: Outbound delivery progress; a status only ever moves up this ladder.
RANK = {"pending": 0, "sent": 1, "delivered": 2, "read": 3, "played": 4}
#: ``failed`` ends a message not yet delivered, and may follow ``delivered`` (another
#: device of the customer failed), but a message the customer read stays read.
FAILABLE = frozenset({"pending", "sent", "delivered"})


def status_moves(current: str, new: str) -> bool:
    """Whether an outbound message in ``current`` status takes the ``new`` status.

    Statuses arrive out of order and more than once: a late ``sent`` after ``read``,
    a duplicate ``delivered``, ``failed`` after ``read`` change nothing; ``failed``
    is terminal.
    """
    if current == FAILED or new == current:
        return False
    if new == FAILED:
        return current in FAILABLE
    if new not in RANK or current not in RANK:
        return False
    return RANK[new] > RANK[current]


def interactive_reply(kind: str, content: Mapping[str, Any]) -> dict[str, str] | None:
    """The option the customer chose (``{kind, id, title}``) from Meta's raw message: an
    interactive ``button_reply``/``list_reply``, or a template quick-reply ``button``."""
    inner = content.get(kind)
    if not isinstance(inner, Mapping):
        return None
    if kind == "button":
        payload, text = inner.get("payload"), inner.get("text")
        if isinstance(payload, str) and isinstance(text, str):
            return {"kind": "button", "id": payload, "title": text}
        return None
    if kind != "interactive":
        return None
    for key, reply_kind in (("button_reply", "button"), ("list_reply", "list")):
        chosen = inner.get(key)
        if isinstance(chosen, Mapping) and isinstance(chosen.get("id"), str):
            return {"kind": reply_kind, "id": chosen["id"], "title": str(chosen.get("title") or "")}
    return None


def window_closes_at(last_inbound_at: datetime | None, hours: float) -> datetime | None:
    if last_inbound_at is None:
        return None
    return last_inbound_at + timedelta(hours=hours)


class ConversationClosed(Conflict):
    code, title = "conversation_closed", "Conversation is closed"


class OutsideServiceWindow(DomainError):
    status, code, title = (
        422,
        "outside_customer_service_window",
        ("Outside the customer-service window"),
    )


class ReplyTargetInvalid(DomainError):
    status, code, title = 422, "invalid_reply_to", "Cannot reply to that message"


def check_transition(current: str, new: str) -> None:
    if new not in TRANSITIONS.get(current, frozenset()) and new != current:
        allowed = sorted(TRANSITIONS.get(current, frozenset()) - {current})
        raise InvalidTransition(
            f"a {current} conversation cannot become {new}",
            current=current,
            requested=new,
            allowed=allowed,
        )
    if current == CLOSED:
        raise InvalidTransition(
            "a closed conversation stays closed; the customer's next message opens a new one",
            current=current,
            requested=new,
            allowed=[],
        )


class InvalidTransition(Conflict):
    code, title = "invalid_transition", "Status change not allowed"


class ContactBlocked(DomainError):
    status, code, title = 422, "contact_blocked", "The contact is blocked"


class InvalidAssignee(InvalidInput):
    code, title = "invalid_assignee", "Not an active agent of this organization"


class InvalidDepartment(InvalidInput):
    code, title = "invalid_department", "No such department in this organization"


class ShortcodeTaken(Conflict):
    code, title = "shortcode_taken", "Shortcode already used in this organization"


class InvalidPlaceholder(InvalidInput):
    code, title = "invalid_placeholder", "Unknown placeholder"


#: ``{{contact.name}}``-style placeholders canned responses may use.
PLACEHOLDER_RE = re.compile(r"\{\{\s*([a-z_]+\.[a-z_]+)\s*\}\}")
PLACEHOLDERS = frozenset(
    {"contact.name", "contact.phone", "agent.name", "agent.first_name", "conversation.id"}
)


def unknown_placeholders(body: str) -> list[str]:
    return sorted({m for m in PLACEHOLDER_RE.findall(body) if m not in PLACEHOLDERS})


def render(body: str, values: Mapping[str, str | None]) -> str:
    """Fill placeholders; an unknown value renders empty, never as ``{{...}}`` to a customer."""
    return PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1)) or "", body)
