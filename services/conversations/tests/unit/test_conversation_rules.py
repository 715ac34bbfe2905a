"""Conversation rules on their own: status transitions, delivery order, the window, templates."""

from datetime import UTC, datetime, timedelta
from itertools import permutations

import pytest

from pytake_conversations.domain import (
    CLOSED,
    CONVERSATION_STATUSES,
    OPEN,
    PENDING,
    RANK,
    RESOLVED,
    InvalidTransition,
    check_transition,
    render,
    status_moves,
    unknown_placeholders,
    window_closes_at,
)

ALLOWED = {
    (OPEN, PENDING),
    (OPEN, RESOLVED),
    (OPEN, CLOSED),
    (PENDING, OPEN),
    (PENDING, PENDING),  # a new snooze time
    (PENDING, RESOLVED),
    (PENDING, CLOSED),
    (RESOLVED, OPEN),
    (RESOLVED, CLOSED),
}


@pytest.mark.parametrize("current", CONVERSATION_STATUSES)
@pytest.mark.parametrize("new", CONVERSATION_STATUSES)
def test_every_status_change_is_allowed_or_refused_with_what_is_allowed(
    current: str, new: str
) -> None:
    if (current, new) in ALLOWED or (current == new and current != CLOSED):
        check_transition(current, new)
        return
    with pytest.raises(InvalidTransition) as caught:
        check_transition(current, new)
    assert caught.value.status == 409
    assert caught.value.extra["current"] == current
    assert caught.value.extra["requested"] == new
    assert new not in caught.value.extra["allowed"]


def test_a_closed_conversation_stays_closed() -> None:
    for new in CONVERSATION_STATUSES:
        with pytest.raises(InvalidTransition) as caught:
            check_transition(CLOSED, new)
        assert caught.value.extra["allowed"] == []


def _final(order: tuple[str, ...]) -> str:
    status = "pending"
    for new in order:
        if status_moves(status, new):
            status = new
    return status


def test_delivery_statuses_end_at_the_highest_whatever_their_arrival_order() -> None:
    for order in permutations(["sent", "delivered", "read"]):
        assert _final(order) == "read"
    for order in permutations(["sent", "delivered", "delivered", "sent"]):
        assert _final(order) == "delivered"


def test_failed_ends_an_undelivered_message_but_never_a_read_one() -> None:
    assert _final(("sent", "failed", "delivered", "read")) == "failed"
    assert _final(("delivered", "failed")) == "failed"  # another device failed
    assert _final(("read", "failed")) == "read"
    assert not status_moves("failed", "read")


def test_statuses_never_move_backwards_or_to_unknown_values() -> None:
    for current in RANK:
        for new in RANK:
            assert status_moves(current, new) == (RANK[new] > RANK[current])
        assert not status_moves(current, "deleted")
    assert not status_moves("mystery", "read")


def test_the_window_closes_hours_after_the_last_inbound_message() -> None:
    last = datetime(2026, 12, 5, 23, 30, tzinfo=UTC)
    assert window_closes_at(last, 24) == last + timedelta(hours=24)
    assert window_closes_at(last, 0.5) == datetime(2026, 12, 6, 0, 0, tzinfo=UTC)
    assert window_closes_at(None, 24) is None


def test_placeholders_render_known_values_and_never_leak_braces() -> None:
    body = "Hi {{ contact.name }}, I'm {{agent.first_name}} ({{contact.phone}})"
    assert unknown_placeholders(body) == []
    assert render(body, {"contact.name": "Ana", "agent.first_name": "Bo"}) == "Hi Ana, I'm Bo ()"
    assert unknown_placeholders("{{contact.email}} {{agent.name}} {{contact.email}}") == [
        "contact.email"
    ]
    assert render("{{contact.email}}!", {}) == "!"
