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
from pytake_whatsapp_gateway.events import (
    MessageContext,
    ReceivedMedia,
    ReceivedReaction,
    StatusError,
    StatusPricing,
)

MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})
#: Fields of a change that concern a WhatsApp Business account, not one number.
WABA_FIELDS = frozenset(
    {
        "message_template_status_update",
        "template_category_update",
        "phone_number_quality_update",
        "account_update",
    }
)


class InvalidPayload(DomainError):
    status, code, title = 400, "invalid_payload", "Invalid webhook payload"


class DeliveryTooLarge(DomainError):
    status, code, title = 413, "delivery_too_large", "Webhook delivery too large"


@dataclass(frozen=True, slots=True)
class DeliveryLimits:
    """What one delivery may carry. Meta sends one entry with one change and a message or
    a few statuses; these bounds are far above that and keep the work per request small."""

    entries: int = 100
    #: Changes of all entries together.
    changes: int = 1000
    #: Messages and statuses of all changes together.
    elements: int = 5000
    #: Distinct phone_number_ids.
    numbers: int = 100


DEFAULT_LIMITS = DeliveryLimits()
#: For a delivery whose signature verified: Meta's, processed whatever it carries (the
#: 3 MiB body cap bounds the work).
UNBOUNDED = DeliveryLimits(entries=2**62, changes=2**62, elements=2**62, numbers=2**62)


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
    media: ReceivedMedia | None = None
    reaction: ReceivedReaction | None = None
    referral: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class WabaChange:
    """A WABA-level change (template status/category, quality, account): no phone_number_id."""

    waba_id: str
    field: str
    value: dict[str, Any]
    #: ``entry.time`` (unix seconds) when Meta sent one: part of the change's dedupe key.
    time: int | None


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    phone_number_id: str
    wamid: str
    status: str
    timestamp: datetime
    recipient_id: str | None
    errors: list[StatusError]
    callback_data: str | None
    pricing: StatusPricing | None = None


@dataclass(slots=True)
class ParsedDelivery:
    #: Every phone_number_id the delivery names, in order of appearance, without repeats
    #: (a dict: a membership test per change stays O(1) however many changes come).
    numbers: dict[str, None] = field(default_factory=dict)
    messages: list[InboundMessage] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    waba_changes: list[WabaChange] = field(default_factory=list)
    skipped: int = 0

    @property
    def phone_number_ids(self) -> list[str]:
        return list(self.numbers)

    @property
    def waba_ids(self) -> list[str]:
        return list(dict.fromkeys(c.waba_id for c in self.waba_changes))


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


def parse_delivery(
    payload: dict[str, Any], received_at: datetime, limits: DeliveryLimits = DEFAULT_LIMITS
) -> ParsedDelivery:
    """Read every entry, change, message and status; :class:`DeliveryTooLarge` past
    ``limits`` (checked before the elements are read, so a huge delivery costs little)."""
    parsed = ParsedDelivery()
    entries = _dicts(payload.get("entry"))
    refuse_over(len(entries), limits.entries, "entries")
    changes = [(e, _dicts(e.get("changes"))) for e in entries]
    refuse_over(sum(len(c) for _, c in changes), limits.changes, "changes")
    elements = sum(
        _length(c.get("value"), "messages") + _length(c.get("value"), "statuses")
        for _, cs in changes
        for c in cs
    )
    refuse_over(elements, limits.elements, "messages and statuses")
    for entry, entry_changes in changes:
        waba_id = _str(entry.get("id"))
        for change in entry_changes:
            value = change.get("value")
            if not isinstance(value, dict):
                continue
            kind = _str(change.get("field"))
            if kind in WABA_FIELDS:
                if waba_id is None:
                    parsed.skipped += 1
                    continue
                assert kind is not None
                parsed.waba_changes.append(
                    WabaChange(waba_id, kind, value, _int(entry.get("time")))
                )
                continue
            metadata = value.get("metadata")
            phone_number_id = (
                _str(metadata.get("phone_number_id")) if isinstance(metadata, dict) else None
            )
            if phone_number_id is None:
                continue  # WABA-level fields (templates, quality, account) name no number
            parsed.numbers[phone_number_id] = None
            refuse_over(len(parsed.numbers), limits.numbers, "distinct phone_number_ids")
            if change.get("field", "messages") != "messages":
                continue
            assert isinstance(metadata, dict)
            display = _str(metadata.get("display_phone_number")) or ""
            _read_messages(parsed, value, phone_number_id, display, received_at)
            _read_statuses(parsed, value, phone_number_id, received_at)
    return parsed


