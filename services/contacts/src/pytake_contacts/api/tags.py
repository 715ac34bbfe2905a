"""Tags (per organization, names unique whatever the case) and custom attribute definitions."""

import uuid
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.errors import InvalidInput, NotFound
from pytake_common.idempotency import IdempotencyGuard, IdempotencyKey, fingerprint, idempotent
from pytake_common.outbox import emit
from pytake_common.security import Admin, Reader
from pytake_contacts.api.deps import DB
from pytake_contacts.api.schemas import (
    AttributeDefinitionIn,
    AttributeDefinitionList,
    AttributeDefinitionOut,
    Tag,
    TagCreate,
    TagList,
    TagPatch,
)
from pytake_contacts.domain import AttributeKeyTaken, TagNameTaken, clean_color
from pytake_contacts.events import TagCreated, TagDeleted, TagUpdated
from pytake_contacts.store import load_tag
from pytake_contacts.tables import attribute_definitions, contact_tags, contacts, tags

router = APIRouter(tags=["tags"])


def _tag_query(org: uuid.UUID) -> Any:
    live = (
        select(func.count())
        .select_from(contact_tags.join(contacts, contacts.c.id == contact_tags.c.contact_id))
        .where(
            contact_tags.c.tag_id == tags.c.id,
            contact_tags.c.organization_id == org,
            contacts.c.deleted_at.is_(None),
        )
        .scalar_subquery()
    )
    return select(tags, live.label("contact_count")).where(tags.c.organization_id == org)


async def _tag_out(session: AsyncSession, org: uuid.UUID, tag_id: uuid.UUID) -> Tag:
    row = (await session.execute(_tag_query(org).where(tags.c.id == tag_id))).mappings().first()
    if row is None:
        raise NotFound("tag not found")
    return Tag.model_validate(dict(row))


async def _name_free(
    session: AsyncSession, org: uuid.UUID, name: str, but: uuid.UUID | None = None
) -> None:
    stmt = select(tags.c.id).where(
        tags.c.organization_id == org, func.lower(tags.c.name) == name.lower()
    )
    if but is not None:
        stmt = stmt.where(tags.c.id != but)
    if await session.scalar(stmt) is not None:
        raise TagNameTaken(f"a tag named {name!r} already exists")


@router.get("/v1/tags", response_model=TagList)
async def list_tags(principal: Reader, db: DB) -> TagList:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        rows = (
            (await session.execute(_tag_query(org).order_by(func.lower(tags.c.name))))
            .mappings()
            .all()
        )
    return TagList(items=[Tag.model_validate(dict(r)) for r in rows])


