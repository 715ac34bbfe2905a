"""Tags (per organization, names unique whatever the case) and custom attribute definitions
(the rules are :mod:`pytake_contacts.tags`')."""

import uuid

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

from pytake_common.idempotency import IdempotencyGuard, IdempotencyKey, fingerprint, idempotent
from pytake_common.security import Admin, Reader
from pytake_contacts import tags
from pytake_contacts.api.deps import DB
from pytake_contacts.domain import AttributeKeyTaken, TagNameTaken, clean_color
from pytake_contacts.schemas import (
    AttributeDefinitionIn,
    AttributeDefinitionList,
    AttributeDefinitionOut,
    Tag,
    TagCreate,
    TagList,
    TagPatch,
)

router = APIRouter(tags=["tags"])


@router.get("/v1/tags", response_model=TagList)
async def list_tags(principal: Reader, db: DB) -> TagList:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        items = await tags.list_all(session, org)
    return TagList(items=items)


@router.post("/v1/tags", status_code=201, response_model=Tag)
async def create_tag(
    body: TagCreate,
    principal: Admin,
    db: DB,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    org = principal.organization_id
    color = clean_color(body.color)
    name = tags.clean_tag_name(body.name)
    fp = fingerprint("POST", "/v1/tags", body.model_dump(mode="json"))
    try:
        async with db.transaction(organization_id=org) as session:
            guard = IdempotencyGuard(session, org, principal.user_id, idempotency_key, fp)
            answer = await idempotent(guard, 201, lambda: tags.create(session, org, name, color))
    except IntegrityError as exc:  # a concurrent create took the name first
        raise TagNameTaken(f"a tag named {name!r} already exists") from exc
    return answer.response()


@router.patch("/v1/tags/{tag_id}", response_model=Tag)
async def patch_tag(tag_id: uuid.UUID, body: TagPatch, principal: Admin, db: DB) -> Tag:
    org = principal.organization_id
    values = tags.tag_changes(body)
    try:
        async with db.transaction(organization_id=org) as session:
            return await tags.patch(session, org, tag_id, values)
    except IntegrityError as exc:
        raise TagNameTaken("a tag with this name already exists") from exc


@router.delete("/v1/tags/{tag_id}", status_code=204)
async def delete_tag(tag_id: uuid.UUID, principal: Admin, db: DB) -> Response:
    """Delete the tag; it disappears from every contact that carried it."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        await tags.remove(session, org, tag_id)
    return Response(status_code=204)


@router.get("/v1/contact-attributes", response_model=AttributeDefinitionList)
async def list_attributes(principal: Reader, db: DB) -> AttributeDefinitionList:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        items = await tags.attribute_definitions_of(session, org)
    return AttributeDefinitionList(items=items)


@router.post("/v1/contact-attributes", status_code=201, response_model=AttributeDefinitionOut)
async def define_attribute(
    body: AttributeDefinitionIn, principal: Admin, db: DB
) -> AttributeDefinitionOut:
    """Define a custom attribute (``list`` needs ``allowed_values``; other types refuse them)."""
    org = principal.organization_id
    allowed = tags.allowed_values(body)
    try:
        async with db.transaction(organization_id=org) as session:
            return await tags.define_attribute(session, org, body, allowed)
    except IntegrityError as exc:
        raise AttributeKeyTaken(f"attribute {body.key!r} is already defined") from exc


@router.delete("/v1/contact-attributes/{key}", status_code=204)
async def delete_attribute(key: str, principal: Admin, db: DB) -> Response:
    """Remove the definition and the attribute's values from every contact."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        await tags.remove_attribute(session, org, key)
    return Response(status_code=204)