def refuse_over(count: int, limit: int, what: str) -> None:
    """:class:`DeliveryTooLarge` when ``count`` exceeds ``limit``."""
    if count > limit:
        raise DeliveryTooLarge(
            f"a delivery carries at most {limit} {what}; this one has more", limit=limit
        )


def _length(value: Any, key: str) -> int:
    items = value.get(key) if isinstance(value, dict) else None
    return len(items) if isinstance(items, list) else 0


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
        referral = message.get("referral")
        parsed.messages.append(
            InboundMessage(
                phone_number_id=phone_number_id,
                display_phone_number=display,
                wamid=wamid,
                wa_id=wa_id,
                user_id=user_id,
                profile_name=_str(profile.get("name")) if isinstance(profile, dict) else None,
                type=kind,
                text=_text_of(kind, message),
                content=message,
                context=_context(message.get("context")),
                timestamp=_timestamp(message.get("timestamp"), received_at),
                media=_media(kind, message),
                reaction=_reaction(kind, message),
                referral=referral if isinstance(referral, dict) else None,
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
                pricing=_pricing(status.get("pricing")),
            )
        )


def _text_of(kind: str, message: dict[str, Any]) -> str | None:
    """The human-readable text of a message, whatever its type (None when it has none).

    text: the body; media: the caption; button (template quick reply): the
    button's text; interactive: the chosen reply's title (Flows: the body);
    system: Meta's description; edit: the new text.
    """
    inner = message.get(kind)
    if not isinstance(inner, dict):
        return None
    if kind == "text":
        return _str(inner.get("body"), strip=False)
    if kind in MEDIA_TYPES:
        return _str(inner.get("caption"), strip=False)
    if kind == "button":
        return _str(inner.get("text"), strip=False)
    if kind == "interactive":
        reply = inner.get(_str(inner.get("type")) or "")
        if isinstance(reply, dict):
            return _str(reply.get("title"), strip=False) or _str(reply.get("body"), strip=False)
        return None
    if kind == "system":
        return _str(inner.get("body"), strip=False)
    if kind == "edit":
        edited = inner.get("message")
        if isinstance(edited, dict) and isinstance(edited.get("text"), dict):
            return _str(edited["text"].get("body"), strip=False)
    return None


def _media(kind: str, message: dict[str, Any]) -> ReceivedMedia | None:
    inner = message.get(kind)
    if kind not in MEDIA_TYPES or not isinstance(inner, dict):
        return None
    media_id = _str(inner.get("id"))
    if media_id is None:
        return None
    return ReceivedMedia(
        media_id=media_id,
        mime_type=_str(inner.get("mime_type")),
        sha256=_str(inner.get("sha256")),
        voice=inner.get("voice") is True,
        filename=_str(inner.get("filename")),
    )


def _reaction(kind: str, message: dict[str, Any]) -> ReceivedReaction | None:
    inner = message.get("reaction")
    if kind != "reaction" or not isinstance(inner, dict):
        return None
    target = _str(inner.get("message_id"))
    if target is None:
        return None
    emoji = inner.get("emoji")
    # A missing or empty emoji means the customer removed the reaction.
    return ReceivedReaction(message_id=target, emoji=emoji if isinstance(emoji, str) else "")


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


def _pricing(raw: Any) -> StatusPricing | None:
    """Meta's ``pricing`` object; fields of another type than Meta documents are dropped."""
    if not isinstance(raw, dict):
        return None
    billable = raw.get("billable")
    category, model = _str(raw.get("category")), _str(raw.get("pricing_model"))
    return StatusPricing(
        category=category[:40] if category else None,
        billable=billable if isinstance(billable, bool) else None,
        pricing_model=model[:20] if model else None,
    )


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
