"""Conversation and message rules: lifecycle, status order, the customer-service window."""

from datetime import datetime, timedelta

from pytake_common.errors import Conflict, DomainError

OPEN, PENDING, RESOLVED, CLOSED = "open", "pending", "resolved", "closed"
CONVERSATION_STATUSES = (OPEN, PENDING, RESOLVED, CLOSED)
#: Statuses in which a conversation is the contact's current one on a number.
ACTIVE = (OPEN, PENDING, RESOLVED)

INBOUND, OUTBOUND = "inbound", "outbound"
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
