"""Rules: create, read, change, delete (each bumping the organization's rule-set version
and announcing it), and their runs. Helpers run in the caller's transaction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_automation.events import RuleCreated, RuleDeleted, RuleUpdated
from pytake_automation.rule_model import RuleBody, RulePatch, check_action
from pytake_automation.tables import rule_sets, rules, runs
from pytake_common.errors import NotFound
from pytake_common.outbox import emit


class Rule(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    enabled: bool
    position: int
    trigger: dict[str, Any]
    match: str
    conditions: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    stop_processing: bool
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: RowMapping) -> Rule:
        return cls.model_validate(dict(row))


class Run(BaseModel):
    id: uuid.UUID
    rule_id: uuid.UUID | None
    conversation_id: uuid.UUID | None
    trigger: str
    trigger_key: str
    outcome: str
    actions: list[dict[str, Any]]
    detail: str | None
    created_at: datetime


class RuleNotFound(NotFound):
    code, title = "rule_not_found", "No such rule"


async def bump_version(session: AsyncSession, org: uuid.UUID) -> int:
    stmt = pg_insert(rule_sets).values(organization_id=org, version=1)
    version = await session.scalar(
        stmt.on_conflict_do_update(
            index_elements=[rule_sets.c.organization_id],
            set_={"version": rule_sets.c.version + 1},
        ).returning(rule_sets.c.version)
    )
    assert version is not None
    return int(version)


def _stored(body: RuleBody | RulePatch) -> dict[str, Any]:
    values = body.model_dump(mode="json", exclude_unset=isinstance(body, RulePatch))
    if isinstance(body, RulePatch) and body.actions is not None:
        values["actions"] = [check_action(a) for a in body.actions]
    return values


async def create(
    session: AsyncSession, org: uuid.UUID, user: uuid.UUID | None, body: RuleBody
) -> Rule:
    rule_id = uuid.uuid4()
    row = (
        (
            await session.execute(
                rules.insert()
                .values(id=rule_id, organization_id=org, created_by=user, **_stored(body))
                .returning(*rules.c)
            )
        )
        .mappings()
        .one()
    )
    version = await bump_version(session, org)
    await emit(session, RuleCreated(**_state(row, version), created_by=user), rule_id)
    return Rule.of(row)


def _state(row: RowMapping, version: int) -> dict[str, Any]:
    return {
        "rule_id": row["id"],
        "organization_id": row["organization_id"],
        "name": row["name"],
        "enabled": row["enabled"],
        "trigger": row["trigger"]["type"],
        "position": row["position"],
        "version": version,
    }


async def load(
    session: AsyncSession, org: uuid.UUID, rule_id: uuid.UUID, *, lock: bool = False
) -> RowMapping:
    stmt = select(rules).where(rules.c.id == rule_id, rules.c.organization_id == org)
    if lock:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).mappings().first()
    if row is None:
        raise RuleNotFound("no such rule in this organization")
    return row


async def get(session: AsyncSession, org: uuid.UUID, rule_id: uuid.UUID) -> Rule:
    return Rule.of(await load(session, org, rule_id))


async def list_page(
    session: AsyncSession, org: uuid.UUID, limit: int, after: tuple[int, datetime, uuid.UUID] | None
) -> tuple[list[Rule], bool]:
    order = (rules.c.position, rules.c.created_at, rules.c.id)
    stmt = select(rules).where(rules.c.organization_id == org)
    if after is not None:
        stmt = stmt.where(tuple_(*order) > tuple_(*after))
    rows = (await session.execute(stmt.order_by(*order).limit(limit + 1))).mappings().all()
    return [Rule.of(r) for r in rows[:limit]], len(rows) > limit


async def patch(
    session: AsyncSession,
    org: uuid.UUID,
    user: uuid.UUID | None,
    rule_id: uuid.UUID,
    body: RulePatch,
) -> Rule:
    current = await load(session, org, rule_id, lock=True)
    values = _stored(body)
    # the whole rule must still be valid (e.g. a timer trigger's minutes), not only the patch
    merged = {k: current[k] for k in RuleBody.model_fields} | values
    RuleBody.model_validate(merged)
    if all(current[k] == v for k, v in values.items()):
        return Rule.of(current)
    row = (
        (
            await session.execute(
                update(rules)
                .where(rules.c.id == rule_id, rules.c.organization_id == org)
                .values(**values, updated_at=func.now())
                .returning(*rules.c)
            )
        )
        .mappings()
        .one()
    )
    version = await bump_version(session, org)
    await emit(session, RuleUpdated(**_state(row, version), updated_by=user), rule_id)
    return Rule.of(row)


async def remove(
    session: AsyncSession, org: uuid.UUID, user: uuid.UUID | None, rule_id: uuid.UUID
) -> None:
    await load(session, org, rule_id, lock=True)
    await session.execute(
        delete(rules).where(rules.c.id == rule_id, rules.c.organization_id == org)
    )
    version = await bump_version(session, org)
    payload = RuleDeleted(rule_id=rule_id, organization_id=org, version=version, deleted_by=user)
    await emit(session, payload, rule_id)


async def runs_page(
    session: AsyncSession,
    org: uuid.UUID,
    rule_id: uuid.UUID,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
) -> tuple[list[Run], bool]:
    """Newest first."""
    await load(session, org, rule_id)
    stmt = select(runs).where(runs.c.organization_id == org, runs.c.rule_id == rule_id)
    if before is not None:
        stmt = stmt.where(tuple_(runs.c.created_at, runs.c.id) < tuple_(*before))
    stmt = stmt.order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit + 1)
    rows = (await session.execute(stmt)).mappings().all()
    return [Run.model_validate(dict(r)) for r in rows[:limit]], len(rows) > limit
