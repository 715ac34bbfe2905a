"""The Graph API stand-in: the calls PyTake makes to ``graph.facebook.com``.

- ``POST /{version}/{phone_number_id}/messages``: send a message, or mark one as read.
- ``GET /{version}/{id}``: a media object (``url``, ``mime_type``, ``sha256``, ...)
  or a phone number's profile.
- ``GET /{version}/{waba_id}/phone_numbers``: the WhatsApp Business account's numbers.
- ``GET /whatsapp_business/attachments/?mid=``: the media bytes behind ``url``.

A number is owned by its access token (``/_sim/numbers``): the token reads the number
and its WABA; another business's token is refused as on Meta (400, code 100: the
object "cannot be loaded due to missing permissions"); an unknown token is 401/190.

Order of checks, as on Meta: version, object exists (400/100 otherwise),
bearer token (401/190), body (400/100), injected failures.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from pytake_meta_simulator.arrivals import arrived_at
from pytake_meta_simulator.deps import SimulatorContext, get_ctx
from pytake_meta_simulator.errors import GraphError
from pytake_meta_simulator.ids import new_wamid
from pytake_meta_simulator.state import FailureRule, Media, Number
from pytake_meta_simulator.validation import validate_mark_read, validate_send

router = APIRouter(tags=["graph"])

#: what a send past the number's messaging limit fails with (see errors.CATALOGUE)
MESSAGING_LIMIT = 131048
_VERSION = re.compile(r"^v\d+\.\d+$")
ATTACHMENTS_PATH = "/whatsapp_business/attachments/"


def _check_version(version: str, request: Request) -> None:
    if not _VERSION.match(version):
        raise GraphError(400, 2500, f"Unknown path components: {request.url.path}")


def _check_token(request: Request, expected: str) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise GraphError.bad_token("Invalid OAuth access token - Cannot parse access token")
    if token.strip() != expected:
        raise GraphError.bad_token(
            "Error validating access token: Session has expired or the token is invalid.",
            subcode=463,
        )


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise GraphError.invalid_parameter(
            "Invalid parameter: the body is not valid JSON."
        ) from None
    if not isinstance(body, dict):
        raise GraphError.invalid_parameter("The request body must be a JSON object.")
    return body


@router.post("/{version}/{phone_number_id}/messages", response_model=None)
async def send_message(
    version: str,
    phone_number_id: str,
    request: Request,
    ctx: SimulatorContext = Depends(get_ctx),
) -> dict[str, Any] | Response:
    _check_version(version, request)
    number = await ctx.store.get_number(phone_number_id)
    if number is None:
        raise GraphError.unknown_object(phone_number_id, "post")
    _check_token(request, number.access_token)
    body = await _json_object(request)

    if "status" in body:
        message_id = validate_mark_read(body)
        await ctx.store.record_read(
            phone_number_id=phone_number_id, message_id=message_id, body=body
        )
        return {"success": True}

    send = validate_send(body)
    failure = await ctx.store.take_failure(phone_number_id, {send.to, send.wa_id})
    if failure is not None and failure.mode == "http":
        await asyncio.sleep(failure.delay_s)  # a slow refusal: nothing was accepted
        if failure.code is None:  # a bare 5xx from in front of the Graph API
            assert failure.http_status is not None
            return PlainTextResponse(
                failure.message or "upstream unavailable", status_code=failure.http_status
            )
        raise GraphError.injected(
            failure.code,
            http_status=failure.http_status,
            message=failure.message,
            details=failure.details,
        )
    fails_later = failure if failure is not None and failure.mode == "status" else None
    if not await ctx.store.admit_business_initiated(number, send.wa_id):
        # Past the tier: accepted, then failed by a status webhook. Meta documents no
        # dedicated code for the messaging limit; providers report 131048 for it.
        fails_later = FailureRule(
            id=0, phone_number_id=phone_number_id, code=MESSAGING_LIMIT, mode="status", remaining=0
        )
    wamid = new_wamid(send.wa_id)
    record = await ctx.store.record_sent(
        phone_number_id=phone_number_id,
        to=send.to,
        wa_id=send.wa_id,
        type_=send.type,
        wamid=wamid,
        body=body,
        failure_code=fails_later.code if fails_later is not None else None,
        received_at=arrived_at(request.state),
    )
    if ctx.settings.send_statuses or fails_later is not None:
        ctx.sender.spawn(ctx.sender.deliver_statuses(number, record, fails_later))
    if failure is not None and failure.delay_s:
        # Accepted (recorded, statuses on their way), but the answer is late: a
        # client that timed out meanwhile cannot tell this from a lost request.
        await asyncio.sleep(failure.delay_s)
    return {
        "messaging_product": "whatsapp",
        "contacts": [{"input": send.to, "wa_id": send.wa_id}],
        "messages": [{"id": wamid}],
    }


def media_url(request: Request, media: Media) -> str:
    """Like Meta's lookaside URLs: the query string carries an expiry and a signature
    (``ext``, ``hash``), so a client that logs it leaks a credential."""
    expires = int(time.time()) + 300
    mac = hmac.new(media.sha256.encode(), f"{media.id}:{expires}".encode(), hashlib.sha256)
    query = f"mid={media.id}&ext={expires}&hash={mac.hexdigest()[:32]}"
    return str(request.base_url).rstrip("/") + f"{ATTACHMENTS_PATH}?{query}"


@router.get(ATTACHMENTS_PATH, response_model=None)
async def download_media(
    mid: str, request: Request, ctx: SimulatorContext = Depends(get_ctx)
) -> Response:
    media = await ctx.store.get_media(mid)
    if media is None:
        raise GraphError(404, 100, "Media not found.", type_="GraphMethodException")
    number = await ctx.store.get_number(media.phone_number_id)
    _check_token(request, number.access_token if number is not None else "")
    return Response(content=media.data, media_type=media.mime_type)


@router.get("/{version}/{object_id}")
async def get_object(
    version: str,
    object_id: str,
    request: Request,
    ctx: SimulatorContext = Depends(get_ctx),
) -> JSONResponse:
    _check_version(version, request)
    media = await ctx.store.get_media(object_id)
    if media is not None:
        owner = await ctx.store.get_number(media.phone_number_id)
        _check_token(request, owner.access_token if owner is not None else "")
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "url": media_url(request, media),
                "mime_type": media.mime_type,
                "sha256": media.sha256,
                "file_size": media.file_size,
                "id": media.id,
            }
        )
    number = await ctx.store.get_number(object_id)
    if number is None:
        raise GraphError.unknown_object(object_id, "get")
    await _check_owner(ctx, request, [number], object_id)
    return JSONResponse(_number_profile(number))


@router.get("/{version}/{waba_id}/phone_numbers")
async def list_phone_numbers(
    version: str, waba_id: str, request: Request, ctx: SimulatorContext = Depends(get_ctx)
) -> dict[str, Any]:
    members = await authorized_waba(ctx, request, version, waba_id, "get")
    return {
        "data": [_number_profile(n) for n in members],
        "paging": {"cursors": {"before": "QVFIUm", "after": "QVFIUm"}},
    }


async def authorized_waba(
    ctx: SimulatorContext, request: Request, version: str, waba_id: str, method: str
) -> list[Number]:
    """The WABA's numbers, when the bearer token is the access token of one of them."""
    _check_version(version, request)
    members = await ctx.store.numbers_of_waba(waba_id)
    if not members:
        raise GraphError.unknown_object(waba_id, method)
    await _check_owner(ctx, request, members, waba_id)
    return members


async def _check_owner(
    ctx: SimulatorContext, request: Request, owned_by: list[Number], object_id: str
) -> None:
    """The token must own one of ``owned_by``: another business's token cannot see the
    object (400/100), a token Meta never issued is refused as invalid (401/190)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise GraphError.bad_token("Invalid OAuth access token - Cannot parse access token")
    if any(token == n.access_token for n in owned_by):
        return
    if any(token == n.access_token for n in await ctx.store.numbers()):
        raise GraphError.unknown_object(object_id, "get")
    raise GraphError.bad_token(
        "Error validating access token: Session has expired or the token is invalid.",
        subcode=463,
    )


def _number_profile(number: Number) -> dict[str, Any]:
    return {
        "verified_name": number.verified_name,
        "display_phone_number": number.display_phone_number,
        "id": number.phone_number_id,
        "quality_rating": "GREEN",
        "code_verification_status": "VERIFIED",
        "platform_type": "CLOUD_API",
        "throughput": {"level": "STANDARD"},
        "messaging_limit_tier": number.messaging_limit_tier,
    }
