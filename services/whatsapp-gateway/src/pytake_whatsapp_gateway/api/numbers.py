"""``/v1/whatsapp/numbers``: connect, list, read, change and remove WhatsApp numbers."""

import hashlib
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, SecretStr

from pytake_common.idempotency import (
    Answer,
    IdempotencyGuard,
    IdempotencyKey,
    fingerprint,
    idempotent,
)
from pytake_common.security import Admin, Reader
from pytake_whatsapp_gateway.api.deps import DB, Box, Graph
from pytake_whatsapp_gateway.numbers import (
    DEFAULT_THROUGHPUT,
    NumberChanges,
    Registration,
    count_active,
    get_number,
    list_numbers,
    register_number,
    remove_number,
    update_number,
)
from pytake_whatsapp_gateway.ownership import prove_control
from pytake_whatsapp_gateway.tiers import read_tier

router = APIRouter(prefix="/v1/whatsapp/numbers", tags=["whatsapp numbers"])

META_ID = r"^[0-9A-Za-z_.-]{1,64}$"


class NumberRegistration(BaseModel):
    phone_number_id: str = Field(pattern=META_ID, description="Meta's phone number id")
    waba_id: str = Field(pattern=META_ID, description="WhatsApp Business account id")
    display_phone_number: str = Field(min_length=1, max_length=40)
    access_token: SecretStr = Field(min_length=1, max_length=4096)
    app_secret: SecretStr | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        description="The Meta app's secret; omit it when the platform's app serves the number",
    )
    verify_token: SecretStr = Field(
        min_length=1, max_length=256, description="Webhook verify token configured at Meta"
    )
    throughput_per_second: int = Field(
        default=DEFAULT_THROUGHPUT,
        ge=1,
        le=1000,
        description="Meta's message throughput of the number (80/s by default, up to 1,000/s)",
    )


class NumberPatch(BaseModel):
    """Fields to change; omitted ones stay. A new access token reconnects the number."""

    display_phone_number: str | None = Field(default=None, min_length=1, max_length=40)
    access_token: SecretStr | None = Field(default=None, min_length=1, max_length=4096)
    app_secret: SecretStr | None = Field(default=None, min_length=1, max_length=512)
    verify_token: SecretStr | None = Field(default=None, min_length=1, max_length=256)
    throughput_per_second: int | None = Field(default=None, ge=1, le=1000)


class Number(BaseModel):
    """A connected number. Credentials are write-only: never returned."""

    id: uuid.UUID
    organization_id: uuid.UUID
    phone_number_id: str
    waba_id: str
    display_phone_number: str
    #: connected | disconnected (Meta refused the access token: PATCH a new one)
    status: str
    quality_rating: str | None
    messaging_limit_tier: str | None
    throughput_per_second: int
    uses_platform_app_secret: bool
    created_at: datetime
    updated_at: datetime


class NumberPage(BaseModel):
    items: list[Number]
    next_cursor: str | None


def _fingerprint(request: Request, body: NumberRegistration) -> str:
    """Secrets enter the idempotency fingerprint only as hashes."""

    def digest(value: SecretStr | None) -> str | None:
        return hashlib.sha256(value.get_secret_value().encode()).hexdigest() if value else None

    shown: dict[str, Any] = body.model_dump(exclude={"access_token", "app_secret", "verify_token"})
    shown.update(
        access_token=digest(body.access_token),
        app_secret=digest(body.app_secret),
        verify_token=digest(body.verify_token),
    )
    return fingerprint("POST", request.url.path, shown)


