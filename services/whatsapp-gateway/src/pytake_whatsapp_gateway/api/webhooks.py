"""Meta's public webhook: ``GET`` handshake and ``POST`` deliveries."""

import hmac
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import PlainTextResponse, Response
from sqlalchemy import select

from pytake_common.errors import DomainError, Forbidden
from pytake_common.peers import client_address
from pytake_common.web import FastPathRoute, fast_path
from pytake_whatsapp_gateway.api.deps import DB, Intake
from pytake_whatsapp_gateway.numbers import verify_token_hash
from pytake_whatsapp_gateway.tables import numbers
from pytake_whatsapp_gateway.webhooks.intake import WebhookIntake

router = APIRouter(prefix="/webhooks/whatsapp", tags=["webhooks"], route_class=FastPathRoute)

MAX_CHALLENGE = 512


class PayloadTooLarge(DomainError):
    status, code, title = 413, "payload_too_large", "Payload too large"


@router.get("", response_class=PlainTextResponse)
async def handshake(
    db: DB,
    mode: Annotated[str | None, Query(alias="hub.mode")] = None,
    verify_token: Annotated[str | None, Query(alias="hub.verify_token")] = None,
    challenge: Annotated[str | None, Query(alias="hub.challenge")] = None,
) -> PlainTextResponse:
    """Answer Meta's subscription check with the challenge when the token is known."""
    if mode != "subscribe" or not verify_token or challenge is None:
        raise Forbidden("webhook verification refused")
    if len(challenge) > MAX_CHALLENGE:
        raise Forbidden("webhook verification refused")
    digest = verify_token_hash(verify_token)
    async with db.transaction(bypass_rls=True) as session:  # no tenant known yet
        stored = await session.scalar(
            select(numbers.c.verify_token_hash)
            .where(numbers.c.verify_token_hash == digest)
            .limit(1)
        )
    if stored is None or not hmac.compare_digest(stored, digest):
        raise Forbidden("webhook verification refused")
    return PlainTextResponse(challenge)


OK = b'{"status":"ok"}'


async def _receive_fast(request: Request) -> Response:
    """``receive`` without FastAPI's dependency solving (Meta posts every message here)."""
    intake: WebhookIntake = request.app.state.webhook_intake
    await _accept(request, intake, request.headers.get("x-hub-signature-256"))
    return Response(OK, media_type="application/json")


@router.post(
    "",
    responses={
        401: {"description": "Missing or wrong X-Hub-Signature-256"},
        400: {"description": "Not a WhatsApp webhook payload"},
        413: {"description": "Body larger than 3 MB, or more entries/changes/elements"},
        429: {"description": "This address sent too many requests that were refused"},
    },
)
@fast_path(_receive_fast)
async def receive(
    request: Request,
    intake: Intake,
    x_hub_signature_256: Annotated[str | None, Header()] = None,
) -> dict[str, str]:
    """Verify the signature over the raw bytes, record the delivery durably, answer 200."""
    await _accept(request, intake, x_hub_signature_256)
    return {"status": "ok"}


async def _accept(request: Request, intake: WebhookIntake, signature: str | None) -> None:
    settings = request.app.state.settings
    source = client_address(request, settings.trusted_proxies)
    intake.check_budget(source)
    try:
        body = await _read_body(request, settings.webhook_max_body_bytes)
    except PayloadTooLarge:
        intake.refused(source)
        raise
    await intake.receive(body, signature, source)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