@router.post("/v1/tags", status_code=201, response_model=Tag)
async def create_tag(
    body: TagCreate,
    principal: Admin,
    db: DB,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    org = principal.organization_id
    name, color = " ".join(body.name.split()), clean_color(body.color)
    if not name:
        raise InvalidInput("tag name must not be blank", field="name")
    fp = fingerprint("POST", "/v1/tags", body.model_dump(mode="json"))
    try:
        async with db.transaction(organization_id=org) as session:
            guard = IdempotencyGuard(session, org, principal.user_id, idempotency_key, fp)

            async def add() -> Tag:
                await _name_free(session, org, name)
                tag_id = uuid.uuid4()
                await session.execute(
                    insert(tags).values(id=tag_id, organization_id=org, name=name, color=color)
                )
                payload = TagCreated(tag_id=tag_id, organization_id=org, name=name, color=color)
                await emit(session, payload, tag_id, org)
                return await _tag_out(session, org, tag_id)

            answer = await idempotent(guard, 201, add)
    except IntegrityError as exc:  # a concurrent create took the name first
        raise TagNameTaken(f"a tag named {name!r} already exists") from exc
    return answer.response()


@router.patch("/v1/tags/{tag_id}", response_model=Tag)
async def patch_tag(tag_id: uuid.UUID, body: TagPatch, principal: Admin, db: DB) -> Tag:
    org = principal.organization_id
    values: dict[str, str] = {}
    if body.name is not None:
        values["name"] = " ".join(body.name.split())
        if not values["name"]:
            raise InvalidInput("tag name must not be blank", field="name")
    if body.color is not None:
        values["color"] = clean_color(body.color)
    try:
        async with db.transaction(organization_id=org) as session:
            current = await load_tag(session, org, tag_id)
            if "name" in values:
                await _name_free(session, org, values["name"], but=tag_id)
            if any(current[k] != v for k, v in values.items()):
                await session.execute(
                    update(tags)
                    .where(tags.c.id == tag_id, tags.c.organization_id == org)
                    .values(**values, updated_at=func.now())
                )
                tag = await _tag_out(session, org, tag_id)
                payload = TagUpdated(
                    tag_id=tag_id, organization_id=org, name=tag.name, color=tag.color
                )
                await emit(session, payload, tag_id, org)
            return await _tag_out(session, org, tag_id)
    except IntegrityError as exc:
        raise TagNameTaken("a tag with this name already exists") from exc


@router.delete("/v1/tags/{tag_id}", status_code=204)
async def delete_tag(tag_id: uuid.UUID, principal: Admin, db: DB) -> Response:
    """Delete the tag; it disappears from every contact that carried it."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        await load_tag(session, org, tag_id)
        await session.execute(
            delete(tags).where(tags.c.id == tag_id, tags.c.organization_id == org)
        )
        await emit(session, TagDeleted(tag_id=tag_id, organization_id=org), tag_id, org)
    return Response(status_code=204)


@router.get("/v1/contact-attributes", response_model=AttributeDefinitionList)
async def list_attributes(principal: Reader, db: DB) -> AttributeDefinitionList:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        rows = (
            (
                await session.execute(
                    select(attribute_definitions)
                    .where(attribute_definitions.c.organization_id == org)
                    .order_by(attribute_definitions.c.key)
                )
            )
            .mappings()
            .all()
        )
    return AttributeDefinitionList(
        items=[AttributeDefinitionOut.model_validate(dict(r)) for r in rows]
    )


@router.post("/v1/contact-attributes", status_code=201, response_model=AttributeDefinitionOut)
async def define_attribute(
    body: AttributeDefinitionIn, principal: Admin, db: DB
) -> AttributeDefinitionOut:
    """Define a custom attribute (``list`` needs ``allowed_values``; other types refuse them)."""
    org = principal.organization_id
    allowed = None
    if body.type == "list":
        allowed = list(dict.fromkeys(v.strip() for v in body.allowed_values or [] if v.strip()))
        if not allowed or any(len(v) > 200 for v in allowed):
            raise InvalidInput("a list attribute needs allowed_values (each ≤ 200 characters)")
    elif body.allowed_values is not None:
        raise InvalidInput("allowed_values are only for list attributes")
    try:
        async with db.transaction(organization_id=org) as session:
            row = (
                (
                    await session.execute(
                        insert(attribute_definitions)
                        .values(
                            organization_id=org,
                            key=body.key,
                            label=body.label.strip(),
                            type=body.type,
                            allowed_values=allowed,
                        )
                        .returning(attribute_definitions)
                    )
                )
                .mappings()
                .one()
            )
    except IntegrityError as exc:
        raise AttributeKeyTaken(f"attribute {body.key!r} is already defined") from exc
    return AttributeDefinitionOut.model_validate(dict(row))


@router.delete("/v1/contact-attributes/{key}", status_code=204)
async def delete_attribute(key: str, principal: Admin, db: DB) -> Response:
    """Remove the definition and the attribute's values from every contact."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        gone = await session.execute(
            delete(attribute_definitions)
            .where(
                attribute_definitions.c.organization_id == org, attribute_definitions.c.key == key
            )
            .returning(attribute_definitions.c.key)
        )
        if gone.first() is None:
            raise NotFound("attribute not defined")
        await session.execute(
            update(contacts)
            .where(contacts.c.organization_id == org, contacts.c.attributes.has_key(key))
            .values(attributes=contacts.c.attributes.op("-")(key), updated_at=func.now())
        )
    return Response(status_code=204)
