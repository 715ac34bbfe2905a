"""``/v1/campaigns``: org_admins and agents manage campaigns; every role reads them."""

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from pytake_campaigns import campaigns, freeze
from pytake_campaigns.api.deps import DB, CampaignSettings, Directory
from pytake_campaigns.schemas import (
    Campaign,
    CampaignCreate,
    CampaignPage,
    CampaignPatch,
    StartCampaign,
)
from pytake_common.idempotency import IdempotencyGuard, IdempotencyKey, fingerprint, idempotent
from pytake_common.pagination import ROW_ID, TIMESTAMP, keyset
from pytake_common.security import Reader, Worker

#: campaigns, newest first, by (created_at, id)
CAMPAIGNS = keyset("campaigns", TIMESTAMP, ROW_ID)
Status = Literal["draft", "scheduled", "running", "paused", "completed", "cancelled"]
STATE_ERRORS: dict[int | str, dict[str, Any]] = {
    409: {"description": "not allowed in the campaign's status (invalid_campaign_state)"}
}

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])


@router.get("", response_model=CampaignPage)
async def list_campaigns(
    principal: Reader,
    db: DB,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> CampaignPage:
    before = CAMPAIGNS.decode(cursor) if cursor else None
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        items, more = await campaigns.list_page(session, org, limit, before, status)
    next_cursor = CAMPAIGNS.encode((items[-1].created_at, items[-1].id)) if more else None
    return CampaignPage(items=items, next_cursor=next_cursor)


@router.post(
    "",
    status_code=201,
    response_model=Campaign,
    responses={
        402: {"description": "the plan's campaign limit is reached (plan_limit_exceeded)"},
        404: {"description": "no such WhatsApp number in this organization"},
        422: {
            "description": "`template_not_found`, `template_not_approved`, "
            "`template_parameter_count`, `invalid_placeholder`, `unknown_tag`, invalid input"
        },
    },
)
async def create_campaign(
    body: CampaignCreate,
    request: Request,
    principal: Worker,
    db: DB,
    directory: Directory,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """A draft campaign: nothing is sent until it is started."""
    org, user = principal.organization_id, principal.user_id
    fp = fingerprint("POST", request.url.path, body.model_dump(mode="json"))
    async with db.transaction(organization_id=org) as session:
        guard = IdempotencyGuard(session, org, user, idempotency_key, fp)
        answer = await idempotent(
            guard, 201, lambda: campaigns.create(session, directory, org, user, body)
        )
    return answer.response({"Location": f"{router.prefix}/{answer.body['id']}"})


@router.get("/{campaign_id}", response_model=Campaign)
async def get_campaign(campaign_id: uuid.UUID, principal: Reader, db: DB) -> Campaign:
    async with db.transaction(organization_id=principal.organization_id) as session:
        return await campaigns.get(session, principal.organization_id, campaign_id)


@router.patch(
    "/{campaign_id}",
    response_model=Campaign,
    responses={409: {"description": "only a draft can be changed (campaign_not_editable)"}},
)
async def patch_campaign(
    campaign_id: uuid.UUID, body: CampaignPatch, principal: Worker, db: DB
) -> Campaign:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        return await campaigns.patch(session, org, principal.user_id, campaign_id, body)


@router.delete(
    "/{campaign_id}",
    status_code=204,
    response_class=Response,
    responses={409: {"description": "a scheduled, running or paused campaign: cancel it first"}},
)
async def delete_campaign(campaign_id: uuid.UUID, principal: Worker, db: DB) -> Response:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        await campaigns.remove(session, org, principal.user_id, campaign_id)
    return Response(status_code=204)


@router.post(
    "/{campaign_id}/start",
    response_model=Campaign,
    responses={
        **STATE_ERRORS,
        402: {"description": "past the plan's monthly campaign recipients"},
        422: {
            "description": "`audience_empty`, `too_many_recipients`, `number_disconnected`, "
            "`template_not_approved`, invalid `scheduled_at`"
        },
    },
)
async def start_campaign(
    campaign_id: uuid.UUID,
    request: Request,
    principal: Worker,
    db: DB,
    directory: Directory,
    settings: CampaignSettings,
    body: StartCampaign | None = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Freeze the audience into recipients and send from ``scheduled_at`` (or now).

    The answer holds the recipients' count and the exclusions by reason."""
    body = body or StartCampaign()
    org, user = principal.organization_id, principal.user_id
    fp = fingerprint("POST", request.url.path, body.model_dump(mode="json"))
    async with db.transaction(organization_id=org) as session:
        guard = IdempotencyGuard(session, org, user, idempotency_key, fp)
        answer = await idempotent(
            guard,
            200,
            lambda: freeze.start(
                session, directory, org, user, campaign_id, body, settings.campaign_max_recipients
            ),
        )
    return answer.response()


@router.post("/{campaign_id}/pause", response_model=Campaign, responses=STATE_ERRORS)
async def pause_campaign(campaign_id: uuid.UUID, principal: Worker, db: DB) -> Campaign:
    """No new sends from now on (those already in flight, at most ~1 s of them, go out)."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        return await campaigns.pause(session, org, principal.user_id, campaign_id)


@router.post("/{campaign_id}/resume", response_model=Campaign, responses=STATE_ERRORS)
async def resume_campaign(campaign_id: uuid.UUID, principal: Worker, db: DB) -> Campaign:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        return await campaigns.resume(session, org, principal.user_id, campaign_id)


@router.post("/{campaign_id}/cancel", response_model=Campaign, responses=STATE_ERRORS)
async def cancel_campaign(campaign_id: uuid.UUID, principal: Worker, db: DB) -> Campaign:
    """Stop for good: queued recipients become ``cancelled`` and are never sent to."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        return await campaigns.cancel(session, org, principal.user_id, campaign_id)