@router.post(
    "",
    status_code=201,
    response_model=Number,
    responses={
        409: {"description": "The number is already connected"},
        422: {"description": "The access token does not control the number (`check` says which)"},
        503: {"description": "Meta could not be asked; nothing was stored"},
    },
)
async def register(
    body: NumberRegistration,
    request: Request,
    principal: Admin,
    db: DB,
    box: Box,
    graph: Graph,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Connect a number once Meta shows that ``access_token`` controls it (see
    :mod:`pytake_whatsapp_gateway.ownership`); asked before the write transaction opens.

    A retry of a finished registration (same ``Idempotency-Key``) replays the stored
    answer without asking Meta again, so Meta being down or the token revoked since
    cannot turn the stored 201 into a 503 or 422.
    """
    org = principal.organization_id
    fp = _fingerprint(request, body)
    async with db.transaction(organization_id=org) as session:
        stored = await IdempotencyGuard(
            session, org, principal.user_id, idempotency_key, fp
        ).stored()
    if stored is not None:
        replay = Answer(*stored, replayed=True)
        return replay.response({"Location": f"{router.prefix}/{replay.body['id']}"})
    await prove_control(
        graph, body.access_token.get_secret_value(), body.phone_number_id, body.waba_id
    )
    tier = await read_tier(graph, body.access_token.get_secret_value(), body.phone_number_id)
    async with db.transaction(organization_id=org) as session:
        guard = IdempotencyGuard(session, org, principal.user_id, idempotency_key, fp)

        async def connect() -> Number:
            organizations = getattr(request.app.state, "organizations", None)
            if organizations is not None:  # the plan's limit, from tenants' events
                used = await count_active(session, org)
                await organizations.check_limit(org, "numbers", used=used)
            registration = Registration(
                phone_number_id=body.phone_number_id,
                waba_id=body.waba_id,
                display_phone_number=body.display_phone_number.strip(),
                access_token=body.access_token.get_secret_value(),
                app_secret=body.app_secret.get_secret_value() if body.app_secret else None,
                verify_token=body.verify_token.get_secret_value(),
                throughput_per_second=body.throughput_per_second,
                messaging_limit_tier=tier,
            )
            row = await register_number(session, box, org, registration)
            return Number.model_validate(row._mapping)

        answer = await idempotent(guard, 201, connect)
    return answer.response({"Location": f"{router.prefix}/{answer.body['id']}"})


@router.get("", response_model=NumberPage)
async def list_all(
    principal: Reader,
    db: DB,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> NumberPage:
    async with db.transaction(organization_id=principal.organization_id) as session:
        rows, next_cursor = await list_numbers(session, principal.organization_id, limit, cursor)
    return NumberPage(
        items=[Number.model_validate(r._mapping) for r in rows], next_cursor=next_cursor
    )


@router.get("/{number_id}", response_model=Number)
async def get_one(number_id: uuid.UUID, principal: Reader, db: DB) -> Number:
    async with db.transaction(organization_id=principal.organization_id) as session:
        row = await get_number(session, principal.organization_id, number_id)
    return Number.model_validate(row._mapping)


@router.patch(
    "/{number_id}",
    response_model=Number,
    responses={
        422: {"description": "The new access token does not control the number"},
        503: {"description": "Meta could not be asked about the new token; nothing changed"},
    },
)
async def patch_one(
    number_id: uuid.UUID, body: NumberPatch, principal: Admin, db: DB, box: Box, graph: Graph
) -> Number:
    """Change a number; a new ``access_token`` is stored only once Meta shows it controls
    the number (the registration's two checks, asked before the write transaction)."""
    org = principal.organization_id
    if body.access_token is not None:
        async with db.transaction(organization_id=org) as session:
            current = await get_number(session, org, number_id)  # 404 for another tenant's
        await prove_control(
            graph, body.access_token.get_secret_value(), current.phone_number_id, current.waba_id
        )

    def secret(value: SecretStr | None) -> str | None:
        return value.get_secret_value() if value is not None else None

    changes = NumberChanges(
        display_phone_number=body.display_phone_number.strip()
        if body.display_phone_number
        else None,
        access_token=secret(body.access_token),
        app_secret=secret(body.app_secret),
        verify_token=secret(body.verify_token),
        throughput_per_second=body.throughput_per_second,
    )
    async with db.transaction(organization_id=org) as session:
        row = await update_number(session, box, org, number_id, changes)
    return Number.model_validate(row._mapping)


@router.delete("/{number_id}", status_code=204, response_class=Response)
async def delete_one(number_id: uuid.UUID, principal: Admin, db: DB) -> Response:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        await remove_number(session, org, number_id)
    return Response(status_code=204)
