"""Building, signing and posting webhooks the way Meta does.

Bodies are compact JSON with non-ASCII characters escaped (``\\u00e9``) and
slashes escaped (``\\/``), as Meta's are: a receiver that re-serialises the JSON
before checking ``X-Hub-Signature-256`` will fail here exactly as it would in
production. The signature is HMAC-SHA256 of the app secret over the exact bytes
posted.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Coroutine
from typing import Any, Literal

import aiohttp

from pytake_meta_simulator.errors import status_error
from pytake_meta_simulator.ids import new_conversation_id
from pytake_meta_simulator.settings import SimulatorSettings
from pytake_meta_simulator.state import (
    FailureRule,
    Number,
    SentMessage,
    Store,
    WebhookDelivery,
    WebhookKind,
)

logger = logging.getLogger(__name__)

SignMode = bool | Literal["wrong"]
#: ``_send``'s ``parsed`` when the body must be parsed to be recorded.
_UNPARSED: Any = object()
USER_AGENT = "facebookexternalua"


def encode(payload: Any) -> bytes:
    """Serialise like Meta: compact, ASCII-only, with escaped slashes."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=True)
    return text.replace("/", "\\/").encode("ascii")


def signature_256(app_secret: str, body: bytes) -> str:
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signature_sha1(app_secret: str, body: bytes) -> str:
    # Meta still sends the legacy SHA-1 header next to the SHA-256 one.
    digest = hmac.new(app_secret.encode(), body, hashlib.sha1).hexdigest()
    return f"sha1={digest}"


def now_ts() -> str:
    """Meta's timestamps: unix seconds, as a string."""
    return str(int(time.time()))


def envelope(number: Number, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": number.waba_id,
                "changes": [
                    {
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": number.display_phone_number,
                                "phone_number_id": number.phone_number_id,
                            },
                            **value,
                        },
                        "field": "messages",
                    }
                ],
            }
        ],
    }


def interactive_reply(
    kind: str, reply_id: str, title: str, description: str | None = None
) -> dict[str, Any]:
    """The message content of a pressed reply button (``button_reply``) or a picked list
    row (``list_reply``, which also echoes the row's description)."""
    reply: dict[str, Any] = {"id": reply_id, "title": title}
    if kind == "list_reply" and description is not None:
        reply["description"] = description
    return {"type": "interactive", "interactive": {"type": kind, kind: reply}}


def inbound_payload(
    number: Number,
    *,
    from_wa_id: str,
    profile_name: str,
    content: dict[str, Any],
    wamid: str,
    timestamp: str,
    user_id: str | None = None,
    context_id: str | None = None,
) -> dict[str, Any]:
    """A customer's message; ``content`` holds ``type`` and its object. ``context_id`` is
    the business message replied to (Meta sets it on every interactive reply)."""
    contact: dict[str, Any] = {"profile": {"name": profile_name}, "wa_id": from_wa_id}
    if user_id is not None:
        contact["user_id"] = user_id
    message: dict[str, Any] = {"from": from_wa_id, "id": wamid, "timestamp": timestamp}
    if context_id is not None:
        business = "".join(c for c in number.display_phone_number if c.isdigit())
        message["context"] = {"from": business, "id": context_id}
    message |= content
    return envelope(number, {"contacts": [contact], "messages": [message]})


def status_object(
    sent: SentMessage,
    status: str,
    *,
    conversation_id: str,
    errors: list[dict[str, Any]] | None = None,
    category: str = "utility",
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": sent.wamid,
        "status": status,
        "timestamp": now_ts(),
        "recipient_id": sent.wa_id,
    }
    if errors is not None:
        obj["errors"] = errors
    else:
        category = category if sent.type == "template" else "service"
        conversation: dict[str, Any] = {"id": conversation_id, "origin": {"type": category}}
        if status == "sent":
            conversation["expiration_timestamp"] = str(int(time.time()) + 24 * 3600)
        obj["conversation"] = conversation
        obj["pricing"] = {
            "billable": category != "service",
            "pricing_model": "PMP",
            "category": category,
            "type": "regular" if category != "service" else "free_customer_service",
        }
    callback = sent.body.get("biz_opaque_callback_data")
    if isinstance(callback, str):
        obj["biz_opaque_callback_data"] = callback
    return obj


def _answered(delivery: WebhookDelivery) -> bool:
    return delivery.status_code is not None and 200 <= delivery.status_code < 300


