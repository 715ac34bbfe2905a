"""Tags (per organization, names unique whatever the case) and custom attribute
definitions: their rules and statements (the caller owns the transaction)."""

import uuid
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.errors import InvalidInput, NotFound
from pytake_common.outbox import emit
from pytake_contacts.domain import TagNameTaken, clean_color
from pytake_contacts.events import TagCreated, TagDeleted, TagUpdated
from pytake_contacts.schemas import (
    AttributeDefinitionIn,
    AttributeDefinitionOut,
    Tag,
    TagPatch,
)
from pytake_contacts.store import load_tag
from pytake_contacts.tables import attribute_definitions, contact_tags, contacts, tags


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


async def view(session: AsyncSession, org: uuid.UUID, tag_id: uuid.UUID) -> Tag:
    """The tag with how many live contacts carry it, or NotFound."""
    row = (await session.execute(_tag_query(org).where(tags.c.id == tag_id))).mappings().first()
    if row is None:
        raise NotFound("tag not found")
    return Tag.model_validate(dict(row))


async def list_all(session: AsyncSession, org: uuid.UUID) -> list[Tag]:
    """The organization's tags by name (whatever the case)."""
    rows = (
        (await session.execute(_tag_query(org).order_by(func.lower(tags.c.name)))).mappings().all()
    )
    return [Tag.model_validate(dict(r)) for r in rows]


def clean_tag_name(name: str) -> str:
    """The name with its blanks folded; a blank name refuses."""
    cleaned = " ".join(name.split())
    if not cleaned:
        raise InvalidInput("tag name must not be blank", field="name")
    return cleaned


def tag_changes(body: TagPatch) -> dict[str, str]:
    """The cleaned fields a patch sends."""
    values: dict[str, str] = {}
    if body.name is not None:
        values["name"] = clean_tag_name(body.name)
    if body.color is not None:
        values["color"] = clean_color(body.color)
    return values


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


async def create(session: AsyncSession, org: uuid.UUID, name: str, color: str) -> Tag:
    """A new tag (``name`` and ``color`` cleaned by the caller); a taken name refuses."""
    await _name_free(session, org, name)
    tag_id = uuid.uuid4()
    await session.execute(
        insert(tags).values(id=tag_id, organization_id=org, name=name, color=color)
    )
    payload = TagCreated(tag_id=tag_id, organization_id=org, name=name, color=color)
    await emit(session, payload, tag_id, org)
    return await view(session, org, tag_id)


async def patch(
    session: AsyncSession, org: uuid.UUID, tag_id: uuid.UUID, values: dict[str, str]
) -> Tag:
    """Rename or recolour the tag (``values`` from :func:`tag_changes`)."""
    current = await load_tag(session, org, tag_id)
    if "name" in values:
        await _name_free(session, org, values["name"], but=tag_id)
    if any(current[k] != v for k, v in values.items()):
        await session.execute(
            update(tags)
            .where(tags.c.id == tag_id, tags.c.organization_id == org)
            .values(**values, updated_at=func.now())
        )
        tag = await view(session, org, tag_id)
        payload = TagUpdated(tag_id=tag_id, organization_id=org, name=tag.name, color=tag.color)
        await emit(session, payload, tag_id, org)
    return await view(session, org, tag_id)


async def remove(session: AsyncSession, org: uuid.UUID, tag_id: uuid.UUID) -> None:
    """Delete the tag; it disappears from every contact that carried it."""
    await load_tag(session, org, tag_id)
    await session.execute(delete(tags).where(tags.c.id == tag_id, tags.c.organization_id == org))
    await emit(session, TagDeleted(tag_id=tag_id, organization_id=org), tag_id, org)


async def attribute_definitions_of(
    session: AsyncSession, org: uuid.UUID
) -> list[AttributeDefinitionOut]:
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
    return [AttributeDefinitionOut.model_validate(dict(r)) for r in rows]


def allowed_values(body: AttributeDefinitionIn) -> list[str] | None:
    """A ``list`` attribute's values (trimmed, once each); other types have none."""
    if body.type == "list":
        allowed = list(dict.fromkeys(v.strip() for v in body.allowed_values or [] if v.strip()))
        if not allowed or any(len(v) > 200 for v in allowed):
            raise InvalidInput("a list attribute needs allowed_values (each ≤ 200 characters)")
        return allowed
    if body.allowed_values is not None:
        raise InvalidInput("allowed_values are only for list attributes")
    return None


async def define_attribute(
    session: AsyncSession, org: uuid.UUID, body: AttributeDefinitionIn, allowed: list[str] | None
) -> AttributeDefinitionOut:
    """Store the definition (a key already defined raises IntegrityError)."""
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
    return AttributeDefinitionOut.model_validate(dict(row))


async def remove_attribute(session: AsyncSession, org: uuid.UUID, key: str) -> None:
    """Remove the definition and the attribute's values from every contact."""
    gone = await session.execute(
        delete(attribute_definitions)
        .where(attribute_definitions.c.organization_id == org, attribute_definitions.c.key == key)
        .returning(attribute_definitions.c.key)
    )
    if gone.first() is None:
        raise NotFound("attribute not defined")
    await session.execute(
        update(contacts)
        .where(contacts.c.organization_id == org, contacts.c.attributes.has_key(key))
        .values(attributes=contacts.c.attributes.op("-")(key), updated_at=func.now())
    )
