"""Contacts API: list/search, create, read, edit, soft delete."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.errors import InvalidInput
from pytake_common.idempotency import IdempotencyGuard, IdempotencyKey, fingerprint, idempotent
from pytake_common.ids import contact_id_for
from pytake_common.outbox import emit
from pytake_common.rawpg import TenantReads
from pytake_common.security import READERS, Principal, Reader, Worker, authorize
from pytake_common.strict import StrictParams, Unusual, disjoint, read_query
from pytake_common.web import FastPathRoute, fast_path
from pytake_contacts.api.deps import (
    DB,
    Filter,
    Reads,
    check_contact_limit,
    contact_filter,
    reads_of,
)
from pytake_contacts.api.schemas import (
    CONTACT_JSON,
    Contact,
    ContactCreate,
    ContactPage,
    ContactPatch,
)
from pytake_contacts.domain import (
    AGENT,
    PROFILE,
    ContactExists,
    clean_email,
    clean_language,
    clean_name,
    merge_attributes,
    normalize_phone,
    wa_id_for_phone,
)
from pytake_contacts.events import ContactCreated, ContactUpdated
from pytake_contacts.search import ContactFilter, next_cursor, page_sql
from pytake_contacts.store import attribute_schema, load_contact, record_interaction, tags_of
from pytake_contacts.tables import contacts

router = APIRouter(prefix="/v1/contacts", tags=["contacts"], route_class=FastPathRoute)

TEXT_FIELDS = ("company", "job_title", "notes")


async def contact_out(session: AsyncSession, org: uuid.UUID, contact_id: uuid.UUID) -> Contact:
    row = await load_contact(session, org, contact_id)
    return Contact.of(row, (await tags_of(session, org, [contact_id]))[contact_id])


def clean_fields(body: ContactCreate | ContactPatch) -> dict[str, Any]:
    """The profile fields sent in ``body``, normalised (``None`` clears a field)."""
    values: dict[str, Any] = {}
    sent = body.model_fields_set
    if "name" in sent:
        values["name"] = clean_name(body.name)
        if body.name is not None and values["name"] is None:
            raise InvalidInput("name must not be blank (send null to clear it)", field="name")
    if "phone" in sent:
        values["phone"] = normalize_phone(body.phone) if body.phone else None
    if "email" in sent:
        values["email"] = clean_email(body.email) if body.email else None
    if "language" in sent:
        values["language"] = clean_language(body.language) if body.language else None
    for field in TEXT_FIELDS:
        if field in sent:
            raw = getattr(body, field)
            values[field] = raw.strip() or None if raw is not None else None
    return values


#: what the list selects per contact: the cursor keys and the contact's JSON
LIST_SELECT = f"contacts.id, contacts.created_at, {CONTACT_JSON} AS doc"


async def contacts_page(
    reads: TenantReads,
    principal: Principal,
    filters: ContactFilter,
    limit: int,
    cursor: str | None,
) -> Response:
    """A page of the list, as JSON (both the endpoint and its fast path answer with it)."""
    org = principal.organization_id
    sql, args = page_sql(org, filters, limit + 1, cursor, LIST_SELECT)
    # One statement, one snapshot: on a connection already bound to the organization it
    # is one round trip (no BEGIN + settings, no COMMIT).
    async with reads.connection(org) as conn:
        rows = await conn.fetch(sql, *args)
    page = rows[:limit]
    after = f'"{next_cursor(filters, page[-1])}"' if len(rows) > limit else "null"
    # The items are PostgreSQL's JSON of each contact (CONTACT_JSON), as the model has them.
    body = '{"items":[' + ",".join(r["doc"] for r in page) + '],"next_cursor":' + after + "}"
    return Response(body.encode(), media_type="application/json")


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
    async with db.transaction(organization_id=org) as session:
        guard = IdempotencyGuard(session, org, principal.user_id, idempotency_key, fp)

        async def add() -> Contact:
            return await contact_out(session, org, await create(session, request, principal, body))

        answer = await idempotent(guard, 201, add)
    return answer.response()


async def create(
    session: AsyncSession, request: Request, principal: Principal, body: ContactCreate
) -> uuid.UUID:
    org = principal.organization_id
    values = clean_fields(body)
    phone = values.get("phone")
    wa_id = wa_id_for_phone(phone) if phone else None
    if wa_id is None and body.user_id is None:
        raise InvalidInput("a contact needs a phone number or a WhatsApp user id", field="phone")
    contact_id = contact_id_for(org, wa_id, body.user_id)
    schema = await attribute_schema(session, org)
    values["attributes"] = merge_attributes(schema, {}, body.attributes)
    keys = [contacts.c.id == contact_id]
    if wa_id:
        keys.append(contacts.c.wa_id == wa_id)
    if body.user_id:
        keys.append(contacts.c.user_id == body.user_id)
    existing = (
        (
            await session.execute(
                select(contacts.c.id, contacts.c.deleted_at)
                .where(contacts.c.organization_id == org, or_(*keys))
                .with_for_update()
            )
        )
        .mappings()
        .all()
    )
    for row in existing:
        if row["deleted_at"] is None:
            raise ContactExists(
                "a contact with this phone already exists", contact_id=str(row["id"])
            )
    await check_contact_limit(request, session, org)
    values |= {
        "wa_id": wa_id,
        "user_id": body.user_id,
        "name_source": AGENT if values.get("name") else PROFILE,
    }
    if existing:  # soft-deleted before: it comes back with what was sent now
        contact_id = existing[0]["id"]
        blank = {f: None for f in ("name", "phone", "email", "language", *TEXT_FIELDS)}
        await session.execute(
            update(contacts)
            .where(contacts.c.id == contact_id, contacts.c.organization_id == org)
            .values(
                **(blank | values),
                deleted_at=None,
                erased_at=None,
                created_at=func.now(),
                updated_at=func.now(),
            )
        )
    else:
        await session.execute(insert(contacts).values(id=contact_id, organization_id=org, **values))
    payload = ContactCreated(
        contact_id=contact_id,
        organization_id=org,
        wa_id=wa_id,
        user_id=body.user_id,
        name=values.get("name"),
        phone=phone,
        attributes=values["attributes"],
    )
    await emit(session, payload, contact_id, org)
    now = await session.scalar(select(func.now()))
    assert now is not None
    await record_interaction(
        session,
        org,
        contact_id,
        "contact.created",
        now,
        f"created:{contact_id}:{now.isoformat()}",
        {"by": str(principal.user_id)},
    )
    return contact_id


@router.get("/{contact_id}", response_model=Contact)
async def get_contact(contact_id: uuid.UUID, principal: Reader, db: DB) -> Contact:
    async with db.transaction(organization_id=principal.organization_id) as session:
        return await contact_out(session, principal.organization_id, contact_id)


@router.patch("/{contact_id}", response_model=Contact)
async def patch_contact(
    contact_id: uuid.UUID, body: ContactPatch, principal: Worker, db: DB
) -> Contact:
    org = principal.organization_id
    values = clean_fields(body)
    async with db.transaction(organization_id=org) as session:
        current = await load_contact(session, org, contact_id, lock=True)
        if body.attributes:
            schema = await attribute_schema(session, org)
            values["attributes"] = merge_attributes(schema, current["attributes"], body.attributes)
        changed = sorted(k for k, v in values.items() if current[k] != v)
        if "name" in values:
            values["name_source"] = AGENT
        if (
            not changed
            and values.get("name_source", current["name_source"]) == current["name_source"]
        ):
            return await contact_out(session, org, contact_id)
        await session.execute(
            update(contacts)
            .where(contacts.c.id == contact_id, contacts.c.organization_id == org)
            .values(**values, updated_at=func.now())
        )
        contact = await contact_out(session, org, contact_id)
        if changed:
            payload = ContactUpdated(
                contact_id=contact_id,
                organization_id=org,
                name=contact.name,
                phone=contact.phone,
                changed=changed,
                attributes=contact.attributes,
            )
            await emit(session, payload, contact_id, org)
        return contact


@router.delete("/{contact_id}", status_code=204)
async def delete_contact(contact_id: uuid.UUID, principal: Worker, db: DB) -> Response:
    """Soft delete: the contact leaves lists and lookups; a new message from them restores it."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        await load_contact(session, org, contact_id, lock=True)
        await session.execute(
            update(contacts)
            .where(contacts.c.id == contact_id, contacts.c.organization_id == org)
            .values(deleted_at=func.now(), updated_at=func.now())
        )
    return Response(status_code=204)
