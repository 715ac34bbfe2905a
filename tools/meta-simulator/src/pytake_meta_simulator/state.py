"""The simulator's state, kept in process memory by design.

The simulator is a test double: it starts empty, is re-populated through the
``/_sim`` control API by whoever drives it (``make run``, the demo, end-to-end
tests) and holds no real data, so nothing is persisted; restarting it or calling
``POST /_sim/reset`` forgets everything. One :class:`asyncio.Lock` serialises all
mutations, so concurrent requests and background webhook tasks see consistent
snapshots; readers get copies of the lists.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

FailureMode = Literal["http", "status", "slow"]
WebhookKind = Literal["message", "status", "raw", "redelivery"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Number(BaseModel):
    phone_number_id: str
    waba_id: str
    display_phone_number: str
    verified_name: str
    access_token: str
    app_secret: str
    webhook_url: str | None = None
    #: Meta's messaging limit: unique users reached outside a customer-service window per
    #: moving 24 h (``TIER_250`` ... ``TIER_UNLIMITED``; see ``TIER_LIMITS``)
    messaging_limit_tier: str = "TIER_UNLIMITED"


#: unique business-initiated users per moving 24 hours; None: unlimited
TIER_LIMITS: dict[str, int | None] = {
    "TIER_50": 50,
    "TIER_250": 250,
    "TIER_1K": 1_000,
    "TIER_2K": 2_000,
    "TIER_10K": 10_000,
    "TIER_100K": 100_000,
    "TIER_UNLIMITED": None,
}
#: the customer-service window, and how long a reached user counts against the limit
DAY = timedelta(hours=24)


class SentMessage(BaseModel):
    """A Graph API send the simulator accepted (answered 200 with a wamid)."""

    seq: int
    phone_number_id: str
    to: str
    wa_id: str
    type: str
    wamid: str
    #: Always true: a send is recorded only after its bearer token matched the number's.
    authorized: bool = True
    body: dict[str, Any]
    #: Set when an injected ``status``-mode failure will fail this message asynchronously.
    failure_code: int | None = None
    #: When the simulator accepted it, after its own parsing and checks.
    time: datetime = Field(default_factory=utcnow)
    #: When its request reached the simulator, before any of the simulator's own work
    #: (where Meta would count it against the number's throughput): see ``arrivals``.
    received_at: datetime = Field(default_factory=utcnow)


class ReadMark(BaseModel):
    """A mark-as-read call (``{"status": "read", "message_id": ...}``)."""

    seq: int
    phone_number_id: str
    message_id: str
    body: dict[str, Any]
    time: datetime = Field(default_factory=utcnow)


class WebhookDelivery(BaseModel):
    """One webhook POST the simulator made, with the receiver's answer."""

    seq: int
    kind: WebhookKind
    phone_number_id: str
    url: str
    #: The ``X-Hub-Signature-256`` header sent, or None when unsigned.
    signature: str | None
    #: The posted body parsed as JSON (None when it was not JSON).
    payload: Any
    #: HTTP status of the receiver's answer; None when the POST itself failed.
    status_code: int | None
    error: str | None = None
    time: datetime = Field(default_factory=utcnow)
    #: The exact bytes posted (kept for redelivery, not shown).
    raw: bytes = Field(default=b"", exclude=True, repr=False)
    #: Exact headers posted (kept for redelivery, not shown).
    headers: dict[str, str] = Field(default_factory=dict, exclude=True, repr=False)


class FailureRule(BaseModel):
    id: int
    phone_number_id: str
    to: str | None = None
    #: None for ``slow`` (the send is accepted, only its answer is late).
    code: int | None = None
    http_status: int | None = None
    mode: FailureMode = "http"
    #: Seconds before the answer leaves.
    delay_s: float = 0.0
    message: str | None = None
    details: str | None = None
    remaining: int
    triggered: int = 0


class Media(BaseModel):
    id: str
    phone_number_id: str
    mime_type: str
    sha256: str
    file_size: int
    data: bytes = Field(exclude=True, repr=False)


class Template(BaseModel):
    """A message template of a WABA (one name and language)."""

    id: str
    waba_id: str
    name: str
    language: str
    category: str
    status: str = "PENDING"
    components: list[dict[str, Any]] = Field(default_factory=list)
    rejected_reason: str = "NONE"


