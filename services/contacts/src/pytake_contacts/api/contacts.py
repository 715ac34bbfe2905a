"""Contacts API: list/search, create, read, edit, soft delete."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from pytake_common.idempotency import IdempotencyGuard, IdempotencyKey, fingerprint, idempotent
from pytake_common.rawpg import TenantReads
from pytake_common.security import READERS, Principal, Reader, Worker, authorize
from pytake_common.strict import StrictParams, Unusual, disjoint, read_query
from pytake_common.web import FastPathRoute, fast_path
from pytake_contacts import book, search
from pytake_contacts.api.deps import DB, Filter, Reads, contact_filter, directory_of, reads_of
from pytake_contacts.schemas import Contact, ContactCreate, ContactPage, ContactPatch
from pytake_contacts.search import ContactFilter

router = APIRouter(prefix="/v1/contacts", tags=["contacts"], route_class=FastPathRoute)


async def contacts_page(
    reads: TenantReads,
    principal: Principal,
    filters: ContactFilter,
    limit: int,
    cursor: str | None,
) -> Response:
    """A page of the list, as JSON (both the endpoint and its fast path answer with it)."""
    body = await search.page_json(reads, principal.organization_id, filters, limit, cursor)
    return Response(body, media_type="application/json")


async def _list_contacts_fast(request: Request) -> Response | None:
    """``list_contacts`` without FastAPI's dependency solving, for plain requests."""
    try:
        filter_args, page_args = read_query(request, FILTER_PARAMS, PAGE_PARAMS)
    except Unusual:
        return None
    principal = await authorize(request, READERS)
    filters = await contact_filter(**filter_args)
    return await contacts_page(
        reads_of(request), principal, filters, page_args["limit"], page_args["cursor"]
    )


@router.get("", response_model=ContactPage)
@fast_path(_list_contacts_fast)
async def list_contacts(
    principal: Reader,
    reads: Reads,
    filters: Filter,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> Response:
    """Contacts of the organization, oldest first; ``q`` searches name, phone, e-mail, company
    (best matches first: exact words, then prefixes, then substrings and typos)."""
    return await contacts_page(reads, principal, filters, limit, cursor)


#: the fast path's reading of the query: the filters, then the page (limit, cursor)
FILTER_PARAMS, PAGE_PARAMS = disjoint(
    StrictParams.of(contact_filter), StrictParams.of(list_contacts)
)


@router.post("", status_code=201, response_model=Contact)
async def create_contact(
    body: ContactCreate,
    principal: Worker,
    db: DB,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Add a contact by phone (``wa_id`` = its E.164 digits, so WhatsApp messages land on it)."""
    org = principal.organization_id
    fp = fingerprint("POST", "/v1/contacts", body.model_dump(mode="json"))
    directory = directory_of(request)
    async with db.transaction(organization_id=org) as session:
        guard = IdempotencyGuard(session, org, principal.user_id, idempotency_key, fp)

        async def add() -> Contact:
            contact_id = await book.create(session, directory, org, principal.user_id, body)
            return await book.view(session, org, contact_id)

        answer = await idempotent(guard, 201, add)
    return answer.response()


@router.get("/{contact_id}", response_model=Contact)
async def get_contact(contact_id: uuid.UUID, principal: Reader, db: DB) -> Contact:
    async with db.transaction(organization_id=principal.organization_id) as session:
        return await book.view(session, principal.organization_id, contact_id)


@router.patch("/{contact_id}", response_model=Contact)
async def patch_contact(
    contact_id: uuid.UUID, body: ContactPatch, principal: Worker, db: DB
) -> Contact:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        return await book.patch(session, org, contact_id, body)


@router.delete("/{contact_id}", status_code=204)
async def delete_contact(contact_id: uuid.UUID, principal: Worker, db: DB) -> Response:
    """Soft delete: the contact leaves lists and lookups; a new message from them restores it."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        await book.delete(session, org, contact_id)
    return Response(status_code=204)
