"""SLA policies: first-response and resolution targets per priority.

Which policy a conversation gets (decided when it opens or reopens, and again when its
priority changes): the first *enabled* policy, by ``position`` then creation, whose
conditions match — the conversation's department is one of ``department_ids``, or its
number one of ``number_ids`` (both given: both must match) — else the organization's
*default* policy (at most one, without conditions), else none. A priority the policy has
no target for gets no SLA. ``business_hours``: targets count only the organization's
opening hours (its time zone, weekly hours and holidays from tenants' settings).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import any_, delete, func, literal, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_automation.events import (
    SlaPolicyCreated,
    SlaPolicyDeleted,
    SlaPolicyUpdated,
    SlaTargetBody,
)
from pytake_automation.tables import sla_policies
from pytake_common.errors import Conflict, InvalidInput, NotFound
from pytake_common.outbox import emit

Priority = Literal["low", "normal", "high", "urgent"]
#: 90 days: the longest target a policy may set
MAX_MINUTES = 90 * 24 * 60
Minutes = int | None


class DefaultPolicyExists(Conflict):
    code, title = "default_policy_exists", "The organization has a default SLA policy already"


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")

    first_response_minutes: Minutes = Field(default=None, ge=1, le=MAX_MINUTES)
    resolution_minutes: Minutes = Field(default=None, ge=1, le=MAX_MINUTES)

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.first_response_minutes is None and self.resolution_minutes is None:
            raise ValueError("a target sets first_response_minutes and/or resolution_minutes")
        return self


Targets = dict[Priority, Target]


class _Fields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    enabled: bool = True
    is_default: bool = False
    position: int = Field(default=0, ge=0, le=100_000)
    department_ids: list[uuid.UUID] = Field(default_factory=list, max_length=100)
    number_ids: list[uuid.UUID] = Field(default_factory=list, max_length=100)
    business_hours: bool = False
    targets: Targets = Field(min_length=1)


def _check_conditions(is_default: bool, department_ids: list[Any], number_ids: list[Any]) -> None:
    conditions = bool(department_ids or number_ids)
    if is_default and conditions:
        raise InvalidInput("the default policy has no conditions (department_ids, number_ids)")
    if not is_default and not conditions:
        raise InvalidInput("a policy that is not the default needs department_ids or number_ids")


class PolicyCreate(_Fields):
    """A new SLA policy: every field a stored policy has (PATCH takes any of them)."""


class PolicyPatch(BaseModel):
    """Fields given replace the stored ones (``targets`` as a whole)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    enabled: bool | None = None
    is_default: bool | None = None
    position: int | None = Field(default=None, ge=0, le=100_000)
    department_ids: list[uuid.UUID] | None = Field(default=None, max_length=100)
    number_ids: list[uuid.UUID] | None = Field(default=None, max_length=100)
    business_hours: bool | None = None
    targets: Targets | None = Field(default=None, min_length=1)


class Policy(_Fields):
    id: uuid.UUID
    organization_id: uuid.UUID
    created_by: uuid.UUID | None = None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Any) -> Policy:
        return cls.model_validate(dict(row._mapping))


def _state(policy: Policy) -> dict[str, Any]:
    return {
        "policy_id": policy.id,
        "organization_id": policy.organization_id,
        "name": policy.name,
        "enabled": policy.enabled,
        "is_default": policy.is_default,
        "position": policy.position,
        "department_ids": policy.department_ids,
        "number_ids": policy.number_ids,
        "business_hours": policy.business_hours,
        "targets": {p: SlaTargetBody(**t.model_dump()) for p, t in policy.targets.items()},
    }


async def _write(session: AsyncSession, statement: Any) -> Any:
    """Run an insert/update of a policy; the unique default index refuses a second default."""
    try:
        async with session.begin_nested():
            return (await session.execute(statement)).one()
    except IntegrityError as exc:
        if "uq_sla_policies_default" in str(exc.orig):
            raise DefaultPolicyExists from exc
        raise