class WebhookSender:
    """Posts webhooks with one shared :class:`aiohttp.ClientSession` (keep-alive
    connections) and records each one.

    aiohttp, not httpx: three status webhooks per accepted send made httpx's request
    and connection-pool bookkeeping most of the simulator's CPU in the send benchmarks
    (bench/whatsapp_outbound.py, docs/benchmarks.md); the bytes and headers posted are
    the same.
    """

    def __init__(
        self, settings: SimulatorSettings, store: Store, client: aiohttp.ClientSession
    ) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self._tasks: set[asyncio.Task[None]] = set()

    def url_for(self, number: Number) -> str:
        return number.webhook_url or self.settings.webhook_url

    async def post(
        self,
        number: Number,
        *,
        kind: WebhookKind,
        payload: Any = None,
        raw: bytes | None = None,
        sign: SignMode = True,
    ) -> WebhookDelivery:
        body = raw if raw is not None else encode(payload)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if sign:
            secret = number.app_secret if sign is True else number.app_secret + "-wrong"
            headers["X-Hub-Signature"] = signature_sha1(secret, body)
            headers["X-Hub-Signature-256"] = signature_256(secret, body)
        # A payload built here is what its bytes parse back to (JSON types only).
        parsed = _UNPARSED if raw is not None else payload
        return await self._send(number, kind=kind, body=body, headers=headers, parsed=parsed)

    async def redeliver(self, number: Number, previous: WebhookDelivery) -> WebhookDelivery:
        """Post the exact bytes and headers of an earlier webhook again (Meta's retries)."""
        return await self._send(
            number, kind="redelivery", body=previous.raw, headers=dict(previous.headers)
        )

    async def _send(
        self,
        number: Number,
        *,
        kind: WebhookKind,
        body: bytes,
        headers: dict[str, str],
        parsed: Any = _UNPARSED,
    ) -> WebhookDelivery:
        url = self.url_for(number)
        status_code: int | None = None
        error: str | None = None
        try:
            async with self.client.post(url, data=body, headers=headers) as response:
                await response.read()  # the connection goes back to the pool
                status_code = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        if parsed is _UNPARSED:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        logger.info(
            "webhook %s for %s -> %s: %s",
            kind,
            number.phone_number_id,
            url,
            status_code if error is None else error,
        )
        return await self.store.record_webhook(
            kind=kind,
            phone_number_id=number.phone_number_id,
            url=url,
            signature=headers.get("X-Hub-Signature-256"),
            payload=parsed,
            status_code=status_code,
            error=error,
            raw=body,
            headers=headers,
        )

    async def deliver_statuses(
        self, number: Number, sent: SentMessage, failure: FailureRule | None = None
    ) -> None:
        """``sent`` -> ``delivered`` -> ``read``, or ``sent`` -> ``failed`` for an injected failure.

        Each status is its own signed webhook, posted after ``status_delay_s``
        and only once the previous one was answered, so they arrive in order.
        """
        conversation_id = new_conversation_id()
        category = await self.pricing_category(number, sent)
        if failure is None or failure.code is None:
            steps: list[dict[str, Any]] = [
                status_object(sent, s, conversation_id=conversation_id, category=category)
                for s in ("sent", "delivered", "read")
            ]
        else:
            errors = [status_error(failure.code, message=failure.message, details=failure.details)]
            steps = [
                status_object(sent, "sent", conversation_id=conversation_id, category=category),
                status_object(sent, "failed", conversation_id=conversation_id, errors=errors),
            ]
        for step in steps:
            await asyncio.sleep(self.settings.status_delay_s)
            step["timestamp"] = now_ts()
            delivery = await self.post(
                number, kind="status", payload=envelope(number, {"statuses": [step]})
            )
            await self._retry(number, delivery)

    async def _retry(self, number: Number, delivery: WebhookDelivery) -> None:
        """Post a webhook not answered 2xx again, with backoff (Meta's retries)."""
        settings = self.settings
        deadline = time.monotonic() + settings.status_retry_for_s
        pause = settings.status_retry_first_s
        while not _answered(delivery) and time.monotonic() + pause <= deadline:
            await asyncio.sleep(pause)
            delivery = await self.redeliver(number, delivery)
            pause = min(pause * 2, settings.status_retry_max_interval_s)

    async def pricing_category(self, number: Number, sent: SentMessage) -> str:
        """The template's category as Meta prices it (lower case); ``utility`` when the
        template was never created here."""
        template = sent.body.get("template")
        if not isinstance(template, dict):
            return "service"
        language = template.get("language")
        code = language.get("code") if isinstance(language, dict) else None
        found = await self.store.template_category(
            number.waba_id, str(template.get("name")), str(code)
        )
        return (found or "UTILITY").lower()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background; it is cancelled at shutdown if still pending."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("background webhook task failed", exc_info=exc)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def aclose(self) -> None:
        """Cancel pending status deliveries and wait for them to stop."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
