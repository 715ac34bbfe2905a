"""The inbox filters as SQL conditions, and canned responses' body check, on their own."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from pytake_conversations.canned import check_body
from pytake_conversations.domain import InvalidPlaceholder
from pytake_conversations.listing import Filters, SqlWhere
from pytake_conversations.sla import BREACHED_SQL

ORG = uuid.uuid4()


def where(filters: Filters, *, with_status: bool = True) -> SqlWhere:
    found = SqlWhere(ORG)
    filters.where(found, timedelta(minutes=30), with_status=with_status)
    return found


def test_no_filter_is_the_organization_alone():
    found = where(Filters())
    assert (found.sql, found.args) == ("organization_id = $1", [ORG])


def test_conditions_number_their_parameters_in_order():
    agent, number = uuid.uuid4(), uuid.uuid4()
    since = datetime(2026, 1, 1, tzinfo=UTC)
    found = where(
        Filters(
            status=["open", "pending"],
            assignee_id=agent,
            number_id=number,
            has_unread=True,
            priority=["urgent"],
            updated_since=since,
            unassigned=False,
        )
    )
    assert found.parts == [
        "organization_id = $1",
        "status = ANY($2::text[])",
        "assignee_id = $3",
        "assignee_id IS NOT NULL",
        "number_id = $4",
        "unread_count > 0",
        "priority = $5",  # one value: "=", so the (organization, priority, ...) index orders
        "updated_at >= $6",
    ]
    assert found.args == [ORG, ["open", "pending"], agent, number, "urgent", since]


def test_the_counts_leave_the_status_out():
    found = where(Filters(status=["open"], has_unread=False), with_status=False)
    assert found.parts == ["organization_id = $1", "unread_count = 0"]


def test_sla_filters():
    assert where(Filters(sla="breached")).parts[1] == BREACHED_SQL
    at_risk = where(Filters(sla="at_risk"))
    assert "$2" in at_risk.parts[1]
    assert at_risk.args[1] > datetime.now(UTC)  # now + the at-risk window


def test_a_canned_body_is_not_blank_and_names_known_placeholders():
    assert check_body("Hi {{contact.name}}") == "Hi {{contact.name}}"
    with pytest.raises(ValueError):
        check_body("   ")
    with pytest.raises(InvalidPlaceholder):
        check_body("Hi {{contact.shoe_size}}")
