"""Departments: members (users of the same organization) and routing for assignment."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import delete, func, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.errors import Conflict, InvalidInput, NotFound, PlanLimitExceeded
from pytake_common.outbox import emit
from pytake_tenants import plans
from pytake_tenants.events import DepartmentCreated, DepartmentDeleted, DepartmentUpdated, Routing
from pytake_tenants.organizations import load as load_organization
from pytake_tenants.tables import department_members, departments, users
from pytake_tenants.usage import department_count

MAX_MEMBERS = 500


class RoutingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategy: Literal["round_robin", "manual"] = "round_robin"
    max_open_per_agent: int | None = Field(default=None, ge=1, le=1000)


class Department(BaseModel):
    id: uuid.UUID
    organization_id: uuid.UUID
    name: str
    description: str | None
    member_ids: list[uuid.UUID]
    routing: RoutingSettings
    created_at: datetime
    updated_at: datetime


def _clean_name(value: str | None) -> str | None:
    if value is None:
        return None
    cleaned = " ".join(value.split())
    if not cleaned:
        raise ValueError("name must not be blank")
    return cleaned


class DepartmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=500)
    member_ids: list[uuid.UUID] = Field(default_factory=list, max_length=MAX_MEMBERS)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)

    _name = field_validator("name")(_clean_name)


class DepartmentPatch(BaseModel):
    """Given fields replace the stored ones; ``member_ids`` replaces the whole member set."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=500)
    member_ids: list[uuid.UUID] | None = Field(default=None, max_length=MAX_MEMBERS)
    routing: RoutingSettings | None = None

    _name = field_validator("name")(_clean_name)


async def load(
    session: AsyncSession, org: uuid.UUID, department_id: uuid.UUID, *, lock: bool = False
) -> Department:
    stmt = select(departments).where(
        departments.c.id == department_id, departments.c.organization_id == org
    )
    if lock:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).mappings().first()
    if row is None:
        raise NotFound("department not found")
    members = await _members(session, [department_id])
    return _view(row, members.get(department_id, []))


