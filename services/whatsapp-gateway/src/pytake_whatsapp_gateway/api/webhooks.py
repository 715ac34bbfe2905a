"""Meta's public webhook: ``GET`` handshake and ``POST`` deliveries."""

import hmac
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy import select

from pytake_common.errors import DomainError, Forbidden
from pytake_common.peers import client_address
from pytake_whatsapp_gateway.api.deps import DB, Intake
from pytake_whatsapp_gateway.numbers import verify_token_hash
from pytake_whatsapp_gateway.tables import numbers

router = APIRouter(prefix="/webhooks/whatsapp", tags=["webhooks"])

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


@router.post(
    "",
    responses={
        401: {"description": "Missing or wrong X-Hub-Signature-256"},
        400: {"description": "Not a WhatsApp webhook payload"},
        413: {"description": "Body larger than 3 MB, or more entries/changes/elements"},
        429: {"description": "This address sent too many requests that were refused"},
    },
)
async def receive(
    request: Request,
    intake: Intake,
    x_hub_signature_256: Annotated[str | None, Header()] = None,
) -> dict[str, str]:
    """Verify the signature over the raw bytes, record the delivery durably, answer 200."""
    settings = request.app.state.settings
    source = client_address(request, settings.trusted_proxies)
    intake.check_budget(source)
    try:
        body = await _read_body(request, settings.webhook_max_body_bytes)
    except PayloadTooLarge:
        intake.refused(source)
        raise
    await intake.receive(body, x_hub_signature_256, source)
    return {"status": "ok"}


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
