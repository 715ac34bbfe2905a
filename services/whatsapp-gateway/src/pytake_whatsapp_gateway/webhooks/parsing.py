"""Meta's webhook envelope → the messages and statuses PyTake keeps.

Every ``entry``, ``change``, ``message`` and ``status`` is read (never just
``[0]``). Unknown message types are kept raw; elements PyTake cannot key
(no ``id``, no sender) are skipped and counted, the delivery itself is still
stored raw.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pytake_common.errors import DomainError
from pytake_whatsapp_gateway.events import MessageContext, StatusError


class InvalidPayload(DomainError):
    status, code, title = 400, "invalid_payload", "Invalid webhook payload"


@dataclass(frozen=True, slots=True)
class InboundMessage:
    phone_number_id: str
    display_phone_number: str
    wamid: str
    wa_id: str | None
    user_id: str | None
    profile_name: str | None
    type: str
    text: str | None
    content: dict[str, Any]
    context: MessageContext | None
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    phone_number_id: str
    wamid: str
    status: str
    timestamp: datetime
    recipient_id: str | None
    errors: list[StatusError]
    callback_data: str | None


@dataclass(slots=True)
class ParsedDelivery:
    #: Every phone_number_id the delivery names, in order of appearance, without repeats.
    phone_number_ids: list[str] = field(default_factory=list)
    messages: list[InboundMessage] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    skipped: int = 0


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidPayload("the body is not valid JSON") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("entry"), list):
        raise InvalidPayload("the body is not a WhatsApp webhook envelope")
    envelope: dict[str, Any] = payload
    if b"\\u0000" in raw:
        # PostgreSQL's jsonb cannot hold NUL characters; keep the rest of the text.
        envelope = _without_nul(envelope)
    return envelope


def parse_delivery(payload: dict[str, Any], received_at: datetime) -> ParsedDelivery:
    parsed = ParsedDelivery()
    for entry in _dicts(payload.get("entry")):
        for change in _dicts(entry.get("changes")):
            value = change.get("value")
            if not isinstance(value, dict):
                continue
            metadata = value.get("metadata")
            phone_number_id = (
                _str(metadata.get("phone_number_id")) if isinstance(metadata, dict) else None
            )
            if phone_number_id is None:
                continue  # WABA-level fields (templates, quality, account) name no number
            if phone_number_id not in parsed.phone_number_ids:
                parsed.phone_number_ids.append(phone_number_id)
            if change.get("field", "messages") != "messages":
                continue
            assert isinstance(metadata, dict)
            display = _str(metadata.get("display_phone_number")) or ""
            _read_messages(parsed, value, phone_number_id, display, received_at)
            _read_statuses(parsed, value, phone_number_id, received_at)
    return parsed


def _read_messages(
    parsed: ParsedDelivery,
    value: dict[str, Any],
    phone_number_id: str,
    display: str,
    received_at: datetime,
) -> None:
    contacts = _dicts(value.get("contacts"))
    for message in _dicts(value.get("messages")):
        wamid = _str(message.get("id"))
        contact = _contact_of(message, contacts)
        user_id = _str(contact.get("user_id")) or _str(message.get("from_user_id"))
        wa_id = _str(message.get("from")) or _str(contact.get("wa_id"))
        if wa_id is not None and wa_id == user_id and not contact.get("wa_id"):
            wa_id = None  # a username user: ``from`` carries the business-scoped id
        if wamid is None or (wa_id is None and user_id is None):
            parsed.skipped += 1
            continue
        profile = contact.get("profile")
        kind = _str(message.get("type")) or "unknown"
        text_obj = message.get("text")
        parsed.messages.append(
            InboundMessage(
                phone_number_id=phone_number_id,
                display_phone_number=display,
                wamid=wamid,
                wa_id=wa_id,
                user_id=user_id,
                profile_name=_str(profile.get("name")) if isinstance(profile, dict) else None,
                type=kind,
                text=_str(text_obj.get("body"), strip=False)
                if kind == "text" and isinstance(text_obj, dict)
                else None,
                content=message,
                context=_context(message.get("context")),
                timestamp=_timestamp(message.get("timestamp"), received_at),
            )
        )


def _read_statuses(
    parsed: ParsedDelivery, value: dict[str, Any], phone_number_id: str, received_at: datetime
) -> None:
    for status in _dicts(value.get("statuses")):
        wamid = _str(status.get("id"))
        state = _str(status.get("status"))
        if wamid is None or state is None:
            parsed.skipped += 1
            continue
        parsed.statuses.append(
            StatusUpdate(
                phone_number_id=phone_number_id,
                wamid=wamid,
                status=state,
                timestamp=_timestamp(status.get("timestamp"), received_at),
                recipient_id=_str(status.get("recipient_id"))
                or _str(status.get("recipient_user_id")),
                errors=[_status_error(e) for e in _dicts(status.get("errors"))],
                callback_data=_str(status.get("biz_opaque_callback_data")),
            )
        )


def _contact_of(message: dict[str, Any], contacts: list[dict[str, Any]]) -> dict[str, Any]:
    sender = _str(message.get("from"))
    sender_user = _str(message.get("from_user_id"))
    for contact in contacts:
        if sender and sender in (_str(contact.get("wa_id")), _str(contact.get("user_id"))):
            return contact
        if sender_user and sender_user == _str(contact.get("user_id")):
            return contact
    return contacts[0] if len(contacts) == 1 else {}


def _context(raw: Any) -> MessageContext | None:
    if not isinstance(raw, dict):
        return None
    return {
        "from": _str(raw.get("from")),
        "id": _str(raw.get("id")),
        "forwarded": bool(raw.get("forwarded") or raw.get("frequently_forwarded")),
    }


def _status_error(raw: dict[str, Any]) -> StatusError:
    data = raw.get("error_data")
    return StatusError(
        code=_int(raw.get("code")),
        title=_str(raw.get("title")),
        message=_str(raw.get("message")),
        details=_str(data.get("details")) if isinstance(data, dict) else None,
    )


def _timestamp(raw: Any, default: datetime) -> datetime:
    """Meta's unix seconds (a string) as an aware UTC datetime."""
    seconds = _int(raw)
    if seconds is None:
        return default
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return default


def _dicts(raw: Any) -> list[dict[str, Any]]:
    return [item for item in raw if isinstance(item, dict)] if isinstance(raw, list) else []


def _str(raw: Any, *, strip: bool = True) -> str | None:
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, int | float):
        raw = str(raw)
    if not isinstance(raw, str):
        return None
    value = raw.strip() if strip else raw
    return value if value.strip() else None


def _int(raw: Any) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
        return int(raw.strip())
    return None


def _without_nul(raw: Any) -> Any:
    if isinstance(raw, str):
        return raw.replace("\x00", "\ufffd")
    if isinstance(raw, list):
        return [_without_nul(item) for item in raw]
    if isinstance(raw, dict):
        return {_without_nul(k): _without_nul(v) for k, v in raw.items()}
    return raw
