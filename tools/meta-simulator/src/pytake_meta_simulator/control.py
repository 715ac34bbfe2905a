"""The control API under ``/_sim`` (the simulator's own, not Meta's).

It registers numbers, plays customers (inbound messages), posts arbitrary
webhooks for negative tests, injects send failures, registers media, and shows
what PyTake sent and which webhooks were posted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field, model_validator

from pytake_meta_simulator.arrivals import LAG_KEPT_S, LAG_PERIOD_S
from pytake_meta_simulator.deps import SimulatorContext, get_ctx
from pytake_meta_simulator.graph import media_url
from pytake_meta_simulator.ids import new_media_id, new_wamid
from pytake_meta_simulator.state import (
    FailureMode,
    FailureRule,
    Media,
    Number,
    ReadMark,
    SentMessage,
    WebhookDelivery,
)
from pytake_meta_simulator.webhooks import inbound_payload, interactive_reply, now_ts

router = APIRouter(prefix="/_sim", tags=["control"])

_Id = Field(min_length=1, max_length=128)


class NumberIn(BaseModel):
    phone_number_id: str = _Id
    waba_id: str = _Id
    display_phone_number: str = Field(min_length=1)
    access_token: str = Field(min_length=1)
    app_secret: str = Field(min_length=1)
    webhook_url: str | None = None
    verified_name: str = "PyTake Simulated Business"
    #: Meta's messaging limit (unique users reached outside a service window per 24 h);
    #: posting the number again with another tier changes it
    messaging_limit_tier: Literal[
        "TIER_50", "TIER_250", "TIER_1K", "TIER_2K", "TIER_10K", "TIER_100K", "TIER_UNLIMITED"
    ] = "TIER_UNLIMITED"


class NumberOut(BaseModel):
    """A registered number without its secrets; ``webhook_url`` is the effective one."""

    phone_number_id: str
    waba_id: str
    display_phone_number: str
    verified_name: str
    webhook_url: str
    messaging_limit_tier: str


class InteractiveReplyIn(BaseModel):
    """The customer presses a reply button (``button_reply``) or picks a list row
    (``list_reply``) of a business message."""

    type: Literal["button_reply", "list_reply"]
    id: str = Field(min_length=1, max_length=256)
    title: str = Field(min_length=1, max_length=256)
    #: a list row's description (``list_reply`` only)
    description: str | None = None


class InboundIn(BaseModel):
    """A customer's message: a ``text``, or an ``interactive`` reply."""

    phone_number_id: str
    from_wa_id: str = Field(min_length=1)
    profile_name: str
    text: str | None = None
    interactive: InteractiveReplyIn | None = None
    #: the business message an interactive reply answers; defaults to the last
    #: interactive message sent to this customer from this number
    context_id: str | None = None
    wamid: str | None = None
    #: Unix seconds; defaults to now.
    timestamp: int | None = None
    user_id: str | None = None

    @model_validator(mode="after")
    def _one_content(self) -> InboundIn:
        if (self.text is None) == (self.interactive is None):
            raise ValueError("give exactly one of text or interactive")
        return self


class InboundOut(BaseModel):
    wamid: str
    #: The webhook receiver's HTTP status; None when the POST failed (see ``error``).
    status_code: int | None
    payload: dict[str, Any]
    error: str | None = None


class RawDeliveryIn(BaseModel):
    phone_number_id: str
    #: Any JSON value, serialised the way Meta serialises.
    payload: Any = None
    #: Exact body text to post instead of ``payload`` (e.g. invalid JSON).
    raw: str | None = None
    #: True: valid signature; False: no signature header; "wrong": a well-formed wrong one.
    sign: bool | Literal["wrong"] = True

    @model_validator(mode="after")
    def _one_body(self) -> RawDeliveryIn:
        if (self.payload is None) == (self.raw is None):
            raise ValueError("give exactly one of payload or raw")
        return self


class DeliveryOut(BaseModel):
    seq: int
    status_code: int | None
    error: str | None
    signature: str | None


