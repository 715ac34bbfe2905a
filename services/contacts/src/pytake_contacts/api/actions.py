"""What agents do to a contact: block, consent, assign, tag, read its timeline, erase it
(the rules are :mod:`pytake_contacts.actions`')."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from pytake_common.security import Admin, Reader, Worker
from pytake_contacts import actions, book
from pytake_contacts.api.deps import DB
from pytake_contacts.schemas import (
    AssignBody,
    BlockBody,
    ConsentBody,
    Contact,
    Timeline,
)

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])


@router.post("/{contact_id}/block", response_model=Contact)
async def block(contact_id: uuid.UUID, body: BlockBody, principal: Worker, db: DB) -> Contact:
    """Block the contact: nothing is sent to them; what they send is still recorded."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        await actions.block(session, org, contact_id, body.reason, principal.user_id)
        return await book.view(session, org, contact_id)


@router.post("/{contact_id}/unblock", response_model=Contact)
async def unblock(contact_id: uuid.UUID, principal: Worker, db: DB) -> Contact:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        await actions.unblock(session, org, contact_id, principal.user_id)
        return await book.view(session, org, contact_id)


@router.post("/{contact_id}/consent", response_model=Contact)
async def consent(contact_id: uuid.UUID, body: ConsentBody, principal: Worker, db: DB) -> Contact:
    """Record marketing consent (opt-in or opt-out) with where it was given."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        await actions.consent(
            session, org, contact_id, body.marketing_opt_in, body.source, principal.user_id
        )
        return await book.view(session, org, contact_id)


@router.post("/{contact_id}/assign", response_model=Contact)
async def assign(contact_id: uuid.UUID, body: AssignBody, principal: Worker, db: DB) -> Contact:
    """Give the contact an owner (an active agent of the organization), or none with null."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        await actions.assign(session, org, contact_id, body.assignee_id, principal.user_id)
        return await book.view(session, org, contact_id)


@router.put("/{contact_id}/tags/{tag_id}", status_code=204)
async def add_tag(contact_id: uuid.UUID, tag_id: uuid.UUID, principal: Worker, db: DB) -> Response:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        await actions.tag(session, org, contact_id, tag_id, principal.user_id, add=True)
    return Response(status_code=204)


@router.delete("/{contact_id}/tags/{tag_id}", status_code=204)
async def remove_tag(
    contact_id: uuid.UUID, tag_id: uuid.UUID, principal: Worker, db: DB
) -> Response:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        await actions.tag(session, org, contact_id, tag_id, principal.user_id, add=False)
    return Response(status_code=204)


@router.get("/{contact_id}/timeline", response_model=Timeline)
async def timeline(
    contact_id: uuid.UUID,
    principal: Reader,
    db: DB,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> Timeline:
    """The contact's interactions, newest first."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        return await actions.timeline(session, org, contact_id, limit, cursor)


@router.post("/{contact_id}/erase", status_code=204)
async def erase(contact_id: uuid.UUID, principal: Admin, db: DB) -> Response:
    """Privacy erasure: personal data removed here, identifiers hashed, every service told."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        await actions.erase(session, org, contact_id)
    return Response(status_code=204)
