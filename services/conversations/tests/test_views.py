"""The hot reads' JSON writer gives byte for byte what pydantic writes for the models."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from asyncpg.pgproto.pgproto import UUID as RowUUID
from pydantic_core import to_json

from pytake_conversations import views
from pytake_conversations.views import Conversation, Message, page_json


def row_uuid() -> uuid.UUID:
    """A UUID as asyncpg returns it (its own subclass)."""
    return RowUUID(str(uuid.uuid4()))


def conversation(**overrides: object) -> dict[str, object]:
    at = datetime(2026, 11, 29, 9, 30, 1, 250_000, tzinfo=UTC)
    item: dict[str, object] = {
        "id": row_uuid(),
        "organization_id": row_uuid(),
        "contact_id": row_uuid(),
        "number_id": row_uuid(),
        "phone_number_id": "106540352242922",
        "wa_id": "5511900000001",
        "user_id": None,
        "status": "open",
        "priority": "high",
        "snoozed_until": None,
        "assignee_id": row_uuid(),
        "department_id": None,
        "unread_count": 3,
        "last_inbound_at": at,
        "last_message_at": at.replace(microsecond=0),  # no fraction: written without one
        "service_window_expires_at": at + timedelta(hours=24),
        "first_response_at": None,
        "resolved_at": None,
        "closed_at": None,
        "created_at": at - timedelta(days=1, microseconds=1),
        "updated_at": at,
        "previous_conversation_id": row_uuid(),
        "started_by": None,
        "sla_policy_id": row_uuid(),
        "first_response_due_at": at + timedelta(minutes=15),
        "resolution_due_at": None,
        "sla_responded_at": None,
        "first_response_breached_at": at.replace(microsecond=0),
        "resolution_breached_at": None,
    }
    return item | overrides


def test_a_conversation_page_is_written_as_the_model_would(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_fallback(_: object) -> bytes:
        raise AssertionError("orjson refused the page")

    monkeypatch.setattr(views, "to_json", no_fallback)
    items = [conversation(), conversation(assignee_id=None, last_inbound_at=None)]
    items[1]["service_window_expires_at"] = None
    page = {"items": items, "next_cursor": "abc"}
    models = [Conversation.model_validate(i).model_dump_json() for i in items]
    assert page_json(page) == b'{"items":[%s],"next_cursor":"abc"}' % ",".join(models).encode()


def test_a_message_page_with_any_content_is_written_as_the_model_would() -> None:
    content = {"text": {"body": "olá ✓"}, "n": 1.5, "list": [1, None, True], "big": 2**70}
    message = {
        "id": row_uuid(),
        "conversation_id": row_uuid(),
        "direction": "inbound",
        "type": "text",
        "text": 'quote " and \\ and\nnewline',
        "content": content,
        "status": "received",
        "status_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "error_code": None,
        "error_detail": None,
        "wamid": "wamid.X",
        "context_wamid": None,
        "sent_by": None,
        "sender_type": None,
        "created_at": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        "meta_timestamp": None,
        "read_at": None,
    }
    page = {"items": [message], "next_cursor": None, "has_more": False}
    # an integer past 64 bits: orjson refuses it, the pydantic writer takes over
    expected = {"items": [Message.model_validate(message)], "next_cursor": None, "has_more": False}
    assert page_json(page) == to_json(expected)
    del content["big"]
    assert page_json(page) == to_json(expected | {"items": [Message.model_validate(message)]})


def test_any_row_gives_the_models_fields_as_the_models_would_write_them() -> None:
    """The set-based inbound handler's stream frames: rows with more columns than the
    models (``SELECT *``), the window computed, written as pydantic would."""
    row = conversation(sla_started_at=None, sla_applied_at=None)
    del row["service_window_expires_at"]
    expected = Conversation.of(row).model_dump_json().encode()
    assert page_json(views.conversation_fields(row)) == expected
    message = {
        "id": row_uuid(),
        "organization_id": row_uuid(),
        "conversation_id": row_uuid(),
        "direction": "inbound",
        "type": "text",
        "text": "hi",
        "content": {"text": {"body": "hi"}},
        "status": "received",
        "status_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "error_code": None,
        "error_detail": None,
        "wamid": "wamid.Y",
        "context_wamid": None,
        "sent_by": None,
        "sender_type": None,
        "recipient_id": None,
        "created_at": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        "meta_timestamp": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "read_at": None,
    }
    expected = Message.of(message).model_dump_json().encode()
    assert page_json(views.message_fields(message)) == expected