class FailureIn(BaseModel):
    phone_number_id: str
    #: Only sends to this recipient (as given in ``to`` or as normalised wa_id).
    to: str | None = None
    #: Meta's error code; required except for ``mode="slow"`` and for a bare 5xx
    #: (``mode="http"`` with ``http_status`` >= 500 and no code: an answer without
    #: Meta's error body, as from a load balancer in front of the Graph API).
    code: int | None = None
    #: HTTP status for ``mode="http"``; defaults to Meta's for the code (400 for most).
    http_status: int | None = Field(default=None, ge=400, le=599)
    #: ``times`` next matching sends fail.
    times: int = Field(default=1, ge=1)
    #: "http": the send answers an error. "status": the send answers 200, then the
    #: message gets ``sent`` and an asynchronous ``failed`` status webhook. "slow":
    #: the send is accepted at once (recorded, status webhooks follow) but its
    #: 200 answer leaves only after ``delay_s`` — a client that gave up earlier
    #: cannot know that Meta has the message.
    mode: FailureMode = "http"
    #: Seconds before the answer leaves (any mode; "http" errors are decided first and
    #: nothing is accepted).
    delay_s: float = Field(default=0.0, ge=0, le=600)
    message: str | None = None
    details: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FailureIn:
        if self.mode == "slow":
            if self.code is not None:
                raise ValueError('mode "slow" accepts the send: give no code')
            if self.delay_s <= 0:
                raise ValueError('mode "slow" needs delay_s > 0')
        elif self.code is None and not (
            self.mode == "http" and self.http_status is not None and self.http_status >= 500
        ):
            raise ValueError(f'mode "{self.mode}" needs a code (or, for "http", a 5xx status)')
        return self


class MediaIn(BaseModel):
    phone_number_id: str
    mime_type: str = Field(min_length=1)
    data_base64: str
    media_id: str | None = None
    #: Announce this sha256 instead of the data's (a corrupted download, for tests).
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class MediaOut(BaseModel):
    id: str
    url: str
    mime_type: str
    sha256: str
    file_size: int


async def _number(ctx: SimulatorContext, phone_number_id: str) -> Number:
    number = await ctx.store.get_number(phone_number_id)
    if number is None:
        raise HTTPException(404, f"unknown phone_number_id {phone_number_id!r}; register it first")
    return number


def _public(ctx: SimulatorContext, number: Number) -> NumberOut:
    return NumberOut(
        phone_number_id=number.phone_number_id,
        waba_id=number.waba_id,
        display_phone_number=number.display_phone_number,
        verified_name=number.verified_name,
        webhook_url=ctx.sender.url_for(number),
        messaging_limit_tier=number.messaging_limit_tier,
    )


@router.post("/numbers")
async def register_number(body: NumberIn, ctx: SimulatorContext = Depends(get_ctx)) -> NumberOut:
    number = await ctx.store.upsert_number(Number(**body.model_dump()))
    return _public(ctx, number)


@router.get("/numbers")
async def list_numbers(ctx: SimulatorContext = Depends(get_ctx)) -> list[NumberOut]:
    return [_public(ctx, n) for n in await ctx.store.numbers()]


@router.post("/inbound")
async def inbound(body: InboundIn, ctx: SimulatorContext = Depends(get_ctx)) -> InboundOut:
    number = await _number(ctx, body.phone_number_id)
    wamid = body.wamid or new_wamid(body.from_wa_id)
    context_id = body.context_id
    if body.interactive is not None:
        reply = body.interactive
        content = interactive_reply(reply.type, reply.id, reply.title, reply.description)
        if context_id is None:
            context_id = await _last_interactive(ctx, number, body.from_wa_id)
    else:
        content = {"type": "text", "text": {"body": body.text}}
    payload = inbound_payload(
        number,
        from_wa_id=body.from_wa_id,
        profile_name=body.profile_name,
        content=content,
        wamid=wamid,
        timestamp=str(body.timestamp) if body.timestamp is not None else now_ts(),
        user_id=body.user_id,
        context_id=context_id,
    )
    await ctx.store.record_inbound(body.phone_number_id, body.from_wa_id)
    delivery = await ctx.sender.post(number, kind="message", payload=payload)
    return InboundOut(
        wamid=wamid, status_code=delivery.status_code, payload=payload, error=delivery.error
    )


async def _last_interactive(ctx: SimulatorContext, number: Number, wa_id: str) -> str | None:
    sent = await ctx.store.sent()
    for message in reversed(sent):
        if (
            message.phone_number_id == number.phone_number_id
            and wa_id in (message.wa_id, message.to)
            and message.type == "interactive"
        ):
            return message.wamid
    return None


@router.post("/deliveries/raw")
async def raw_delivery(
    body: RawDeliveryIn, ctx: SimulatorContext = Depends(get_ctx)
) -> DeliveryOut:
    number = await _number(ctx, body.phone_number_id)
    raw = body.raw.encode() if body.raw is not None else None
    delivery = await ctx.sender.post(
        number, kind="raw", payload=body.payload, raw=raw, sign=body.sign
    )
    return _delivery_out(delivery)


def _delivery_out(delivery: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        seq=delivery.seq,
        status_code=delivery.status_code,
        error=delivery.error,
        signature=delivery.signature,
    )