class Store:
    """All simulator state. Every method takes the lock."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._seq = itertools.count(1)
        self._numbers: dict[str, Number] = {}
        self._sent: list[SentMessage] = []
        self._reads: list[ReadMark] = []
        self._webhooks: list[WebhookDelivery] = []
        self._failures: list[FailureRule] = []
        self._media: dict[str, Media] = {}
        #: Per WABA, in creation order.
        self._templates: dict[str, list[Template]] = {}
        #: (phone_number_id, wa_id) -> the user's last message (opens the service window)
        self._inbound: dict[tuple[str, str], datetime] = {}
        #: phone_number_id -> users reached outside a service window -> when
        self._reached: dict[str, OrderedDict[str, datetime]] = {}

    def _next(self) -> int:
        return next(self._seq)

    # numbers -------------------------------------------------------------
    async def upsert_number(self, number: Number) -> Number:
        async with self._lock:
            self._numbers[number.phone_number_id] = number
            return number

    async def get_number(self, phone_number_id: str) -> Number | None:
        async with self._lock:
            return self._numbers.get(phone_number_id)

    async def numbers(self) -> list[Number]:
        async with self._lock:
            return list(self._numbers.values())

    # sends and reads -----------------------------------------------------
    async def record_sent(
        self,
        *,
        phone_number_id: str,
        to: str,
        wa_id: str,
        type_: str,
        wamid: str,
        body: dict[str, Any],
        failure_code: int | None,
        received_at: datetime | None = None,
    ) -> SentMessage:
        async with self._lock:
            record = SentMessage(
                seq=self._next(),
                phone_number_id=phone_number_id,
                to=to,
                wa_id=wa_id,
                type=type_,
                wamid=wamid,
                body=body,
                failure_code=failure_code,
            )
            record.received_at = received_at or record.time
            self._sent.append(record)
            return record

    async def sent(self) -> list[SentMessage]:
        async with self._lock:
            return list(self._sent)

    async def clear_sent(self) -> None:
        async with self._lock:
            self._sent.clear()

    async def record_read(
        self, *, phone_number_id: str, message_id: str, body: dict[str, Any]
    ) -> ReadMark:
        async with self._lock:
            mark = ReadMark(
                seq=self._next(),
                phone_number_id=phone_number_id,
                message_id=message_id,
                body=body,
            )
            self._reads.append(mark)
            return mark

    async def reads(self) -> list[ReadMark]:
        async with self._lock:
            return list(self._reads)

    async def clear_reads(self) -> None:
        async with self._lock:
            self._reads.clear()

    # webhooks ------------------------------------------------------------
    async def record_webhook(
        self,
        *,
        kind: WebhookKind,
        phone_number_id: str,
        url: str,
        signature: str | None,
        payload: Any,
        status_code: int | None,
        error: str | None,
        raw: bytes,
        headers: dict[str, str],
    ) -> WebhookDelivery:
        async with self._lock:
            record = WebhookDelivery(
                seq=self._next(),
                kind=kind,
                phone_number_id=phone_number_id,
                url=url,
                signature=signature,
                payload=payload,
                status_code=status_code,
                error=error,
                raw=raw,
                headers=headers,
            )
            self._webhooks.append(record)
            return record

    async def webhooks(self) -> list[WebhookDelivery]:
        async with self._lock:
            return list(self._webhooks)

    async def get_webhook(self, seq: int) -> WebhookDelivery | None:
        async with self._lock:
            return next((w for w in self._webhooks if w.seq == seq), None)

    async def clear_webhooks(self) -> None:
        async with self._lock:
            self._webhooks.clear()

    # messaging limit -----------------------------------------------------
    async def record_inbound(self, phone_number_id: str, wa_id: str) -> None:
        async with self._lock:
            self._inbound[(phone_number_id, wa_id)] = utcnow()

    async def admit_business_initiated(self, number: Number, wa_id: str) -> bool:
        """Whether the number's tier lets a message reach ``wa_id`` now.

        A user inside the service window (wrote in the last 24 h) does not count; any
        other user counts once per moving 24 hours; past the tier's count, new users
        are refused.
        """
        limit = TIER_LIMITS.get(number.messaging_limit_tier.upper())
        now = utcnow()
        async with self._lock:
            wrote = self._inbound.get((number.phone_number_id, wa_id))
            if wrote is not None and now - wrote < DAY:
                return True
            reached = self._reached.setdefault(number.phone_number_id, OrderedDict())
            # oldest first (a user is added once, when first reached): expire from the front
            # (a scan of every user reached, per send, grew with the run: 4.6 ms of the
            # simulator's CPU a send at 10,000 recipients against 2.5 at 2,000)
            while reached:
                user, at = next(iter(reached.items()))
                if now - at < DAY:
                    break
                del reached[user]
            if wa_id in reached:
                return True
            if limit is not None and len(reached) >= limit:
                return False
            reached[wa_id] = now
            return True

    # failure injection ---------------------------------------------------
    async def add_failure(
        self,
        *,
        phone_number_id: str,
        to: str | None,
        code: int | None,
        http_status: int | None,
        mode: FailureMode,
        times: int,
        delay_s: float = 0.0,
        message: str | None,
        details: str | None,
    ) -> FailureRule:
        async with self._lock:
            rule = FailureRule(
                id=self._next(),
                phone_number_id=phone_number_id,
                to=to,
                code=code,
                http_status=http_status,
                mode=mode,
                delay_s=delay_s,
                message=message,
                details=details,
                remaining=times,
            )
            self._failures.append(rule)
            return rule

    async def take_failure(self, phone_number_id: str, recipients: set[str]) -> FailureRule | None:
        """Consume one use of the oldest rule matching this send, if any."""
        async with self._lock:
            for rule in self._failures:
                if rule.remaining <= 0 or rule.phone_number_id != phone_number_id:
                    continue
                if rule.to is not None and rule.to not in recipients:
                    continue
                rule.remaining -= 1
                rule.triggered += 1
                return rule.model_copy()
            return None

    async def failures(self) -> list[FailureRule]:
        async with self._lock:
            return [rule.model_copy() for rule in self._failures]

    async def clear_failures(self) -> None:
        async with self._lock:
            self._failures.clear()

    # media ---------------------------------------------------------------
    async def add_media(self, media: Media) -> Media:
        async with self._lock:
            self._media[media.id] = media
            return media

    async def get_media(self, media_id: str) -> Media | None:
        async with self._lock:
            return self._media.get(media_id)

    # templates -----------------------------------------------------------
    async def numbers_of_waba(self, waba_id: str) -> list[Number]:
        async with self._lock:
            return [n for n in self._numbers.values() if n.waba_id == waba_id]

    async def add_template(self, template: Template) -> Template | None:
        """Store ``template``; None when its name already exists in that language."""
        async with self._lock:
            book = self._templates.setdefault(template.waba_id, [])
            if any(t.name == template.name and t.language == template.language for t in book):
                return None
            book.append(template)
            return template.model_copy()

    async def template_category(self, waba_id: str, name: str, language: str) -> str | None:
        async with self._lock:
            for t in self._templates.get(waba_id, []):
                if t.name == name and t.language == language:
                    return t.category
            return None

    async def templates(self, waba_id: str) -> list[Template]:
        async with self._lock:
            return [t.model_copy() for t in self._templates.get(waba_id, [])]

    async def delete_templates(self, waba_id: str, name: str) -> int:
        """Delete every language of ``name``; return how many were deleted."""
        async with self._lock:
            book = self._templates.get(waba_id, [])
            kept = [t for t in book if t.name != name]
            self._templates[waba_id] = kept
            return len(book) - len(kept)

    async def set_template_status(
        self, waba_id: str, name: str, language: str | None, status: str, reason: str
    ) -> list[Template]:
        """Set the status of ``name`` (one language, or all); return the changed templates."""
        async with self._lock:
            changed: list[Template] = []
            for template in self._templates.get(waba_id, []):
                if template.name == name and language in (None, template.language):
                    template.status = status
                    template.rejected_reason = reason
                    changed.append(template.model_copy())
            return changed

    # everything ----------------------------------------------------------
    async def reset(self) -> None:
        async with self._lock:
            self._numbers.clear()
            self._sent.clear()
            self._reads.clear()
            self._webhooks.clear()
            self._failures.clear()
            self._media.clear()
            self._templates.clear()
            self._inbound.clear()
            self._reached.clear()