async def create(
    session: AsyncSession, org: uuid.UUID, user: uuid.UUID | None, body: PolicyCreate
) -> Policy:
    _check_conditions(body.is_default, body.department_ids, body.number_ids)
    values = body.model_dump(mode="json")
    values.update(department_ids=body.department_ids, number_ids=body.number_ids)
    row = await _write(
        session,
        sla_policies.insert()
        .values(id=uuid.uuid4(), organization_id=org, created_by=user, **values)
        .returning(*sla_policies.c),
    )
    policy = Policy.of(row)
    await emit(session, SlaPolicyCreated(**_state(policy), created_by=user), policy.id)
    return policy


async def load(
    session: AsyncSession, org: uuid.UUID, policy_id: uuid.UUID, *, lock: bool = False
) -> Policy:
    stmt = select(sla_policies).where(
        sla_policies.c.id == policy_id, sla_policies.c.organization_id == org
    )
    row = (await session.execute(stmt.with_for_update() if lock else stmt)).one_or_none()
    if row is None:
        raise NotFound("SLA policy not found")
    return Policy.of(row)


async def list_page(
    session: AsyncSession, org: uuid.UUID, limit: int, after: tuple[datetime, uuid.UUID] | None
) -> tuple[list[Policy], bool]:
    stmt = select(sla_policies).where(sla_policies.c.organization_id == org)
    if after is not None:
        stmt = stmt.where(tuple_(sla_policies.c.created_at, sla_policies.c.id) > tuple_(*after))
    stmt = stmt.order_by(sla_policies.c.created_at, sla_policies.c.id).limit(limit + 1)
    rows = (await session.execute(stmt)).all()
    return [Policy.of(r) for r in rows[:limit]], len(rows) > limit


async def patch(
    session: AsyncSession,
    org: uuid.UUID,
    user: uuid.UUID | None,
    policy_id: uuid.UUID,
    body: PolicyPatch,
) -> Policy:
    current = await load(session, org, policy_id, lock=True)
    changes = {k: getattr(body, k) for k in body.model_fields_set if getattr(body, k) is not None}
    merged = current.model_copy(update=changes)
    _check_conditions(merged.is_default, merged.department_ids, merged.number_ids)
    if not changes:
        return current
    values: dict[str, Any] = dict(changes)
    if "targets" in values:
        values["targets"] = {p: t.model_dump(mode="json") for p, t in merged.targets.items()}
    row = await _write(
        session,
        update(sla_policies)
        .where(sla_policies.c.id == policy_id, sla_policies.c.organization_id == org)
        .values(**values, updated_at=func.now())
        .returning(*sla_policies.c),
    )
    policy = Policy.of(row)
    await emit(session, SlaPolicyUpdated(**_state(policy), updated_by=user), policy.id)
    return policy


async def remove(
    session: AsyncSession, org: uuid.UUID, user: uuid.UUID | None, policy_id: uuid.UUID
) -> None:
    """Delete the policy; conversations keep the due times already applied."""
    await load(session, org, policy_id, lock=True)
    await session.execute(
        delete(sla_policies).where(
            sla_policies.c.id == policy_id, sla_policies.c.organization_id == org
        )
    )
    deleted = SlaPolicyDeleted(policy_id=policy_id, organization_id=org, deleted_by=user)
    await emit(session, deleted, policy_id)


async def choose(
    session: AsyncSession,
    org: uuid.UUID,
    department_id: uuid.UUID | None,
    number_id: uuid.UUID | None,
) -> Policy | None:
    """The policy of a conversation in ``department_id`` on ``number_id`` (see the module)."""
    p = sla_policies.c
    department_ok = or_(
        func.cardinality(p.department_ids) == 0, literal(department_id) == any_(p.department_ids)
    )
    number_ok = or_(func.cardinality(p.number_ids) == 0, literal(number_id) == any_(p.number_ids))
    stmt = (
        select(sla_policies)
        .where(p.organization_id == org, p.enabled, p.is_default | (department_ok & number_ok))
        # conditional policies by position first, the default last
        .order_by(p.is_default, p.position, p.created_at, p.id)
        .limit(1)
    )
    row = (await session.execute(stmt)).one_or_none()
    return None if row is None else Policy.of(row)


def target_minutes(policy: Policy, priority: str) -> tuple[Minutes, Minutes]:
    target = policy.targets.get(priority)  # type: ignore[call-overload]
    if target is None:
        return None, None
    return target.first_response_minutes, target.resolution_minutes
