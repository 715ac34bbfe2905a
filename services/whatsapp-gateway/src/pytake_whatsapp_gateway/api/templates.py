"""``/v1/whatsapp/numbers/{number_id}/templates``: a number's WABA templates through Meta."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from pytake_common.idempotency import IdempotencyGuard, IdempotencyKey, fingerprint, idempotent
from pytake_common.security import Admin, Reader
from pytake_whatsapp_gateway.api.deps import DB
from pytake_whatsapp_gateway.numbers import get_number
from pytake_whatsapp_gateway.templates.service import (
    NewTemplate,
    TemplateService,
    list_templates,
)

router = APIRouter(prefix="/v1/whatsapp/numbers/{number_id}/templates", tags=["whatsapp templates"])

TEMPLATE_NAME = r"^[a-z0-9_]{1,512}$"


async def template_service(request: Request) -> TemplateService:
    service: TemplateService = request.app.state.template_service
    return service


Templates = Annotated[TemplateService, Depends(template_service)]


class TemplateIn(BaseModel):
    name: str = Field(pattern=TEMPLATE_NAME, description="Lowercase letters, digits, underscores")
    language: str = Field(pattern=r"^[A-Za-z]{2,3}(_[A-Za-z]{2,4})?$", examples=["en_US"])
    category: Literal["MARKETING", "UTILITY", "AUTHENTICATION"]
    components: list[dict[str, Any]] = Field(min_length=1, max_length=20)


class Template(BaseModel):
    id: uuid.UUID
    waba_id: str
    name: str
    language: str
    category: str | None
    #: Meta's APPROVED | PENDING | REJECTED | PAUSED | DISABLED | ...
    status: str
    meta_template_id: str | None
    components: list[dict[str, Any]]
    rejected_reason: str | None
    created_at: datetime
    updated_at: datetime


class TemplatePage(BaseModel):
    items: list[Template]
    next_cursor: str | None


class SyncResult(BaseModel):
    #: Templates new or changed by this sync (one ``template.synced`` event each).
    changed: int


@router.get("", response_model=TemplatePage)
async def list_all(
    number_id: uuid.UUID,
    principal: Reader,
    db: DB,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    status: Annotated[str | None, Query(max_length=40)] = None,
) -> TemplatePage:
    """The local copies (kept current by syncs and Meta's status webhooks)."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        number = await get_number(session, org, number_id)
        rows, next_cursor = await list_templates(
            session, org, number.waba_id, limit, cursor, status
        )
    return TemplatePage(
        items=[Template.model_validate(r._mapping) for r in rows], next_cursor=next_cursor
    )


@router.post("", status_code=201, response_model=Template)
async def create(
    number_id: uuid.UUID,
    body: TemplateIn,
    request: Request,
    principal: Admin,
    db: DB,
    service: Templates,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Submit a template for Meta's review; it starts PENDING."""
    org = principal.organization_id
    access = await service.access(org, number_id)
    print_ = fingerprint("POST", request.url.path, body.model_dump(mode="json"))
    async with db.transaction(organization_id=org) as session:
        guard = IdempotencyGuard(session, org, principal.user_id, idempotency_key, print_)

        async def submit() -> Template:
            template = NewTemplate(body.name, body.language, body.category, body.components)
            return Template.model_validate(
                (await service.create(session, access, template))._mapping
            )

        answer = await idempotent(guard, 201, submit)
    return answer.response()


@router.post("/sync", response_model=SyncResult)
async def sync(number_id: uuid.UUID, principal: Admin, service: Templates) -> SyncResult:
    """Re-read every template of the number's WABA from Meta now."""
    access = await service.access(principal.organization_id, number_id)
    return SyncResult(changed=await service.sync(access))


@router.delete("/{name}", status_code=204, response_class=Response)
async def delete_one(
    number_id: uuid.UUID,
    name: Annotated[str, Path(pattern=TEMPLATE_NAME)],
    principal: Admin,
    service: Templates,
) -> Response:
    """Delete the template (every language) at Meta and locally."""
    access = await service.access(principal.organization_id, number_id)
    await service.delete(access, name)
    return Response(status_code=204)