@router.get("/sent")
async def list_sent(
    phone_number_id: str | None = None,
    to: str | None = None,
    ctx: SimulatorContext = Depends(get_ctx),
) -> list[SentMessage]:
    return [
        s
        for s in await ctx.store.sent()
        if (phone_number_id is None or s.phone_number_id == phone_number_id)
        and (to is None or to in (s.to, s.wa_id))
    ]


@router.delete("/sent", status_code=204)
async def clear_sent(ctx: SimulatorContext = Depends(get_ctx)) -> None:
    await ctx.store.clear_sent()


@router.get("/loop-lag")
async def loop_lag(since: float = 0.0, ctx: SimulatorContext = Depends(get_ctx)) -> dict[str, Any]:
    """When the simulator's event loop was late, from ``since`` (epoch seconds) on: each
    ``[due, late_ms]`` of a timer that fired more than the kept lateness late (see
    ``arrivals.LoopLag``); arrival stamps taken meanwhile are late by about as much.
    ``full_collections``: ``[began, ms]`` of each full garbage collection (the loop held)."""
    return {
        "period_ms": LAG_PERIOD_S * 1000,
        "kept_over_ms": LAG_KEPT_S * 1000,
        "ticks": ctx.lag.ticks,
        "late": [[at, round(lag * 1000, 2)] for at, lag in ctx.lag.since(since)],
        "full_collections": [
            [at, round(took * 1000, 2)] for at, took in ctx.lag.collections_since(since)
        ],
    }


@router.get("/reads")
async def list_reads(ctx: SimulatorContext = Depends(get_ctx)) -> list[ReadMark]:
    return await ctx.store.reads()


@router.delete("/reads", status_code=204)
async def clear_reads(ctx: SimulatorContext = Depends(get_ctx)) -> None:
    await ctx.store.clear_reads()


@router.get("/webhooks")
async def list_webhooks(ctx: SimulatorContext = Depends(get_ctx)) -> list[WebhookDelivery]:
    return await ctx.store.webhooks()


@router.delete("/webhooks", status_code=204)
async def clear_webhooks(ctx: SimulatorContext = Depends(get_ctx)) -> None:
    await ctx.store.clear_webhooks()


@router.post("/webhooks/{seq}/redeliver")
async def redeliver(seq: int, ctx: SimulatorContext = Depends(get_ctx)) -> DeliveryOut:
    previous = await ctx.store.get_webhook(seq)
    if previous is None:
        raise HTTPException(404, f"no webhook #{seq}")
    number = await _number(ctx, previous.phone_number_id)
    return _delivery_out(await ctx.sender.redeliver(number, previous))


@router.post("/failures")
async def add_failure(body: FailureIn, ctx: SimulatorContext = Depends(get_ctx)) -> FailureRule:
    await _number(ctx, body.phone_number_id)
    return await ctx.store.add_failure(
        phone_number_id=body.phone_number_id,
        to=body.to,
        code=body.code,
        http_status=body.http_status,
        mode=body.mode,
        times=body.times,
        delay_s=body.delay_s,
        message=body.message,
        details=body.details,
    )


@router.get("/failures")
async def list_failures(ctx: SimulatorContext = Depends(get_ctx)) -> list[FailureRule]:
    return await ctx.store.failures()


@router.delete("/failures", status_code=204)
async def clear_failures(ctx: SimulatorContext = Depends(get_ctx)) -> None:
    await ctx.store.clear_failures()


@router.post("/media")
async def add_media(
    body: MediaIn, request: Request, ctx: SimulatorContext = Depends(get_ctx)
) -> MediaOut:
    await _number(ctx, body.phone_number_id)
    try:
        data = base64.b64decode(body.data_base64, validate=True)
    except binascii.Error:
        raise HTTPException(422, "data_base64 is not valid base64") from None
    media = await ctx.store.add_media(
        Media(
            id=body.media_id or new_media_id(),
            phone_number_id=body.phone_number_id,
            mime_type=body.mime_type,
            sha256=body.sha256 or hashlib.sha256(data).hexdigest(),
            file_size=len(data),
            data=data,
        )
    )
    return MediaOut(
        id=media.id,
        url=media_url(request, media),
        mime_type=media.mime_type,
        sha256=media.sha256,
        file_size=media.file_size,
    )


@router.post("/reset", status_code=204)
async def reset(ctx: SimulatorContext = Depends(get_ctx)) -> None:
    """Forget everything: numbers, sends, reads, webhooks, failures, media, templates."""
    await ctx.store.reset()