def _view(row: Any, member_ids: list[uuid.UUID]) -> Department:
    return Department(
        id=row["id"],
        organization_id=row["organization_id"],
        name=row["name"],
        description=row["description"],
        member_ids=member_ids,
        routing=RoutingSettings(
            strategy=row["routing_strategy"], max_open_per_agent=row["max_open_per_agent"]
        ),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def _members(
    session: AsyncSession, department_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    rows = await session.execute(
        select(department_members.c.department_id, department_members.c.user_id)
        .where(department_members.c.department_id.in_(department_ids))
        .order_by(department_members.c.added_at, department_members.c.user_id)
    )
    found: dict[uuid.UUID, list[uuid.UUID]] = {}
    for dept, user in rows:
        found.setdefault(dept, []).append(user)
    return found


async def list_page(
    session: AsyncSession, org: uuid.UUID, limit: int, after: tuple[datetime, uuid.UUID] | None
) -> tuple[list[Department], bool]:
    stmt = select(departments).where(departments.c.organization_id == org)
    if after is not None:
        stmt = stmt.where(tuple_(departments.c.created_at, departments.c.id) > tuple_(*after))
    stmt = stmt.order_by(departments.c.created_at, departments.c.id).limit(limit + 1)
    rows = (await session.execute(stmt)).mappings().all()
    members = await _members(session, [r["id"] for r in rows[:limit]])
    return [_view(r, members.get(r["id"], [])) for r in rows[:limit]], len(rows) > limit


async def _check_members(session: AsyncSession, org: uuid.UUID, ids: list[uuid.UUID]) -> None:
    """Members must be users of this organization (known from auth's events), not deleted."""
    wanted = set(ids)
    if not wanted:
        return
    known = set(
        (
            await session.execute(
                select(users.c.id).where(
                    users.c.id.in_(wanted),
                    users.c.organization_id == org,
                    users.c.deleted_at.is_(None),
                )
            )
        ).scalars()
    )
    unknown = sorted(str(u) for u in wanted - known)
    if unknown:
        raise InvalidInput("member_ids must be users of this organization", unknown=unknown)


async def _set_members(
    session: AsyncSession, org: uuid.UUID, department_id: uuid.UUID, ids: list[uuid.UUID]
) -> None:
    await session.execute(
        delete(department_members).where(department_members.c.department_id == department_id)
    )
    unique = list(dict.fromkeys(ids))
    if unique:
        await session.execute(
            insert(department_members),
            [
                {"department_id": department_id, "user_id": u, "organization_id": org}
                for u in unique
            ],
        )


def _payload(dept: Department) -> dict[str, Any]:
    routing = Routing(
        strategy=dept.routing.strategy, max_open_per_agent=dept.routing.max_open_per_agent
    )
    return {
        "department_id": dept.id,
        "organization_id": dept.organization_id,
        "name": dept.name,
        "member_ids": dept.member_ids,
        "routing": routing,
    }


async def _publish(session: AsyncSession, dept_id: uuid.UUID, org: uuid.UUID, payload: Any) -> None:
    await emit(session, payload, dept_id)


async def create(session: AsyncSession, org: uuid.UUID, body: DepartmentCreate) -> Department:
    # The organization row lock serialises concurrent creations, so the limit holds.
    organization = await load_organization(session, org, lock=True)
    allowed = organization.limits.get(plans.DEPARTMENTS)
    used = await department_count(session, org)
    if allowed is not None and used >= allowed:
        raise PlanLimitExceeded(plans.DEPARTMENTS, allowed, used)
    await _check_members(session, org, body.member_ids)
    dept_id = uuid.uuid4()
    try:
        async with session.begin_nested():
            await session.execute(
                insert(departments).values(
                    id=dept_id,
                    organization_id=org,
                    name=body.name,
                    description=body.description,
                    routing_strategy=body.routing.strategy,
                    max_open_per_agent=body.routing.max_open_per_agent,
                )
            )
    except IntegrityError as exc:
        raise Conflict("a department with this name exists", field="name") from exc
    await _set_members(session, org, dept_id, body.member_ids)
    dept = await load(session, org, dept_id)
    await _publish(session, dept_id, org, DepartmentCreated(**_payload(dept)))
    return dept


async def patch(
    session: AsyncSession, org: uuid.UUID, department_id: uuid.UUID, body: DepartmentPatch
) -> Department:
    before = await load(session, org, department_id, lock=True)
    fields = body.model_fields_set
    values: dict[str, Any] = {}
    if "name" in fields:
        if body.name is None:
            raise InvalidInput("name must not be null")
        values["name"] = body.name
    if "description" in fields:
        values["description"] = body.description
    if body.routing is not None:
        values["routing_strategy"] = body.routing.strategy
        values["max_open_per_agent"] = body.routing.max_open_per_agent
    if body.member_ids is not None:
        await _check_members(session, org, body.member_ids)
    try:
        async with session.begin_nested():
            if values:
                await session.execute(
                    update(departments)
                    .where(departments.c.id == department_id, departments.c.organization_id == org)
                    .values(**values, updated_at=func.now())
                )
    except IntegrityError as exc:
        raise Conflict("a department with this name exists", field="name") from exc
    if body.member_ids is not None and list(dict.fromkeys(body.member_ids)) != before.member_ids:
        await _set_members(session, org, department_id, body.member_ids)
    after = await load(session, org, department_id)
    if after.model_dump(exclude={"updated_at"}) != before.model_dump(exclude={"updated_at"}):
        if not values:
            await session.execute(
                update(departments)
                .where(departments.c.id == department_id)
                .values(updated_at=func.now())
            )
            after = await load(session, org, department_id)
        await _publish(session, department_id, org, DepartmentUpdated(**_payload(after)))
    return after


async def remove(session: AsyncSession, org: uuid.UUID, department_id: uuid.UUID) -> None:
    await load(session, org, department_id, lock=True)
    await session.execute(
        delete(departments).where(
            departments.c.id == department_id, departments.c.organization_id == org
        )
    )
    payload = DepartmentDeleted(department_id=department_id, organization_id=org)
    await _publish(session, department_id, org, payload)


async def drop_member_everywhere(session: AsyncSession, org: uuid.UUID, user_id: uuid.UUID) -> None:
    """A deleted user leaves every department (each one announces its new member set)."""
    removed = (
        (
            await session.execute(
                delete(department_members)
                .where(
                    department_members.c.organization_id == org,
                    department_members.c.user_id == user_id,
                )
                .returning(department_members.c.department_id)
            )
        )
        .scalars()
        .all()
    )
    for department_id in sorted(set(removed)):
        await session.execute(
            update(departments)
            .where(departments.c.id == department_id)
            .values(updated_at=func.now())
        )
        dept = await load(session, org, department_id)
        await _publish(session, department_id, org, DepartmentUpdated(**_payload(dept)))
